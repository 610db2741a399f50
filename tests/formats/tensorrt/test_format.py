"""The `tensorrt` format's registry entry: what it refuses before any work, and how its config looks.

Building a plan needs TensorRT and a GPU (neither exists here): the build through this entry with a mocked TensorRT
is tests/formats/tensorrt/test_step.py::test_build_format_tensorrt_mock_tensorrt_writes_a_plan_model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests import models
from tritongen.config import ModelConfig, parse_config, render_config
from tritongen.errors import TritongenError
from tritongen.formats.tensorrt.format import FORMAT
from tritongen.plan import BuildOptions, check_spec, plan_build
from tritongen.precision import PrecisionOptions
from tritongen.spec import ModelSpec, parse_input_spec


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.save(models.TinyEncoder().state_dict(), tmp_path / "enc.pt")
    return tmp_path / "enc.pt"


def test_without_tensorrt_the_format_is_refused_before_any_work(tmp_path, checkpoint):
    with pytest.raises(TritongenError) as err:
        plan_build(BuildOptions(checkpoint, inputs=("tokens:seq:int64", "mask:seq:int64"), formats=("tensorrt",),
                                repository=tmp_path / "repo"))
    assert "--format tensorrt needs TensorRT and an NVIDIA GPU" in err.value.message
    assert not (tmp_path / "repo").exists()


def test_int8_without_calibration_data_is_refused(tmp_path, checkpoint):
    # Dynamic INT8 needs no calibration for ONNX Runtime, but a TensorRT engine calibrates itself.
    with pytest.raises(TritongenError, match="TensorRT calibrates the engine itself"):
        plan_build(BuildOptions(checkpoint, inputs=("tokens:seq:int64", "mask:seq:int64"), formats=("tensorrt",),
                                precision=PrecisionOptions("int8", quantize="dynamic"), repository=tmp_path / "repo"))


def test_mock_tensorrt_a_dynamic_axis_needs_a_range_before_the_export(tmp_path, checkpoint, monkeypatch):
    from tritongen.formats.tensorrt import builder

    monkeypatch.setattr(builder, "check_tensorrt_available", lambda options: None)
    plan = plan_build(BuildOptions(checkpoint, inputs=("tokens:seq:int64", "mask:seq:int64"), formats=("tensorrt",),
                                   max_batch_size=8, repository=tmp_path / "repo", deploy=False))
    spec = ModelSpec(inputs=plan.inputs, max_batch_size=8)
    with pytest.raises(TritongenError, match="axis 'seq' is dynamic, and a TensorRT engine needs the range"):
        check_spec(plan, spec)


def test_plans_run_on_gpus_only():
    spec = ModelSpec(inputs=(parse_input_spec("x:4:fp32"),), max_batch_size=8)
    with pytest.raises(TritongenError, match="TensorRT plans run only on GPUs"):
        render_config(ModelConfig("m", spec, format="tensorrt", kind="cpu"))
    proto = parse_config(render_config(ModelConfig("m", spec, format="tensorrt")))
    assert proto.platform == "tensorrt_plan" and proto.instance_group[0].kind == proto.instance_group[0].KIND_GPU
    assert FORMAT.needs_calibration(PrecisionOptions("int8", quantize="dynamic"))
