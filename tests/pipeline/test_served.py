"""Three pipelines (BERT classifier, RoBERTa sentence embedder, ViT classifier) built by one `build -f
tritongen.toml` and served by the embedded tritonserver: `validate` passes on every model, the served answers equal a
reference computed here with transformers and PyTorch alone, and the printed client runs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import PipelineBuilds
from tests.servers import consecutive_free_ports, start_serve
from tritongen.pipeline.parity import raw_array
from tritongen.pipeline.samples import image_samples, text_samples

pytestmark = [pytest.mark.slow, pytest.mark.server]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(pipeline_builds: PipelineBuilds) -> Iterator:
    from tritongen.server import serve

    assert pipeline_builds.exit_code == 0, pipeline_builds.output
    # Consecutive ports: `--url` names the HTTP port, and a server we did not start has gRPC on the next one.
    with serve(pipeline_builds.repository, "embedded", ports=consecutive_free_ports()) as running:
        yield running


def test_validate_passes_on_every_model_of_the_three_pipelines(pipeline_builds: PipelineBuilds, cli) -> None:
    result = cli("validate", pipeline_builds.repository, "--json")
    report = result.json()
    assert result.exit_code == 0 and report["passed"], result.stdout
    models = {m["name"]: m for m in report["models"]}
    assert len(models) == 12 and all(m["passed"] for m in models.values())
    for name in ("sentiment", "embedder", "vision"):
        ensemble = models[name]
        assert ensemble["served_by"] == "ensemble backend"
        assert ensemble["http"]["passed"] and ensemble["grpc"]["passed"]
        # The ensemble batches in its network: the burst's statistics are the network's.
        assert ensemble["batching"]["checked"] and f"of {name}_model" in ensemble["batching"]["note"]
        assert ensemble["batching"]["executions"] < ensemble["batching"]["inferences"]
        cases = {b["case"] for b in ensemble["bad_requests"]}
        raw = "not UTF-8 text" if name != "vision" else "bytes that are not an image"
        assert {"wrong dtype", "empty batch", raw} <= cases  # a number instead of a string is "wrong dtype"
        for bad in ensemble["bad_requests"]:  # each refused as the client's fault
            assert bad["passed"] and (bad["status"] == "400" or "INVALID_ARGUMENT" in bad["status"]), bad
        assert ensemble["ready_after_bad_requests"]
    assert models["vision_preprocess"]["served_by"] == "python backend"


def infer(url: str, protocol: str, model: str, raw: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
    if protocol == "http":
        import tritonclient.http as client_module
    else:
        import tritonclient.grpc as client_module
    client = client_module.InferenceServerClient(url)
    try:
        request = client_module.InferInput("image" if model == "vision" else "text", list(raw.shape), "BYTES")
        request.set_data_from_numpy(raw)
        result = client.infer(model, [request], outputs=[client_module.InferRequestedOutput(n) for n in outputs])
        return {n: result.as_numpy(n) for n in outputs}
    finally:
        client.close()


def served_answers(served, model: str, items: list, outputs: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per protocol, the answers for every item, sent in requests of up to 8."""
    raw = raw_array(items)
    answers = {}
    for protocol, url in (("http", served.handle.http_url), ("grpc", served.handle.grpc_url)):
        parts = [infer(url, protocol, model, raw[i:i + 8], outputs) for i in range(0, len(raw), 8)]
        answers[protocol] = {n: np.concatenate([p[n] for p in parts]) for n in outputs}
    return answers


def test_served_labels_equal_transformers_on_strings_with_the_edge_cases(pipeline_builds, served) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = pipeline_builds.sources["sentiment"]
    strings = text_samples(64)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        logits = model(**tokenizer(strings, padding=True, truncation=True, return_tensors="pt")).logits
    expected = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    assert len(strings) >= 20 and "" in strings and len(set(expected)) > 1  # labels vary: no pass by chance
    for protocol, answers in served_answers(served, "sentiment", strings, ["label", "score", "top_k_labels"]).items():
        labels = [v.decode() for v in answers["label"].reshape(-1)]
        assert labels == expected, protocol
        assert np.allclose(answers["score"].reshape(-1), torch.softmax(logits, -1).max(-1).values.numpy(), atol=1e-4)
        assert [row[0].decode() for row in answers["top_k_labels"]] == expected


def test_served_embeddings_equal_transformers_mean_pooled_and_normalized(pipeline_builds, served) -> None:
    from transformers import AutoModel, AutoTokenizer

    folder = pipeline_builds.sources["embedder"]
    strings = text_samples(48)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).eval()
    batch = tokenizer(strings, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    for protocol, answers in served_answers(served, "embedder", strings, ["embedding"]).items():
        assert answers["embedding"].shape == (len(strings), 64)
        assert np.abs(answers["embedding"] - expected).max() < 1e-4, protocol
    assert np.abs(expected[0] - expected[1]).max() > 1e-2  # embeddings vary with the text


def test_served_labels_equal_transformers_on_images_of_every_size_and_mode(pipeline_builds, served) -> None:
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification
    from transformers.image_utils import load_image

    folder = pipeline_builds.sources["vision"]
    images = image_samples()
    processor = AutoImageProcessor.from_pretrained(str(folder), backend="pil")
    model = AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    pixels = processor([load_image(Image.open(io.BytesIO(b))) for b in images], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = [model.config.id2label[i] for i in model(pixel_values=pixels).logits.argmax(-1).tolist()]
    assert len(images) >= 20 and len(set(expected)) > 1
    for protocol, answers in served_answers(served, "vision", images, ["label"]).items():
        assert [v.decode() for v in answers["label"].reshape(-1)] == expected, protocol


def run_client(code: str, served, tmp_path: Path, *args: str) -> str:
    script = tmp_path / "client.py"
    script.write_text(code)
    env = {**os.environ, "TRITON_HTTP_URL": served.handle.http_url, "TRITON_GRPC_URL": served.handle.grpc_url}
    proc = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_client_build_prints_runs_for_text_and_for_image_files(pipeline_builds, served, tmp_path: Path) -> None:
    by_name = {m["pipeline"]["ensemble"]: m["pipeline"] for m in pipeline_builds.output["models"]}
    out = run_client(by_name["sentiment"]["client_example"], served, tmp_path, "hello world", "héllo 🙂")
    lines = out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("http 0 {'label': [") and lines[2].startswith("grpc 0 ")
    assert "'top_k_scores': [" in lines[0]
    paths = []
    for i, data in enumerate(image_samples()[:2]):
        paths.append(tmp_path / f"image{i}")
        paths[-1].write_bytes(data)
    out = run_client(by_name["vision"]["client_example"], served, tmp_path, *map(str, paths))
    assert out.count("'label': ['LABEL_") == 4


def test_the_readme_client_example_runs_against_tritongen_serve(pipeline_builds: PipelineBuilds, tmp_path: Path):
    """As a user runs it: `tritongen serve --model sentiment` (the ensemble brings its steps), then the README's code."""
    import signal

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Pipelines"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    code = code[:code.index("```")]
    process, info = start_serve(pipeline_builds.repository, "--model", "sentiment")
    try:
        assert sorted(m["name"] for m in info["models"]) == ["sentiment", "sentiment_model", "sentiment_postprocess",
                                                              "sentiment_preprocess"]
        script = tmp_path / "client.py"
        script.write_text(code)
        proc = subprocess.run([sys.executable, str(script)], env={**os.environ, "TRITON_HTTP_URL": info["http_url"]},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        answers = [line for line in proc.stdout.splitlines() if line.startswith("{'label': '")]
        assert len(answers) == 2 and all("'score': " in a for a in answers)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_bench_splits_a_pipeline_request_into_its_steps(served, pipeline_builds: PipelineBuilds, cli, h2load,
                                                        tmp_path: Path, protocol: str) -> None:
    result = cli("bench", "sentiment", "--repository", pipeline_builds.repository, "--url", served.handle.http_url,
                 "--protocol", protocol, "--concurrency", "1,4", "--duration", "0.5", "--warmup", "0",
                 "--batch-size", "2", "--generator", "h2load", "--no-ceiling", "--no-generator-check",
                 "--report", tmp_path / "report", "--json")
    report = result.json()
    assert result.exit_code == 0 and report["served_by"] == "ensemble backend", result.stdout
    steps = ["sentiment_preprocess", "sentiment_model", "sentiment_postprocess"]
    for point in report["points"]:
        assert point["generator"] == "h2load" and point["errors"] == 0  # raw strings serialized as Triton reads them
        assert point["server"]["requests"] == point["requests"]
        assert list(point["steps"]) == steps
        for step in point["steps"].values():  # every pipeline request ran once through every step, 2 texts each
            assert step["inferences"] == 2 * point["requests"] and step["executions"] <= step["requests"]
            assert 0 < step["compute_ms"] <= step["server_ms"] < point["latency"]["max"]
        # The ensemble's time in the server holds its steps' (on one machine the sum can exceed it only by the
        # steps' own bookkeeping, never by a whole step).
        assert sum(s["server_ms"] for s in point["steps"].values()) < 1.5 * point["server"]["server_ms"]
    assert report["ceiling"] is None and any("no ceiling" in n or "a pipeline" in n for n in report["notes"])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "Where a pipeline request's time goes" in markdown and "| 4 | sentiment_model |" in markdown
    assert "--length does not apply" in cli("bench", "sentiment", "--repository", pipeline_builds.repository,
                                            "--length", "seq=8").stderr
