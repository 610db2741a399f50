"""Configs from engine metadata, and configs that disagree with the engine."""

from __future__ import annotations

import pytest

from tests.formats.tensorrt.shared import encoder_spec, engine_meta
from tritongen.config import ModelConfig, parse_config, render_config
from tritongen.errors import TritongenError
from tritongen.formats.tensorrt.engine import check_config_against_engine, spec_from_engine, tensor_dict


def test_tensorrt_config_takes_dtypes_and_max_batch_from_the_engine() -> None:
    spec = spec_from_engine(engine_meta(max_batch=4), encoder_spec(max_batch_size=32))
    assert [t.dtype.short for t in spec.inputs] == ["int32", "int32"] and spec.max_batch_size == 4
    proto = parse_config(render_config(ModelConfig(name="enc", spec=spec, format="tensorrt")))
    assert proto.platform == "tensorrt_plan" and proto.max_batch_size == 4
    from tritonclient.grpc import model_config_pb2

    assert proto.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert model_config_pb2.DataType.Name(proto.input[0].data_type) == "TYPE_INT32"
    check_config_against_engine(proto, engine_meta(max_batch=4))
    int64 = spec_from_engine(engine_meta("INT64"), encoder_spec())  # TensorRT 10 keeps INT64 inputs
    assert [t.dtype.short for t in int64.inputs] == ["int64", "int64"]


def test_config_that_disagrees_with_the_engine_is_refused() -> None:
    spec = spec_from_engine(engine_meta(), encoder_spec())
    proto = parse_config(render_config(ModelConfig(name="enc", spec=encoder_spec(), format="tensorrt")))
    with pytest.raises(TritongenError, match="TYPE_INT64 in the config but TYPE_INT32 in the engine"):
        check_config_against_engine(proto, engine_meta())
    proto = parse_config(render_config(ModelConfig(name="enc", spec=spec, format="tensorrt")))
    proto.max_batch_size = 16
    with pytest.raises(TritongenError, match="exceeds the profile's max batch 8"):
        check_config_against_engine(proto, engine_meta())


def test_engine_tensors_as_the_manifest_records_them() -> None:
    meta = engine_meta()
    assert tensor_dict(meta.inputs[0]) == {"name": "tokens", "dtype": "int32", "shape": [-1, -1],
                                           "profile": {"min": [1, 1], "opt": [4, 64], "max": [8, 256]}}
    assert "profile" not in tensor_dict(meta.outputs[0])
