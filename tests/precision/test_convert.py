"""FP16 and INT8 conversions of a real exported model, run in a child process (ONNX Runtime, no mocks)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests import models
from tests.precision.shared import cnn_spec, encoder_spec, graph_types
from tritongen.precision.calibration import random_calibration
from tritongen.precision.convert import (
    fp16_from_onnx,
    int8_dynamic_from_onnx,
    int8_static_from_onnx,
    model_bytes,
    probe_in_subprocess,
)
from tritongen.spec import random_inputs

INT16_MAX = 32767


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_probe_reports_a_model_onnxruntime_cannot_load(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    problem = probe_in_subprocess(broken, {"x": np.zeros((1, 2), np.float32)})
    assert problem and problem.startswith("ONNX Runtime cannot run the model")


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
    static = int8_static_from_onnx(cnn_onnx, tmp_path / "static.onnx", random_calibration(cnn_spec()))
    ops = {n.op_type for n in onnx.load(str(static)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    dynamic = int8_dynamic_from_onnx(cnn_onnx, tmp_path / "dynamic.onnx")
    for path in (static, dynamic):
        got = run(path, feeds)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 0.1 * np.abs(expected).max()


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
    static = int8_static_from_onnx(cnn_onnx, tmp_path / "static.onnx", random_calibration(cnn_spec()),
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
    path = int8_static_from_onnx(cnn_onnx, tmp_path / "static.onnx", calibration,
                                 symmetric_activations=True)  # the --ort-accelerator tensorrt:int8 build: 52% off before
    feeds = {"image": np.random.default_rng(4).standard_normal((16, 3, 32, 32)).astype(np.float32)}
    outputs = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        outputs.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0])
    kernels, arithmetic = outputs
    assert np.abs(kernels - arithmetic).max() <= 0.02 * np.abs(arithmetic).max()


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
    int8_static_from_onnx(path, tmp_path / "static.onnx", random_calibration(encoder_spec()))
    assert list(cwd.iterdir()) == []
    assert (tmp_path / "dynamic.onnx").exists() and (tmp_path / "static.onnx").exists()


@pytest.mark.slow
def test_conversions_leave_this_process_as_they_found_it(cnn_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    """ONNX Runtime's tools log on the root logger and write into the current directory: the library must not
    chdir or change the root logger's level to hide that (another thread of the caller would see it)."""
    changes: list[str] = []
    real_chdir, real_set_level = os.chdir, logging.Logger.setLevel

    def chdir(path: object) -> None:
        changes.append(f"chdir {path}")
        real_chdir(path)

    def set_level(logger: logging.Logger, level: int) -> None:
        if logger is logging.getLogger():
            changes.append(f"root logger level {level}")
        real_set_level(logger, level)

    monkeypatch.setattr(os, "chdir", chdir)
    monkeypatch.setattr(logging.Logger, "setLevel", set_level)
    level = logging.getLogger().level
    fp16_from_onnx(cnn_onnx, tmp_path / "fp16.onnx")
    int8_static_from_onnx(cnn_onnx, tmp_path / "static.onnx", random_calibration(cnn_spec(), items=8))
    int8_dynamic_from_onnx(cnn_onnx, tmp_path / "dynamic.onnx")
    assert changes == [] and logging.getLogger().level == level
