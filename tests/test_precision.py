"""FP16 and INT8 ONNX models, for real on ONNX Runtime: conversion, calibration data, fidelity, build and validate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests import models
from tests.conftest import CNN_ARGS, save_checkpoint
from tritongen.config import read_config
from tritongen.errors import TritongenError
from tritongen.precision import (
    FidelityThresholds,
    PrecisionOptions,
    _calibration_reader,
    _round_up,
    calibration_from_npz,
    check_precision_options,
    fidelity_from_outputs,
    fp16_from_onnx,
    int8_dynamic_from_onnx,
    int8_static_from_onnx,
    is_classifier_like,
    model_bytes,
    probe_in_subprocess,
    random_calibration,
    resolve_tolerance,
    spec_for_io,
)
from tritongen.repository import load_reference, read_manifest
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name, parse_input_spec, random_inputs

ENCODER_ARGS = ("--model-class", "tests.models:TinyEncoder", "--input", "tokens:seq:int64", "--input", "mask:seq:int64",
                "--output", "hidden", "--output", "pooled", "--no-deploy")
FP32 = dtype_from_name("fp32")


def cnn_spec(max_batch_size: int = 32) -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("image:3x32x32:fp32"),),
                     outputs=(TensorSpec("output", FP32, (10,)),), max_batch_size=max_batch_size)


def encoder_spec() -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("tokens:seq:int64:0-49"), parse_input_spec("mask:seq:int64:0-1")),
                     outputs=(TensorSpec("hidden", FP32, ("seq", 16)), TensorSpec("pooled", FP32, (16,))))


def graph_types(path: Path) -> dict[str, int]:
    model = onnx.load(str(path), load_external_data=False)
    return {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}


# ---------------------------------------------------------------------------------------------------------------
# Options and calibration data (fast)


def test_int8_static_without_calibration_data_is_refused_with_the_three_ways_out() -> None:
    with pytest.raises(TritongenError) as err:
        check_precision_options(PrecisionOptions(precision="int8"))
    assert "needs calibration data" in err.value.message
    assert "--calibration-data" in err.value.hint and "--quantize dynamic" in err.value.hint
    assert "--calibration random" in err.value.hint


@pytest.mark.parametrize("options, words", [
    (PrecisionOptions(precision="fp32", fp16_io=True), "--fp16-io needs --precision fp16"),
    (PrecisionOptions(precision="int8", calibration="random", calibration_data=Path("x.npz")), "both"),
    (PrecisionOptions(precision="int8", calibration_data=Path("/no/such.npz")), "does not exist"),
    (PrecisionOptions(precision="fp16", min_top1_agreement=1.5), "out of range"),
])
def test_bad_precision_options(options: PrecisionOptions, words: str) -> None:
    with pytest.raises(TritongenError, match=words):
        check_precision_options(options)


def test_unused_calibration_is_a_warning_not_an_error() -> None:
    notes = check_precision_options(PrecisionOptions(precision="int8", quantize="dynamic", calibration="random"))
    assert any("not used" in n for n in notes)
    assert check_precision_options(PrecisionOptions(precision="int8", calibration="random")) == []


def test_tolerance_defaults_follow_the_precision_and_the_user_wins() -> None:
    assert resolve_tolerance("fp32", None, None) == (1e-4, 1e-3)
    assert resolve_tolerance("fp16", None, None) == (1e-2, 1e-2)
    assert resolve_tolerance("fp16", 5e-3, None) == (5e-3, 1e-2)
    assert _round_up(0.0031) == 0.0031 and _round_up(0.00312) == 0.0032 and _round_up(0.0) == 0.0


def test_calibration_npz_file_and_folder_are_batched_and_cast(tmp_path: Path) -> None:
    spec = cnn_spec()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", image=rng.standard_normal((20, 3, 32, 32)))  # float64: cast to float32
    feeds = calibration_from_npz(tmp_path / "a.npz", spec, batch=8)
    assert [f["image"].shape[0] for f in feeds] == [8, 8, 4] and feeds[0]["image"].dtype == np.float32
    (tmp_path / "dir").mkdir()
    for i in range(3):
        np.savez(tmp_path / "dir" / f"{i}.npz", image=rng.standard_normal((5, 3, 32, 32)).astype(np.float32))
    feeds = calibration_from_npz(tmp_path / "dir", spec, batch=8, max_items=12)
    assert sum(f["image"].shape[0] for f in feeds) == 12


def test_calibration_npz_with_a_dynamic_axis_and_integer_inputs(tmp_path: Path) -> None:
    spec = encoder_spec()
    np.savez(tmp_path / "short.npz", tokens=np.ones((4, 8), np.int32), mask=np.ones((4, 8), np.int64))
    np.savez(tmp_path / "long.npz", tokens=np.ones((4, 24), np.int64), mask=np.ones((4, 24), np.int64))
    feeds = calibration_from_npz(tmp_path, spec)
    assert [f["tokens"].shape for f in feeds] == [(4, 24), (4, 8)]
    assert all(f["tokens"].dtype == np.int64 for f in feeds)


@pytest.mark.parametrize("arrays, words", [
    ({"picture": np.zeros((2, 3, 32, 32), np.float32)}, "model's inputs are image"),
    ({"image": np.zeros((3, 32, 32), np.float32)}, "shape [3, 32, 32]"),
    ({"image": np.zeros((2, 3, 16, 16), np.float32)}, "size 16 at per-item dim 1"),
    ({"image": np.zeros((2, 3, 32, 32), np.int64)}, "is int64, but the input is fp32"),
])
def test_calibration_npz_mistakes_name_the_file_and_the_fix(tmp_path: Path, arrays: dict, words: str) -> None:
    np.savez(tmp_path / "calib.npz", **arrays)
    with pytest.raises(TritongenError) as err:
        calibration_from_npz(tmp_path / "calib.npz", cnn_spec())
    assert words in err.value.message and "calib.npz" in err.value.message and err.value.hint


def test_encoder_calibration_arrays_must_agree_on_the_shared_axis(tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", tokens=np.ones((2, 8), np.int64), mask=np.ones((2, 9), np.int64))
    with pytest.raises(TritongenError, match="disagree on axis 'seq'"):
        calibration_from_npz(tmp_path / "c.npz", encoder_spec())


def test_random_calibration_respects_value_ranges() -> None:
    feeds = random_calibration(encoder_spec(), items=20)
    assert sum(f["tokens"].shape[0] for f in feeds) >= 20
    assert all(f["tokens"].max() <= 49 and f["mask"].max() <= 1 for f in feeds)


def test_fidelity_numbers_top1_and_thresholds() -> None:
    spec = cnn_spec()
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]], np.float32)
    spec = ModelSpec(inputs=spec.inputs, outputs=(TensorSpec("output", FP32, (3,)),))
    close = logits + np.array([[0.1, 0.0, 0.0], [0.0, -1.5, 0.0]], np.float32)  # second item flips to class 2
    report = fidelity_from_outputs([{"output": logits}], [{"output": close}], spec, FidelityThresholds(0.5, 0.9),
                                   "test", 2)
    out = report.outputs[0]
    assert out.max_abs_err == pytest.approx(1.5) and out.relative_error == pytest.approx(0.5)
    assert out.top1_agreement == 0.5 and not out.passed and not report.passed
    assert "top-1 agrees with PyTorch on 50.0% of 2 items" in report.failures()
    assert is_classifier_like(TensorSpec("logits", FP32, (10,)))
    assert not is_classifier_like(TensorSpec("hidden", FP32, ("seq", 16)))
    assert not is_classifier_like(TensorSpec("ids", dtype_from_name("int64"), (10,)))


def test_fp16_io_spec_changes_only_float32_tensors() -> None:
    spec = spec_for_io(encoder_spec(), fp16_io=True)
    assert [t.dtype.short for t in spec.inputs] == ["int64", "int64"]
    assert [t.dtype.short for t in spec.outputs] == ["fp16", "fp16"]


def test_probe_reports_a_model_onnxruntime_cannot_load(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    problem = probe_in_subprocess(broken, {"x": np.zeros((1, 2), np.float32)})
    assert problem and problem.startswith("ONNX Runtime cannot run the model")


# ---------------------------------------------------------------------------------------------------------------
# Conversions of a real exported model (ONNX Runtime, no mocks)


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from tritongen.export.onnx import onnx_from_module

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cnn") / "model.onnx"
    onnx_from_module(models.SmallCNN().eval(), cnn_spec(), path)
    return path


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.slow
def test_fp16_keeps_fp32_io_by_default_and_converts_io_on_request(cnn_onnx: Path, tmp_path: Path) -> None:
    feeds = random_inputs(cnn_spec(), 4, {}, np.random.default_rng(0))
    keep = fp16_from_onnx(cnn_onnx, tmp_path / "keep.onnx")
    assert set(graph_types(keep).values()) == {onnx.TensorProto.FLOAT}
    io16 = fp16_from_onnx(cnn_onnx, tmp_path / "io16.onnx", keep_io_types=False)
    assert set(graph_types(io16).values()) == {onnx.TensorProto.FLOAT16}
    expected = run(cnn_onnx, feeds)
    assert np.abs(run(keep, feeds) - expected).max() < 1e-2
    assert run(io16, {"image": feeds["image"].astype(np.float16)}).dtype == np.float16
    assert model_bytes(keep) < model_bytes(cnn_onnx)


@pytest.mark.slow
def test_int8_static_and_dynamic_quantization_run_close_to_fp32(cnn_onnx: Path, tmp_path: Path) -> None:
    feeds = random_inputs(cnn_spec(), 8, {}, np.random.default_rng(1))
    expected = run(cnn_onnx, feeds)
    static = int8_static_from_onnx(cnn_onnx, tmp_path / "static.onnx", _calibration_reader(random_calibration(cnn_spec())))
    ops = {n.op_type for n in onnx.load(str(static)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    dynamic = int8_dynamic_from_onnx(cnn_onnx, tmp_path / "dynamic.onnx")
    for path in (static, dynamic):
        got = run(path, feeds)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 0.1 * np.abs(expected).max()


INT16_MAX = 32767


def int8_weights(path: Path) -> list[np.ndarray]:
    """The int8 weight tensors of a quantized model: what INT8 kernels multiply activations by."""
    from onnx import numpy_helper

    model = onnx.load(str(path))
    consumed = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    consumed |= {n.input[1] for n in model.graph.node if n.op_type in ("MatMulInteger", "ConvInteger")}
    return [numpy_helper.to_array(t) for t in model.graph.initializer
            if t.name in consumed and t.data_type == onnx.TensorProto.INT8 and np.prod(t.dims) > 1]


@pytest.mark.slow
@pytest.mark.parametrize("symmetric", [False, True])
def test_int8_weights_are_7_bit_so_no_cpu_can_saturate(cnn_onnx: Path, tmp_path: Path, symmetric: bool) -> None:
    """x86-64 CPUs without VNNI sum pairs of uint8 x int8 products into int16 (VPMADDUBSW): with 8-bit weights
    that saturates and the model is wrong on those CPUs only; with 7-bit weights it cannot. A property of the file,
    so this holds whichever CPU the test runs on."""
    static = int8_static_from_onnx(cnn_onnx, tmp_path / "static.onnx", _calibration_reader(random_calibration(cnn_spec())),
                                   symmetric_activations=symmetric)
    dynamic = int8_dynamic_from_onnx(cnn_onnx, tmp_path / "dynamic.onnx")
    for path in (static, dynamic):
        weights = int8_weights(path)
        assert weights, f"no int8 weights found in {path.name}"
        largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
        assert 2 * 255 * largest <= INT16_MAX, f"{path.name}: weights up to {largest} can saturate int16 pair sums"


@pytest.mark.slow
def test_int8_kernels_on_this_cpu_compute_what_the_qdq_model_says(cnn_onnx: Path, tmp_path: Path) -> None:
    """ONNX Runtime runs a QDQ model with fused INT8 kernels (ORT_ENABLE_ALL, as served) or as plain float
    quantize/dequantize arithmetic (ORT_DISABLE_ALL): the same numbers unless this CPU's kernels saturate."""
    import onnxruntime as ort

    calibration = [{"image": np.random.default_rng(3).standard_normal((8, 3, 32, 32)).astype(np.float32)}
                   for _ in range(6)]
    path = int8_static_from_onnx(cnn_onnx, tmp_path / "static.onnx", _calibration_reader(calibration),
                                 symmetric_activations=True)  # the --ort-accelerator tensorrt:int8 build: 52% off before
    feeds = {"image": np.random.default_rng(4).standard_normal((16, 3, 32, 32)).astype(np.float32)}
    outputs = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        outputs.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0])
    kernels, arithmetic = outputs
    assert np.abs(kernels - arithmetic).max() <= 0.02 * np.abs(arithmetic).max()


def test_the_quantization_choice_and_this_cpu_are_recorded(tmp_path: Path) -> None:
    from tritongen.precision import cpu_int8_description, quantization_record

    record = quantization_record(PrecisionOptions(precision="int8", symmetric_activations=True))
    assert record["reduce_range"] is True and "7-bit" in record["weights"]
    assert record["safe_on"].startswith("every x86-64 CPU") and "symmetric" in record["activations"]
    assert quantization_record(PrecisionOptions(precision="fp16")) is None
    full = quantization_record(PrecisionOptions(precision="int8", quantize="dynamic", reduce_range=False))
    assert "without VNNI can saturate" in full["safe_on"] and "full 8-bit" in full["weights"]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx2 fma\n")
    assert cpu_int8_description(cpuinfo).endswith("AVX2, no VNNI")
    cpuinfo.write_text("flags : avx2 avx512f avx512_vnni\n")
    assert cpu_int8_description(cpuinfo).endswith("AVX-512, VNNI (avx512_vnni)")


# ---------------------------------------------------------------------------------------------------------------
# build --precision end to end, and validate on the embedded server


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


def test_int8_without_calibration_fails_before_export(tmp_path: Path, cnn_checkpoint: Path, cli) -> None:
    result = cli("build", cnn_checkpoint, *CNN_ARGS, "--precision", "int8", "--repository", tmp_path / "repo")
    assert result.exit_code == 2 and "needs calibration data" in result.stderr and "Traceback" not in result.stderr


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


@pytest.mark.slow
def test_quantizing_leaves_nothing_in_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    """ONNX Runtime's symbolic shape inference dumps files into the current directory when it fails (it does on
    this encoder): the quantizer must run it elsewhere."""
    import torch

    from tritongen.export.onnx import onnx_from_module

    torch.manual_seed(0)
    path = tmp_path / "model" / "model.onnx"
    onnx_from_module(models.TinyEncoder().eval(), encoder_spec(), path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    int8_dynamic_from_onnx(path, tmp_path / "dynamic.onnx")
    int8_static_from_onnx(path, tmp_path / "static.onnx", _calibration_reader(random_calibration(encoder_spec())))
    assert list(cwd.iterdir()) == []
    assert (tmp_path / "dynamic.onnx").exists() and (tmp_path / "static.onnx").exists()
