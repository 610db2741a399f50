"""The `python` format's model.py, rendered and then served for real: batching across requests, errors per request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.servers import built_repository, children, tritonserver_pids
from tritongen.errors import TritongenError
from tritongen.formats.python import python_model_from_onnx, write_python_model
from tritongen.runners.onnxruntime import OnnxRuntimeRunner
from tritongen.runners.triton import TritonRequestError, TritonRunner
from tritongen.server import launch
from tritongen.server.base import ServerHandle
from tritongen.spec import ModelSpec, parse_input_spec


def test_model_py_is_python_that_names_its_onnx_file_and_interface() -> None:
    spec = ModelSpec(inputs=(parse_input_spec("tokens:seq:int64"),), max_batch_size=8)
    text = python_model_from_onnx("net.onnx", spec)
    compile(text, "model.py", "exec")
    assert 'ONNX_FILENAME = "net.onnx"' in text
    assert "#   input  tokens:seq:int64" in text and "#   max_batch_size 8" in text


def test_write_python_model_needs_the_onnx_file_first(tmp_path: Path) -> None:
    with pytest.raises(TritongenError, match="model.onnx does not exist"):
        write_python_model(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"")
    assert write_python_model(tmp_path) == tmp_path / "model.py"
    assert "import onnxruntime as ort" in (tmp_path / "model.py").read_text()


def test_a_name_with_a_newline_stays_inside_its_comment() -> None:
    from tritongen.spec import TensorSpec, dtype_from_name

    spec = ModelSpec(inputs=(parse_input_spec("x:4:fp32"),),
                     outputs=(TensorSpec("y\nimport os; os.system('boom')", dtype_from_name("fp32"), (4,)),))
    text = python_model_from_onnx("model.onnx", spec)
    compile(text, "model.py", "exec")
    assert not any(line.startswith("import os; os.system") for line in text.splitlines())
    assert "#   output y\\nimport os" in text


def test_the_python_format_writes_model_py_beside_the_onnx_file(tmp_path: Path) -> None:
    from tests.formats.test_onnx import SPEC, job
    from tritongen.config import ModelConfig, parse_config, render_config
    from tritongen.formats.python import FORMAT

    j = job(tmp_path)
    written = FORMAT.write_version(j)
    assert sorted(p.name for p in j.version_dir.iterdir()) == ["model.onnx", "model.py"]
    assert "#   input  x:4:fp32" in (j.version_dir / "model.py").read_text()
    FORMAT.check_config(parse_config(render_config(ModelConfig("m", SPEC, format="python"))), j.version_dir, written)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, Path]]:
    """TinyEncoder (tokens and mask over a dynamic `seq` axis) in the python format, 2 instances, served."""
    repository = built_repository(tmp_path_factory, "encoder")
    with launch(repository) as handle:
        yield handle, repository / "enc" / "1" / "model.onnx"


def request(seq: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"tokens": rng.integers(0, 50, (1, seq)), "mask": np.ones((1, seq), np.int64)}


def inference_counts(handle: ServerHandle) -> tuple[int, int]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(handle.http_url)
    stats = client.get_inference_statistics("enc")["model_stats"][0]
    client.close()
    return stats["inference_count"], stats["execution_count"]


@pytest.mark.server
def test_batched_requests_each_get_their_own_answer_at_every_length(encoder) -> None:
    handle, onnx_path = encoder
    rng = np.random.default_rng(0)
    # Triton's batcher joins only requests of one shape (no ragged batching here): a run of each length.
    feeds = [request(seq, rng) for seq in [8] * 16 + [12] * 16]
    with TritonRunner(handle.grpc_url, "enc", protocol="grpc") as runner:
        for _ in range(5):  # whether a burst gets batched is up to timing; one that is, is what this test needs
            before = inference_counts(handle)
            answers = runner.infer_many(feeds)
            inferences, executions = (a - b for a, b in zip(inference_counts(handle), before, strict=True))
            if executions < inferences:
                break
    assert executions < inferences
    with OnnxRuntimeRunner(onnx_path) as reference:
        for sent, answer in zip(feeds, answers, strict=True):
            expected = reference.infer(sent)
            assert isinstance(answer, dict), answer
            for name, value in expected.items():
                np.testing.assert_allclose(answer[name], value, atol=1e-5, rtol=1e-4)
    assert answers[0]["output_0"].shape == (1, 8, 16) and answers[-1]["output_0"].shape == (1, 12, 16)


@pytest.mark.server
def test_a_request_that_fails_in_onnx_runtime_fails_alone(encoder) -> None:
    handle, _ = encoder
    rng = np.random.default_rng(1)
    feeds = [request(8, rng) for _ in range(16)]
    feeds[5] = {**feeds[5], "tokens": np.full((1, 8), 10_000, np.int64)}  # far outside the 50-token vocabulary
    with TritonRunner(handle.grpc_url, "enc", protocol="grpc") as runner:
        answers = runner.infer_many(feeds)
    assert isinstance(answers[5], TritonRequestError)
    assert "ONNX Runtime failed on this request" in answers[5].server_message
    assert all(isinstance(a, dict) for i, a in enumerate(answers) if i != 5)


@pytest.mark.server
def test_the_configs_instance_count_runs_that_many_stubs(encoder) -> None:
    handle, _ = encoder
    (server,) = tritonserver_pids()
    assert len(children(server, "triton_python")) == 2  # instance_group count: 2 in the built config
