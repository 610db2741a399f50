"""The post-export graph checks: a frozen axis is an error, axes get our names."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from tritongen.errors import TritongenError
from tritongen.export.onnx import check_dynamic_axes, rename_graph_axes
from tritongen.spec import ModelSpec, parse_input_spec


def graph(dims_in, dims_out):
    g = helper.make_graph([helper.make_node("Identity", ["tokens"], ["y"])], "g",
                          [helper.make_tensor_value_info("tokens", TensorProto.INT64, dims_in)],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, dims_out)])
    return helper.make_model(g)


SPEC = ModelSpec(inputs=(parse_input_spec("tokens:seq:int64"),), max_batch_size=8)


def test_generated_symbols_are_renamed_everywhere():
    model = graph(["s77", "s12"], ["s77", "s12"])
    rename_graph_axes(model, SPEC)
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim] == ["batch", "seq"]
    assert [d.dim_param for d in model.graph.output[0].type.tensor_type.shape.dim] == ["batch", "seq"]
    check_dynamic_axes(model, SPEC)


@pytest.mark.parametrize("dims_in, dims_out, fragment", [
    ([1, "seq"], [1, "seq"], "froze axis 'batch' (dim 0) of input 'tokens' to 1"),
    (["batch", 8], ["batch", 8], "froze axis 'seq' (dim 1) of input 'tokens' to 8"),
    (["batch", "seq"], [2, "seq"], "froze the batch axis of output 'y' to 2"),
    (["batch"], ["batch"], "rank 1 in the ONNX graph"),
])
def test_frozen_axes_are_errors(dims_in, dims_out, fragment):
    with pytest.raises(TritongenError) as err:
        check_dynamic_axes(graph(dims_in, dims_out), SPEC)
    assert fragment in err.value.message


def test_an_input_dropped_by_the_exporter_is_named():
    spec = ModelSpec(inputs=(parse_input_spec("tokens:seq:int64"), parse_input_spec("unused:4:fp32")))
    with pytest.raises(TritongenError, match="no input named 'unused'"):
        check_dynamic_axes(graph(["batch", "seq"], ["batch", "seq"]), spec)


def test_renamed_axes_are_what_the_saved_file_holds(tmp_path):
    model = graph(["s77", "s12"], ["s77", "s12"])
    rename_graph_axes(model, SPEC)
    onnx.save(model, str(tmp_path / "m.onnx"))
    again = onnx.load(str(tmp_path / "m.onnx"))
    assert [d.dim_param for d in again.graph.output[0].type.tensor_type.shape.dim] == ["batch", "seq"]
    check_dynamic_axes(again, SPEC)
    # A file whose batch axis was frozen when saved is caught when read back.
    onnx.save(graph([1, "seq"], [1, "seq"]), str(tmp_path / "frozen.onnx"))
    with pytest.raises(TritongenError, match="froze axis 'batch'"):
        check_dynamic_axes(onnx.load(str(tmp_path / "frozen.onnx")), SPEC)
