"""Specs and helpers the TensorRT tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritongen.formats.tensorrt import trt_builder
from tritongen.formats.tensorrt.builder import TensorRTOptions
from tritongen.formats.tensorrt.engine import EngineMeta
from tritongen.formats.tensorrt.job import PlanJob, write_job
from tritongen.formats.tensorrt.profiles import parse_dynamic_range, profile_from_spec
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name, parse_input_spec, random_inputs

FP32 = dtype_from_name("fp32")


def cnn_spec(max_batch_size: int = 32) -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("image:3x32x32:fp32"),), outputs=(TensorSpec("output", FP32, (10,)),),
                     max_batch_size=max_batch_size)


def encoder_spec(max_batch_size: int = 8) -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("tokens:seq:int64:0-49"), parse_input_spec("mask:seq:int64:0-1")),
                     outputs=(TensorSpec("hidden", FP32, ("seq", 16)), TensorSpec("pooled", FP32, (16,))),
                     max_batch_size=max_batch_size)


SEQ_RANGE = {"seq": parse_dynamic_range("seq:1:16:64")}


def engine_meta(int_dtype: str = "INT32", max_batch: int = 8) -> EngineMeta:
    profile = {"min": [1, 1], "opt": [4, 64], "max": [max_batch, 256]}
    return EngineMeta.from_dict({
        "tensorrt_version": "8.6.1.6", "compute_capability": "8.6", "cuda_runtime": "12.1",
        "tensors": [{"name": "tokens", "mode": "input", "dtype": int_dtype, "shape": [-1, -1], "profile": profile},
                    {"name": "mask", "mode": "input", "dtype": int_dtype, "shape": [-1, -1], "profile": profile},
                    {"name": "hidden", "mode": "output", "dtype": "FLOAT", "shape": [-1, -1, 16]},
                    {"name": "pooled", "mode": "output", "dtype": "FLOAT", "shape": [-1, 16]}]})


def write_mock_job(work: Path, onnx_path: Path, precision: str, calibration=None, timing_cache=None) -> Path:
    spec = encoder_spec()
    profile = profile_from_spec(spec, SEQ_RANGE)
    feeds = [random_inputs(spec, 2, {"seq": 8}, np.random.default_rng(1))]
    job = PlanJob((onnx_path,), spec, TensorRTOptions(dynamic_ranges=("seq:1:16:64",)), precision, SEQ_RANGE,
                  calibration=calibration)
    return write_job(work, job, profile, feeds, timing_cache)


def mock_builder(trt):
    """A builder that runs the builder script in this process against a mock `tensorrt` module."""

    def build(options: TensorRTOptions, job: Path) -> EngineMeta:
        return EngineMeta.from_dict(trt_builder.run_job(job, trt=trt, cuda=trt.cuda))

    return build
