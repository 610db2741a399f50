"""onnxsim on files: a graph with nothing to simplify, one with constants to fold, the exported model kept aside until
the caller's check, and the size above which models are served as exported (external data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritongen.export import simplify as simplify_module
from tritongen.export.simplify import onnx_files, restore_exported, same_graph, simplify_onnx
from tritongen.runners.onnxruntime import OnnxRuntimeRunner
from tritongen.spec import ModelSpec, parse_input_spec

SPEC = ModelSpec(inputs=(parse_input_spec("x:4:fp32"),), outputs=(parse_input_spec("y:4:fp32"),), max_batch_size=8)
WEIGHT = np.arange(16, dtype=np.float32).reshape(4, 4) / 10


def write_model(path: Path, foldable: bool, external: bool = False) -> Path:
    """y = relu(x @ W) (+ (1 + 2) when `foldable`: two constants onnxsim folds into one), with W as an initializer."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"])]
    if foldable:
        nodes += [helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.ones(4, np.float32))),
                  helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.full(4, 2, np.float32))),
                  helper.make_node("Add", ["one", "two"], ["three"]),
                  helper.make_node("Add", ["xw", "three"], ["sum"]),
                  helper.make_node("Relu", ["sum"], ["y"])]
    else:
        nodes.append(helper.make_node("Relu", ["xw"], ["y"]))
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                              [numpy_helper.from_array(WEIGHT, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=external, location=path.name + ".data" if external else None,
                    size_threshold=0)
    return path


def outputs(path: Path) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    with OnnxRuntimeRunner(path) as runner:
        return runner.infer({"x": x})["y"]


def test_a_graph_with_nothing_to_simplify(tmp_path: Path) -> None:
    path = write_model(tmp_path / "export" / "model.onnx", foldable=False)
    expected = outputs(path)
    result = simplify_onnx(path, SPEC, check=False)
    assert result.applied and result.message == "simplified: 2 → 2 nodes (nothing to simplify)"
    assert result.original is not None and result.original.exists()  # kept until the caller's check passed
    assert same_graph(onnx.load(str(path)), onnx.load(str(result.original)))
    assert np.array_equal(outputs(path), expected)


def test_constants_are_folded_and_external_weights_come_back_inline(tmp_path: Path) -> None:
    path = write_model(tmp_path / "export" / "model.onnx", foldable=True, external=True)
    assert [p.name for p in onnx_files(path)] == ["model.onnx", "model.onnx.data"]
    expected = outputs(path)
    result = simplify_onnx(path, SPEC, check=True)
    assert result.applied and result.nodes_after < result.nodes_before == 6 and result.original is None
    assert onnx_files(path) == [path]  # one file: onnxsim wrote the weights inline
    assert np.allclose(outputs(path), expected)
    assert not (tmp_path / "export" / "simplified").exists()


def test_the_exported_model_can_be_put_back(tmp_path: Path) -> None:
    path = write_model(tmp_path / "export" / "model.onnx", foldable=True, external=True)
    exported = {p.name: p.read_bytes() for p in onnx_files(path)}
    result = simplify_onnx(path, SPEC, check=False)
    assert result.original is not None and len(onnx.load(str(path)).graph.node) < 6
    restore_exported(result, path)
    assert {p.name: p.read_bytes() for p in onnx_files(path)} == exported  # byte for byte, data file included
    assert not result.original.parent.exists()


def test_models_above_the_size_limit_are_served_as_exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_model(tmp_path / "export" / "model.onnx", foldable=True, external=True)
    monkeypatch.setattr(simplify_module, "EXTERNAL_DATA_THRESHOLD", 10)  # the 64-byte weight is "large" here
    before = path.read_bytes()
    result = simplify_onnx(path, SPEC)
    assert not result.applied and result.message.startswith("not simplified: more than 0 MB of weights")
    assert path.read_bytes() == before and len(onnx_files(path)) == 2
