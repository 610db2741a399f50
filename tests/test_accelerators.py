"""`--ort-accelerator`: parsing, the checks against the rest of the build, and configs Triton's schema accepts."""

from __future__ import annotations

import pytest

from tritongen.accelerators import (
    execution_accelerators,
    parse_ort_accelerator,
    parse_ort_accelerators,
    spec_profile_shapes,
)
from tritongen.config import ModelConfig, parse_config, render_config
from tritongen.errors import TritongenError
from tritongen.formats.tensorrt.profiles import parse_dynamic_ranges
from tritongen.spec import ModelSpec, parse_input_spec


def encoder_spec() -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("tokens:seq:int64"), parse_input_spec("mask:seq:int64")),
                     max_batch_size=16)


def parse(*items: str, kind: str = "auto", precision: str = "fp32", quantize: str = "static",
          formats: tuple[str, ...] = ("onnx",)):
    return parse_ort_accelerators(items, kind=kind, precision=precision, quantize=quantize, formats=formats)


def test_parse_accelerators() -> None:
    assert parse_ort_accelerator("tensorrt").precision is None
    assert parse_ort_accelerator("TensorRT:FP16").precision == "fp16"
    assert parse_ort_accelerator("openvino").device == "cpu" and parse_ort_accelerator("cuda").device == "gpu"
    with pytest.raises(TritongenError, match="unknown --ort-accelerator 'rocm'"):
        parse_ort_accelerator("rocm")
    with pytest.raises(TritongenError, match="only tensorrt takes a precision"):
        parse_ort_accelerator("cuda:fp16")


@pytest.mark.parametrize("items, kwargs, words", [
    (("tensorrt",), {"kind": "cpu"}, "runs on a GPU, but --kind cpu"),
    (("openvino",), {"kind": "gpu"}, "runs on the CPU, but --kind gpu"),
    (("tensorrt:int8",), {}, "needs a QDQ-quantized model"),
    (("tensorrt",), {"precision": "int8"}, "use --ort-accelerator tensorrt:int8"),
    (("tensorrt:int8",), {"precision": "int8", "quantize": "dynamic"}, "needs a QDQ-quantized model"),
    (("tensorrt", "cuda"), {}, "more than one --ort-accelerator for the same device"),
    (("cuda",), {"formats": ("python",)}, "no --format onnx"),
])
def test_accelerators_that_cannot_work_are_refused(items, kwargs, words) -> None:
    with pytest.raises(TritongenError, match=words):
        parse(*items, **kwargs)


def test_tensorrt_accelerator_config_has_precision_caches_and_profiles() -> None:
    spec = encoder_spec()
    requests = parse("tensorrt:fp16", "openvino")
    shapes = spec_profile_shapes(spec, parse_dynamic_ranges(["seq:1:128:512"]), preferred_batch_sizes=(8,))
    assert shapes == {"min": "tokens:1x1,mask:1x1", "opt": "tokens:8x128,mask:8x128",
                      "max": "tokens:16x512,mask:16x512"}
    entries = execution_accelerators(requests, "enc", profile_shapes=shapes)
    proto = parse_config(render_config(ModelConfig(name="enc", spec=spec, accelerators=entries)))
    gpu = proto.optimization.execution_accelerators.gpu_execution_accelerator
    cpu = proto.optimization.execution_accelerators.cpu_execution_accelerator
    assert [a.name for a in gpu] == ["tensorrt"] and [a.name for a in cpu] == ["openvino"]
    params = dict(gpu[0].parameters)
    assert params["precision_mode"] == "FP16" and params["trt_engine_cache_enable"] == "1"
    assert params["trt_engine_cache_path"] == params["trt_timing_cache_path"] == "/models/enc/trt_cache"
    assert params["trt_profile_opt_shapes"] == "tokens:8x128,mask:8x128"
    assert proto.model_warmup  # engines are built at load, not on the first request


def test_profiles_are_left_out_when_an_axis_has_no_range() -> None:
    assert spec_profile_shapes(encoder_spec(), {}) is None
    entries = execution_accelerators(parse("tensorrt"), "enc", cache_dir="/cache/enc")
    params = dict(entries[0].parameters)
    assert params["trt_engine_cache_path"] == "/cache/enc" and params["precision_mode"] == "FP32"
    assert not any(k.startswith("trt_profile") for k in params)


def test_accelerators_only_for_the_onnx_format() -> None:
    entries = execution_accelerators(parse("cuda"), "m")
    with pytest.raises(TritongenError, match="not the python format"):
        render_config(ModelConfig(name="m", spec=encoder_spec(), format="python", accelerators=entries))
