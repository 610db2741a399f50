"""`build --precision` end to end: the step's reports, the served configs, and validate on the embedded server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests import models
from tests.conftest import CNN_ARGS, save_checkpoint
from tests.precision.shared import ENCODER_ARGS, cnn_spec, encoder_spec, graph_types
from tritongen.config import read_config
from tritongen.precision.convert import probe_in_subprocess
from tritongen.precision.options import PrecisionOptions
from tritongen.precision.report import precision_summary
from tritongen.precision.step import onnx_with_precision, spec_for_io
from tritongen.repository import load_reference, read_manifest
from tritongen.runners.torch import TorchRunner
from tritongen.spec import random_inputs
from tritongen.verify import parity_cases


def test_fp16_io_spec_changes_only_float32_tensors() -> None:
    spec = spec_for_io(encoder_spec(), fp16_io=True)
    assert [t.dtype.short for t in spec.inputs] == ["int64", "int64"]
    assert [t.dtype.short for t in spec.outputs] == ["fp16", "fp16"]


class CountingRunner(TorchRunner):
    """The PyTorch reference, counting the feeds it is asked to run."""

    calls = 0

    def infer(self, feeds):
        CountingRunner.calls += 1
        return super().infer(feeds)


@pytest.mark.slow
def test_int8_runs_the_reference_once_per_case_and_derives_its_tolerance(cnn_onnx: Path, tmp_path: Path) -> None:
    """Fidelity items and parity cases each run once; the measured-error tolerance needs no second run."""
    import torch

    torch.manual_seed(0)
    reference = CountingRunner(models.SmallCNN().eval(), ["image"], ["output"], batched=True)
    spec = cnn_spec()
    reference_inputs = random_inputs(spec, 4, {}, np.random.default_rng(7))
    CountingRunner.calls = 0
    result = onnx_with_precision(cnn_onnx, spec, reference, PrecisionOptions(
        precision="int8", calibration="random", measure_speed=False, accept_fidelity=True), tmp_path / "work",
        reference_inputs)
    fidelity_feeds = 1 + 8  # the reference inputs + 64 random items in batches of 8
    assert CountingRunner.calls == fidelity_feeds + len(parity_cases(spec))
    tolerance = result.report.tolerance
    assert tolerance["how"].startswith("measured INT8 error") and result.parity.atol == tolerance["atol"]
    assert max(o.max_abs_err for o in result.parity.outputs) * 2 <= tolerance["atol"] * 1.01


@pytest.fixture(scope="module")
def precision_repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """One repository with FP16 and INT8 builds of the test CNN and encoder, in the onnx and python formats."""
    from click.testing import CliRunner

    from tritongen.cli import main

    root = tmp_path_factory.mktemp("precision")
    repo = root / "repo"
    cnn = save_checkpoint(models.SmallCNN(), root / "cnn.pt")
    encoder = save_checkpoint(models.TinyEncoder(), root / "encoder.pt")
    calibration = root / "calibration.npz"
    np.savez(calibration, image=np.random.default_rng(3).standard_normal((48, 3, 32, 32)).astype(np.float32))
    builds = {
        "cnn16": (cnn, CNN_ARGS + ("--precision", "fp16", "--format", "onnx", "--format", "python",
                                   "--ort-accelerator", "cuda")),
        # Accelerator configs are ignored by the embedded server's python backend, but it must still load them.
        "cnn8": (cnn, CNN_ARGS + ("--precision", "int8", "--calibration-data", str(calibration), "--format", "onnx",
                                  "--format", "python", "--ort-accelerator", "tensorrt:int8",
                                  "--ort-accelerator", "openvino")),
        "enc16": (encoder, ENCODER_ARGS + ("--precision", "fp16", "--fp16-io", "--format", "python")),
        "enc8": (encoder, ENCODER_ARGS + ("--precision", "int8", "--quantize", "dynamic", "--format", "onnx")),
    }
    results = {}
    for name, (checkpoint, args) in builds.items():
        out = CliRunner().invoke(main, ["build", str(checkpoint), *args, "--name", name, "--repository", str(repo),
                                        "--json"], catch_exceptions=False)
        assert out.exit_code == 0, out.stderr
        results[name] = json.loads(out.stdout)
    return repo, results


@pytest.mark.slow
def test_precision_reports_size_speed_and_fidelity(precision_repository: tuple[Path, dict]) -> None:
    repo, results = precision_repository
    cnn8 = results["cnn8"]["precision"]
    assert cnn8["precision"] == "int8" and "static" in cnn8["method"] and "per-channel" in cnn8["method"]
    assert cnn8["calibration"]["items"] == 48 and cnn8["calibration"]["source"].endswith("calibration.npz")
    assert cnn8["size_bytes"]["before"] > 0 and cnn8["size_bytes"]["after"] > 0
    assert cnn8["speed"]["ms_before"] > 0 and cnn8["speed"]["ms_after"] > 0 and cnn8["speed"]["batch"] == 8
    fidelity = cnn8["fidelity"]["outputs"]["output"]
    assert fidelity["top1_agreement"] is not None and fidelity["top1_agreement"] >= 0.9
    assert cnn8["fidelity"]["items"] > 4 and cnn8["fidelity"]["passed"]
    assert cnn8["fp32_export_parity"]["passed"]
    cnn16 = results["cnn16"]["precision"]
    assert cnn16["size_bytes"]["after"] < cnn16["size_bytes"]["before"]
    assert cnn16["tolerance"] == {"atol": 0.01, "rtol": 0.01, "how": "FP16 defaults"}
    # The manifest records what the report says, and the tolerance validate will use.
    manifest = read_manifest(repo / "cnn8" / "1")
    assert manifest["precision"]["method"] == cnn8["method"]
    assert manifest["tolerance"]["atol"] == cnn8["tolerance"]["atol"] >= fidelity["max_abs_err"]
    accelerators = read_config(repo / "cnn8" / "config.pbtxt").optimization.execution_accelerators
    assert accelerators.gpu_execution_accelerator[0].parameters["precision_mode"] == "INT8"
    assert "symmetric activations" in cnn8["method"]  # what TensorRT needs from a QDQ model
    assert "7-bit" in cnn8["method"] and manifest["precision"]["quantization"]["reduce_range"] is True
    assert not read_config(repo / "cnn8_python" / "config.pbtxt").HasField("optimization")
    enc8 = results["enc8"]["precision"]
    assert "dynamic" in enc8["method"] and enc8["calibration"] is None
    lines = precision_summary(cnn8)
    assert any(line.startswith("INT8 weights: 7-bit range") and "every x86-64 CPU" in line for line in lines)


@pytest.mark.slow
def test_fp16_io_config_and_reference_follow_the_model(precision_repository: tuple[Path, dict]) -> None:
    repo, _ = precision_repository
    config = read_config(repo / "enc16" / "config.pbtxt")
    from tritonclient.grpc import model_config_pb2

    types = [model_config_pb2.DataType.Name(t.data_type) for t in (*config.input, *config.output)]
    assert types == ["TYPE_INT64", "TYPE_INT64", "TYPE_FP16", "TYPE_FP16"]
    assert graph_types(repo / "enc16" / "1" / "model.onnx")["hidden"] == onnx.TensorProto.FLOAT16
    inputs, outputs = load_reference(repo / "enc16" / "1")
    assert inputs["tokens"].dtype == np.int64 and outputs["hidden"].dtype == np.float32  # PyTorch FP32 reference
    cnn_types = graph_types(repo / "cnn16" / "1" / "model.onnx")
    assert cnn_types == {"image": onnx.TensorProto.FLOAT, "output": onnx.TensorProto.FLOAT}


@pytest.mark.slow
@pytest.mark.server
def test_fp16_and_int8_models_pass_validate_on_the_embedded_server(precision_repository: tuple[Path, dict]) -> None:
    from tritongen.validate import validate_repository

    repo, _ = precision_repository
    report = validate_repository(repo)
    assert {m.name for m in report.models} == {"cnn16", "cnn16_python", "cnn8", "cnn8_python", "enc16", "enc8"}
    failed = {m.name: m.failures() for m in report.models if not m.passed}
    assert not failed and report.passed


@pytest.mark.slow
def test_fidelity_below_the_threshold_fails_the_build_unless_accepted(tmp_path: Path, cnn_checkpoint: Path,
                                                                      cli) -> None:
    strict = ("--precision", "int8", "--calibration", "random", "--max-relative-error", "0", "--no-speed",
              "--repository", tmp_path / "repo")
    failed = cli("build", cnn_checkpoint, *CNN_ARGS, *strict)
    assert failed.exit_code == 1
    assert "INT8 model is too far from PyTorch FP32" in failed.stderr and "--accept-fidelity" in failed.stderr
    assert "Traceback" not in failed.stderr and not (tmp_path / "repo" / "cnn").exists()
    accepted = cli("build", cnn_checkpoint, *CNN_ARGS, *strict, "--accept-fidelity", "--json")
    assert accepted.exit_code == 0, accepted.stderr
    report = accepted.json()["precision"]
    assert report["accepted_below_threshold"] and not report["fidelity"]["passed"] and report["speed"] is None
    assert any("--accept-fidelity" in w for w in accepted.json()["warnings"])


@pytest.mark.slow
def test_fp16_of_an_encoder_that_onnxruntime_cannot_optimise_still_builds(tmp_path: Path, cli) -> None:
    """ONNX Runtime 1.32 segfaults loading the plain FP16 conversion of this encoder (d_model 128, 2 layers).

    The conversion is probed in a child process and retried with more ops in FP32; whether or not the installed
    ONNX Runtime still crashes, the build must succeed and the served model must load.
    """
    ckpt = save_checkpoint(models.TinyEncoder(vocab=100, d_model=128, layers=2), tmp_path / "enc.pt")
    result = cli("build", ckpt, "--model-class", "tests.models:TinyEncoder", "--model-kwargs",
                 '{"vocab": 100, "d_model": 128, "layers": 2}', "--input", "tokens:seq:int64", "--input",
                 "mask:seq:int64", "--no-deploy", "--precision", "fp16", "--format", "python", "--no-speed",
                 "--repository", tmp_path / "repo", "--json")
    assert result.exit_code == 0, result.stderr
    assert probe_in_subprocess(tmp_path / "repo" / "enc" / "1" / "model.onnx",
                               load_reference(tmp_path / "repo" / "enc" / "1")[0]) is None
