"""The TensorRT step: a plan built (against a mock `tensorrt`), compared with PyTorch, kept with its provenance."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from tests import models
from tests.conftest import save_checkpoint
from tests.formats.tensorrt.fake_tensorrt import make_tensorrt
from tests.formats.tensorrt.shared import SEQ_RANGE, encoder_spec, mock_builder
from tritongen.config import ModelConfig, parse_config, render_config
from tritongen.errors import CheckFailed
from tritongen.formats.tensorrt.builder import TensorRTOptions
from tritongen.formats.tensorrt.engine import check_config_against_engine
from tritongen.formats.tensorrt.job import PlanJob
from tritongen.formats.tensorrt.step import plan_into_version_dir
from tritongen.precision.calibration import random_calibration
from tritongen.runners.torch import TorchRunner


def encoder_job(onnx_path: Path, tmp_path: Path, precision: str = "fp32", **kwargs) -> PlanJob:
    options = TensorRTOptions(dynamic_ranges=("seq:1:16:64",), timing_cache=tmp_path / "t.cache")
    return PlanJob((onnx_path,), encoder_spec(), options, precision, SEQ_RANGE, **kwargs)


def test_plan_into_version_dir_mock_tensorrt_checks_parity_and_keeps_a_reproduce_script(tmp_path: Path,
                                                                                        encoder) -> None:
    module, onnx_path = encoder
    version_dir = tmp_path / "enc" / "1"
    version_dir.mkdir(parents=True)
    reference = TorchRunner(module, ["tokens", "mask"], ["hidden", "pooled"])
    trt = make_tensorrt(version="8.6.1.6", narrow_int64=True)
    artifact = plan_into_version_dir(encoder_job(onnx_path, tmp_path), reference, version_dir, tmp_path / "work",
                                     builder=mock_builder(trt))
    assert artifact.parity.passed and artifact.parity.atol == 1e-3
    assert [t.dtype.short for t in artifact.spec.inputs] == ["int32", "int32"]
    assert (version_dir / "model.plan").exists()
    kept = version_dir / "tritongen" / "tensorrt"
    assert {p.name for p in kept.iterdir()} == {"job.json", "trt_builder.py", "engine.json", "reproduce.sh"}
    assert os.access(kept / "reproduce.sh", os.X_OK)
    assert artifact.manifest["tensorrt_version"] == "8.6.1.6" and artifact.manifest["compute_capability"] == "8.6"
    assert artifact.manifest["profile"]["tokens"] == {"min": [1, 1], "opt": [8, 16], "max": [8, 64]}
    assert artifact.manifest["tolerance"]["how"] == "FP32 defaults for TensorRT"
    proto = parse_config(render_config(ModelConfig(name="enc", spec=artifact.spec, format="tensorrt")))
    check_config_against_engine(proto, artifact.meta)


def test_fp16_io_engine_mock_tensorrt_has_fp16_outputs_in_its_config(tmp_path: Path, encoder) -> None:
    module, onnx_path = encoder
    version_dir = tmp_path / "v"
    version_dir.mkdir()
    reference = TorchRunner(module, ["tokens", "mask"], ["hidden", "pooled"])
    artifact = plan_into_version_dir(encoder_job(onnx_path, tmp_path, "fp16", fp16_io=True), reference, version_dir,
                                     tmp_path / "work", builder=mock_builder(make_tensorrt()))
    assert [t.dtype.short for t in artifact.spec.outputs] == ["fp16", "fp16"]
    assert [t.dtype.short for t in artifact.spec.inputs] == ["int64", "int64"]  # only float tensors change
    proto = parse_config(render_config(ModelConfig(name="enc", spec=artifact.spec, format="tensorrt")))
    from tritonclient.grpc import model_config_pb2

    assert model_config_pb2.DataType.Name(proto.output[0].data_type) == "TYPE_FP16"
    assert artifact.parity.passed and artifact.manifest["fp16_io"] is True


def test_int8_engine_below_the_fidelity_threshold_fails_mock_tensorrt(tmp_path: Path, encoder) -> None:
    module, onnx_path = encoder
    version_dir = tmp_path / "v"
    version_dir.mkdir()

    class Wrong(TorchRunner):
        def infer(self, feeds):
            return {k: v + 10.0 for k, v in super().infer(feeds).items()}

    reference = Wrong(module, ["tokens", "mask"], ["hidden", "pooled"])
    job = encoder_job(onnx_path, tmp_path, "int8", calibration=random_calibration(encoder_spec()))
    with pytest.raises(CheckFailed, match="TensorRT INT8 engine is too far from PyTorch FP32"):
        plan_into_version_dir(job, reference, version_dir, tmp_path / "work", builder=mock_builder(make_tensorrt()))


def test_int8_engine_tolerance_is_the_measured_error_with_headroom_mock_tensorrt(tmp_path: Path, encoder) -> None:
    """The same rule as ONNX Runtime INT8 models: tolerance_for(..., measured=...), the reference run once."""
    module, onnx_path = encoder
    version_dir = tmp_path / "v"
    version_dir.mkdir()
    calls = []

    class Shifted(TorchRunner):  # an engine 0.004 off PyTorch everywhere, as INT8 would be
        def infer(self, feeds):
            calls.append(1)
            return {k: v + 0.004 for k, v in super().infer(feeds).items()}

    job = encoder_job(onnx_path, tmp_path, "int8", calibration=random_calibration(encoder_spec()))
    artifact = plan_into_version_dir(job, Shifted(module, ["tokens", "mask"], ["hidden", "pooled"]), version_dir,
                                     tmp_path / "work", builder=mock_builder(make_tensorrt()))
    assert artifact.parity.passed and artifact.parity.atol == pytest.approx(0.008, rel=0.05)
    assert artifact.manifest["tolerance"]["how"].startswith("measured INT8 error")
    assert len(calls) == len(artifact.parity.cases)


def test_build_format_tensorrt_mock_tensorrt_writes_a_plan_model(tmp_path: Path, monkeypatch) -> None:
    from tritongen.build import BuildOptions, build_model
    from tritongen.formats.tensorrt import builder, step
    from tritongen.repository import load_reference, read_manifest

    trt = make_tensorrt(version="8.6.1.6", narrow_int64=True)
    monkeypatch.setattr(builder, "check_tensorrt_available", lambda options: None)
    monkeypatch.setattr(step, "default_builder", mock_builder(trt))
    checkpoint = save_checkpoint(models.TinyEncoder(), tmp_path / "enc.pt")
    result = build_model(BuildOptions(
        checkpoint=checkpoint, model_class="tests.models:TinyEncoder", inputs=("tokens:seq:int64", "mask:seq:int64"),
        outputs=("hidden", "pooled"), formats=("onnx", "tensorrt"), max_batch_size=8, repository=tmp_path / "repo",
        deploy=False, tensorrt=TensorRTOptions(dynamic_ranges=("seq:1:16:64",), timing_cache=tmp_path / "t.cache")))
    plan = result.artifacts[1]
    assert (plan.format, plan.model, plan.path.name) == ("tensorrt", "enc_tensorrt", "model.plan")
    assert plan.parity.passed
    from tritongen.config import read_config

    config = read_config(tmp_path / "repo" / "enc_tensorrt" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
    manifest = read_manifest(tmp_path / "repo" / "enc_tensorrt" / "1")
    assert manifest["format"] == "tensorrt" and manifest["tensorrt"]["tensorrt_version"] == "8.6.1.6"
    assert manifest["tolerance"] == {"atol": 1e-3, "rtol": 1e-3}
    inputs, _ = load_reference(tmp_path / "repo" / "enc_tensorrt" / "1")
    assert inputs["tokens"].dtype == np.int32  # what the engine takes, so validate can send it as is


# ---------------------------------------------------------------------------------------------------------------
# The real thing


def _real_tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "needs the tensorrt Python package (not installable in this environment)"
    from tritongen.formats.tensorrt.builder import gpu_visible

    return None if gpu_visible() else "needs an NVIDIA GPU visible to this process"


@pytest.mark.tensorrt
@pytest.mark.skipif(_real_tensorrt_reason() is not None, reason=str(_real_tensorrt_reason()))
def test_real_tensorrt_fp16_plan_of_the_cnn(tmp_path: Path, cnn_checkpoint: Path, cli) -> None:
    result = cli("build", cnn_checkpoint, "--model-class", "tests.models:SmallCNN", "--input", "image:3x32x32:fp32",
                 "--format", "tensorrt", "--precision", "fp16", "--max-batch-size", "8", "--repository",
                 tmp_path / "repo", "--no-deploy", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["artifacts"][0]["parity"]["passed"]
    assert (tmp_path / "repo" / "cnn" / "1" / "model.plan").stat().st_size > 0
