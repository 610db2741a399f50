"""config.pbtxt rendering, Triton-schema validation and the cross-check against the ONNX graph."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from tritongen.config import ModelConfig, check_config_against_onnx, parse_config, render_config
from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name, parse_input_spec


def encoder_spec(max_batch_size: int = 16) -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("tokens:seq:int64"), parse_input_spec("mask:seq:int64")),
                     outputs=(TensorSpec("hidden", dtype_from_name("fp32"), ("seq", 16)),),
                     max_batch_size=max_batch_size)


def write_graph(path, batch_dim="batch", token_type=TensorProto.INT64, extra_output=False):
    def vi(name, elem, dims):
        return helper.make_tensor_value_info(name, elem, dims)

    outputs = [vi("hidden", TensorProto.FLOAT, [batch_dim, "seq", 16])]
    if extra_output:
        outputs.append(vi("attn", TensorProto.FLOAT, [batch_dim, "seq", "seq"]))
    nodes = [helper.make_node("Cast", ["tokens"], ["t"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["t", "axes"], ["u"]),
             helper.make_node("Expand", ["u", "shape"], ["hidden"])]
    if extra_output:
        nodes.append(helper.make_node("Identity", ["hidden"], ["attn"]))
    graph = helper.make_graph(
        nodes, "g",
        [vi("tokens", token_type, [batch_dim, "seq"]), vi("mask", TensorProto.INT64, [batch_dim, "seq"])],
        outputs,
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [2]),
                     helper.make_tensor("shape", TensorProto.INT64, [3], [1, 1, 16])])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_rendered_config_parses_with_tritons_schema():
    proto = parse_config(render_config(ModelConfig("enc", encoder_spec(), preferred_batch_sizes=(4, 8),
                                                   instance_count=2, kind="cpu", max_queue_delay_us=250)))
    assert proto.name == "enc" and proto.platform == "onnxruntime_onnx" and proto.max_batch_size == 16
    assert [list(i.dims) for i in proto.input] == [[-1], [-1]]
    assert list(proto.dynamic_batching.preferred_batch_size) == [4, 8]
    assert proto.dynamic_batching.max_queue_delay_microseconds == 250
    assert proto.instance_group[0].count == 2 and proto.instance_group[0].kind == proto.instance_group[0].KIND_CPU
    # Warmup uses concrete dims and zeros for integer inputs (random ids could overflow an embedding).
    warm = proto.model_warmup[0]
    assert warm.batch_size == 1 and list(warm.inputs["tokens"].dims) == [8] and warm.inputs["tokens"].zero_data
    assert proto.version_policy.HasField("latest")


def test_non_batching_model_writes_zero_explicitly_and_no_batcher():
    text = render_config(ModelConfig("enc", encoder_spec(0)))
    assert "max_batch_size: 0" in text
    proto = parse_config(text)
    assert not proto.HasField("dynamic_batching") and proto.model_warmup[0].batch_size == 0


def test_python_format_uses_the_python_backend():
    proto = parse_config(render_config(ModelConfig("enc", encoder_spec(), format="python")))
    assert proto.backend == "python" and proto.platform == ""


def test_schema_errors_name_the_offending_line():
    text = render_config(ModelConfig("enc", encoder_spec())).replace("max_queue_delay_microseconds",
                                                                     "max_queue_delay_us")
    with pytest.raises(TritongenError) as err:
        parse_config(text)
    assert "max_queue_delay_us" in err.value.message and "at line" in err.value.message


def test_intent_errors():
    with pytest.raises(TritongenError, match="outside 1..max batch size 16"):
        render_config(ModelConfig("enc", encoder_spec(), preferred_batch_sizes=(32,)))
    with pytest.raises(TritongenError, match="needs batching"):
        render_config(ModelConfig("enc", encoder_spec(0), preferred_batch_sizes=(1,)))


def test_cross_check_accepts_a_matching_graph(tmp_path):
    proto = parse_config(render_config(ModelConfig("enc", encoder_spec())))
    check_config_against_onnx(proto, write_graph(tmp_path / "m.onnx"))


@pytest.mark.parametrize("graph_kwargs, fragment", [
    ({"batch_dim": 1}, "fixed first axis (1)"),
    ({"token_type": TensorProto.INT32}, "TYPE_INT64 in the config but TYPE_INT32 in the graph"),
    ({"extra_output": True}, "graph outputs attn are missing from the config"),
])
def test_cross_check_catches_common_load_failures(tmp_path, graph_kwargs, fragment):
    proto = parse_config(render_config(ModelConfig("enc", encoder_spec())))
    with pytest.raises(TritongenError) as err:
        check_config_against_onnx(proto, write_graph(tmp_path / "m.onnx", **graph_kwargs))
    assert fragment in err.value.message + (err.value.details or "")


def test_cross_check_catches_wrong_rank_and_names(tmp_path):
    proto = parse_config(render_config(ModelConfig("enc", encoder_spec())))
    proto.input[0].dims.append(3)
    proto.output[0].name = "last_hidden"
    with pytest.raises(TritongenError) as err:
        check_config_against_onnx(proto, write_graph(tmp_path / "m.onnx"))
    text = err.value.message + (err.value.details or "")
    assert "input 'tokens' has 2 dims in the config but 1 in the graph" in text
    assert "output 'last_hidden' is in the config but not in the ONNX graph" in text


INJECTED = 'evil\nparameters { key: "injected" value: { string_value: "yes" } }\n# '


def test_a_file_name_with_a_newline_cannot_add_a_field():
    text = render_config(ModelConfig("enc", encoder_spec(), source=f"{INJECTED}.pt"))
    proto = parse_config(text)
    assert len(proto.parameters) == 0
    first = text.splitlines()[0]
    assert first.startswith("# Generated by tritongen") and "injected" in first  # still there, on its one line
    assert sum("injected" in line for line in text.splitlines()) == 1


def test_names_and_parameters_are_escaped_everywhere_they_enter_the_config():
    from tritongen.config import ExecutionAccelerator

    spec = ModelSpec(inputs=(TensorSpec('to"k\nens', dtype_from_name("int64"), ("s\nq",)),),
                     outputs=(TensorSpec(INJECTED, dtype_from_name("fp32"), (4,)),), max_batch_size=4)
    accelerator = ExecutionAccelerator("tensorrt", "gpu", (("trt_engine_cache_path", f"/models/{INJECTED}"),))
    proto = parse_config(render_config(ModelConfig("enc", spec, parameters={"k\n": INJECTED},
                                                   accelerators=(accelerator,))))
    assert proto.input[0].name == 'to"k\nens' and proto.output[0].name == INJECTED
    assert set(proto.parameters) == {"k\n"} and proto.parameters["k\n"].string_value == INJECTED
    (gpu,) = proto.optimization.execution_accelerators.gpu_execution_accelerator
    assert gpu.parameters["trt_engine_cache_path"] == f"/models/{INJECTED}"
    assert list(proto.model_warmup[0].inputs) == ['to"k\nens']


def test_a_queue_policy_is_written_only_when_it_bounds_something_and_brings_a_second_instance():
    from tritongen.config import QueuePolicy, batches_prefetched, instances_for

    assert not QueuePolicy().active and not QueuePolicy(timeout_action="delay").active
    assert all(QueuePolicy(**{k: v}).active for k, v in
               (("max_queue_size", 8), ("timeout_us", 1000), ("allow_timeout_override", True)))
    assert batches_prefetched(QueuePolicy(), 0)
    assert not batches_prefetched(QueuePolicy(max_queue_size=8), 0) and not batches_prefetched(QueuePolicy(), 2)
    assert instances_for(None, QueuePolicy(), 0) == (1, None)
    count, note = instances_for(None, QueuePolicy(max_queue_size=8), 0)
    assert count == 2 and note is not None and "pass --instances 1 to keep one" in note and "500 ms" in note
    count, note = instances_for(1, QueuePolicy(), 3)  # asked for: kept, with the warning
    assert count == 1 and note is not None and "use --instances 2 or more" in note
    assert instances_for(3, QueuePolicy(max_queue_size=8), 0) == (3, None)
