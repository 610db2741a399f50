"""Shared fixtures: real small models saved as every checkpoint kind, and a CLI runner."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from tests import models

REPO_ROOT = Path(__file__).resolve().parent.parent
# Nothing in the tests may reach the Hugging Face hub (huggingface_hub reads this when it is first imported).
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def save_checkpoint(module: torch.nn.Module, path: Path, kind: str = "state_dict",
                    example: tuple[torch.Tensor, ...] | None = None, dynamic_shapes: object = None) -> Path:
    """Save `module` as one checkpoint kind: state_dict, wrapped, dataparallel, full, torchscript, pt2."""
    module = module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "state_dict":
        torch.save(module.state_dict(), path)
    elif kind == "wrapped":  # what training loops write
        torch.save({"epoch": 3, "model_state_dict": module.state_dict(), "optimizer": {}}, path)
    elif kind == "dataparallel":
        torch.save({f"module.{k}": v for k, v in module.state_dict().items()}, path)
    elif kind == "full":
        torch.save(module, path)
    elif kind == "torchscript":
        torch.jit.save(torch.jit.script(module), str(path))
    elif kind == "pt2":
        assert example is not None
        torch.export.save(torch.export.export(module, example, dynamic_shapes=dynamic_shapes), str(path))
    else:
        raise ValueError(kind)
    return path


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """Run `tritongen ARGS` in-process; stdout and stderr kept apart (for --json)."""
    from tritongen.cli import main

    def run(*args: str | Path) -> CliResult:
        runner = CliRunner()
        argv = [str(a) for a in args]
        saved, sys.argv = sys.argv, ["tritongen", *argv]  # as the console script would see it
        try:
            result = runner.invoke(main, argv, catch_exceptions=True)
        finally:
            sys.argv = saved
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def cnn_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(models.SmallCNN(), tmp_path / "cnn.pt")


CNN_ARGS = ("--model-class", "tests.models:SmallCNN", "--input", "image:3x32x32:fp32", "--no-deploy")


@dataclass
class HfBuilds:
    """The tiny Hugging Face models (tests/hf_models.py) and a safetensors model, built once into one repository."""

    repository: Path
    sources: dict[str, Path]  # model name -> what was built from
    results: dict  # model name -> tritongen.build.BuildResult
    examples: Path  # the --example-inputs folder of `encoder`


# model name -> (tests.hf_models factory or None, file name, extra BuildOptions fields)
HF_BUILDS = {
    "bert": ("bert_classifier", "bert", {}),
    # --input given in the wrong order: they bind by name.
    "gpt2": ("gpt2_lm", "gpt2", {"inputs": ("attention_mask:sequence:int64", "input_ids:sequence:int64")}),
    "vit": ("vit_classifier", "vit", {}),
    "whisper": ("whisper_audio_classifier", "whisper", {}),
    "wav2vec2": ("wav2vec2_encoder", "wav2vec2", {}),
    "distilbert": ("distilbert_pt2", "distilbert.pt2", {}),
    "encoder": (None, "encoder.safetensors", {
        "model_class": "tests.models:TinyEncoder", "inputs": ("tokens:seq:int64", "mask:seq:int64"),
        "outputs": ("hidden", "pooled")}),
}


@pytest.fixture(scope="session")
def hf_builds(tmp_path_factory: pytest.TempPathFactory) -> HfBuilds:
    """Build every model of HF_BUILDS (in this process: transformers is imported once)."""
    import numpy as np
    from safetensors.torch import save_file

    from tests import hf_models
    from tritongen.build import BuildOptions, build_model

    root = tmp_path_factory.mktemp("hf")
    sources: dict[str, Path] = {}
    for name, (factory, file_name, _) in HF_BUILDS.items():
        if factory is not None:
            sources[name] = getattr(hf_models, factory)(root / file_name)
    torch.manual_seed(0)
    sources["encoder"] = root / "encoder.safetensors"
    save_file(models.TinyEncoder().eval().state_dict(), str(sources["encoder"]))
    examples = root / "examples"
    examples.mkdir()
    rng = np.random.default_rng(0)
    for length, items in ((8, 5), (24, 3)):
        lengths = rng.integers(1, length + 1, items)
        np.savez(examples / f"len{length}.npz", tokens=rng.integers(0, 50, (items, length)),
                 mask=(np.arange(length)[None, :] < lengths[:, None]).astype(np.int64))
    repository = root / "repo"
    results = {}
    for name, (_, _, extra) in HF_BUILDS.items():
        options = {"example_inputs": examples} if name == "encoder" else {}
        results[name] = build_model(BuildOptions(checkpoint=sources[name], name=name, repository=repository,
                                                 max_batch_size=8, deploy=False, **extra, **options))
    return HfBuilds(repository, sources, results, examples)


@dataclass
class PipelineBuilds:
    """Three pipelines (a BERT classifier, a RoBERTa sentence embedder, a ViT classifier) built by one
    `tritongen build -f tritongen.toml --json`, once per session."""

    project: Path  # the tritongen.toml
    repository: Path
    sources: dict[str, Path]  # ensemble name -> the Hugging Face folder
    output: dict  # build's --json output
    exit_code: int


# ensemble name -> (tests.hf_models factory, its keyword arguments, the [[model]] options besides checkpoint and name)
PIPELINES = {
    "sentiment": ("bert_classifier", {}, {"pipeline": True, "top-k": 2, "max-batch-size": 8}),
    "embedder": ("roberta_embedder", {}, {"pipeline": True, "normalize": True, "max_batch_size": 8}),
    "vision": ("vit_classifier", {"processor": "CROPPING_PROCESSOR"}, {"pipeline": True, "max-batch-size": 8}),
}


@pytest.fixture(scope="session")
def pipeline_builds(tmp_path_factory: pytest.TempPathFactory) -> PipelineBuilds:
    from tests import hf_models
    from tritongen.cli import main

    root = tmp_path_factory.mktemp("pipelines")
    sources, lines = {}, ['repository = "model_repository"', "deploy = false"]
    for name, (factory, kwargs, options) in PIPELINES.items():
        kwargs = {k: getattr(hf_models, v) for k, v in kwargs.items()}
        sources[name] = getattr(hf_models, factory)(root / "folders" / name, **kwargs)
        lines += ["", "[[model]]", f'checkpoint = "folders/{name}"', f'name = "{name}"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    project = root / "tritongen.toml"
    project.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["build", "-f", str(project), "--json"], catch_exceptions=False)
    output = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return PipelineBuilds(project, root / "model_repository", sources, output, result.exit_code)


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with versions 1 and 2 of one small model whose outputs differ (tests/rollout/versions.py)."""
    from tests.rollout.versions import build_versions

    return build_versions(tmp_path_factory.mktemp("rollout"))


@pytest.fixture(scope="session")
def h2load() -> Any:
    """The native load generator (apt: nghttp2-client). Where it is missing its tests skip, unless CI requires it
    (TRITONGEN_REQUIRE_NATIVE_LOAD=1, set by .ci/run): then they fail."""
    from tritongen.bench.h2load import find_h2load

    found = find_h2load()
    if found is None:
        message = "h2load is not installed (apt-get install nghttp2-client)"
        if os.environ.get("TRITONGEN_REQUIRE_NATIVE_LOAD") == "1":
            pytest.fail(message + ", and TRITONGEN_REQUIRE_NATIVE_LOAD=1")
        pytest.skip(message)
    return found
