"""The standalone builder script against a mock `tensorrt` module (TensorRT cannot be installed here: "mock")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.formats.tensorrt.fake_tensorrt import FakeCuda, make_tensorrt
from tests.formats.tensorrt.shared import encoder_spec, write_mock_job
from tritongen.formats.tensorrt import trt_builder
from tritongen.precision.calibration import random_calibration


def test_builder_script_mock_tensorrt_profile_flags_timing_cache(tmp_path: Path, encoder) -> None:
    _, onnx_path = encoder
    trt = make_tensorrt()
    cache = tmp_path / "timing.cache"
    job = write_mock_job(tmp_path / "job", onnx_path, "fp16", timing_cache=cache)
    meta = trt_builder.run_job(job, trt=trt, cuda=trt.cuda)
    config = trt.config
    assert config.flags == {"FP16"} and config.workspace == 4096 << 20
    assert config.profiles[0].shapes["tokens"] == ((1, 1), (8, 16), (8, 64))
    assert ("create_network", 0) in trt.calls  # TensorRT 10: explicit batch is the only kind, no flag
    assert meta["tensorrt_version"] == "10.3.0.26" and meta["compute_capability"] == "8.6"
    assert meta["timing_cache_reused"] is False and (tmp_path / "job" / "timing.cache").read_bytes() == b"+entries"
    assert [t["name"] for t in meta["tensors"]] == ["tokens", "mask", "hidden", "pooled"]
    outputs = np.load(tmp_path / "job" / "parity" / "out000.npz")
    assert outputs["hidden"].shape == (2, 8, 16)
    # A second build starts from the cache the first wrote.
    cache.write_bytes(b"+entries")
    job = write_mock_job(tmp_path / "job2", onnx_path, "fp16", timing_cache=cache)
    again = make_tensorrt()
    assert trt_builder.run_job(job, trt=again, cuda=again.cuda)["timing_cache_reused"] is True


def test_int8_calibration_mock_tensorrt_uses_the_calibration_profile_and_cache(tmp_path: Path, encoder) -> None:
    _, onnx_path = encoder
    calibration = random_calibration(encoder_spec(), items=24)  # 3 batches of 8 at seq 16
    odd = {k: v[:, :5] for k, v in calibration[0].items()}  # another shape: TensorRT calibrates at one shape only
    trt = make_tensorrt(version="8.6.1.6")
    job = write_mock_job(tmp_path / "job", onnx_path, "int8", calibration=[*calibration, odd])
    meta = trt_builder.run_job(job, trt=trt, cuda=trt.cuda)
    assert trt.config.flags == {"FP16", "INT8"}
    assert trt.config.calibration_profile.shapes["tokens"] == ((8, 16), (8, 16), (8, 16))
    assert ("create_network", 1) in trt.calls  # TensorRT 8: the EXPLICIT_BATCH flag
    assert meta["calibration_batches_used"] == 3 and (tmp_path / "job" / "calibration.cache").exists()
    # With the cache in place, a rebuild does not calibrate again.
    trt2 = make_tensorrt(version="8.6.1.6")
    meta = trt_builder.run_job(job, trt=trt2, cuda=trt2.cuda)
    assert meta["calibration_batches_used"] == 0 and ("build", ["FP16", "INT8"], 0) in trt2.calls


def test_builder_script_without_a_gpu_mock_tensorrt_says_so(tmp_path: Path, encoder) -> None:
    job = write_mock_job(tmp_path / "job", encoder[1], "fp32")
    with pytest.raises(trt_builder.BuildError, match="no CUDA GPU is visible"):
        trt_builder.run_job(job, trt=make_tensorrt(), cuda=FakeCuda(devices=0))
