"""The ONNX Runtime runner: sessions from the one builder, and the same code rendered into model.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from tritongen.formats.python import python_model_from_onnx
from tritongen.runners import sessions
from tritongen.runners.onnxruntime import OnnxRuntimeRunner, served_session_code


def doubling_model(path: Path) -> Path:
    """y = x + x, batch axis dynamic: the smallest real ONNX model."""
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_runner_runs_the_model_with_the_served_session_settings(tmp_path: Path) -> None:
    path = doubling_model(tmp_path / "model.onnx")
    with OnnxRuntimeRunner(path) as runner:
        out = runner.infer({"x": np.ones((3, 4), np.float32)})
        options = runner.session.get_session_options()
    assert np.array_equal(out["y"], np.full((3, 4), 2.0, np.float32))
    assert options.inter_op_num_threads == 1
    assert options.intra_op_num_threads == sessions.intra_op_threads({}, instances=1) == sessions.usable_cpus()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with OnnxRuntimeRunner(path, intra_op_threads=1, optimization="none") as runner:
        options = runner.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert str(options.graph_optimization_level).endswith("ORT_DISABLE_ALL")


def test_model_py_carries_the_session_code_verbatim() -> None:
    text = python_model_from_onnx()
    code = served_session_code()
    assert code in text and text.count("def intra_op_threads(") == 1 and text.count("def cpu_session(") == 1
    assert "import tritongen" not in code and "from tritongen" not in code  # runs where tritongen is not installed
    assert "self.session = cpu_session(path, threads_of(config))" in text
    namespace: dict[str, object] = {}
    exec(compile(code, "sessions", "exec"), namespace)  # our own code, as model.py runs it
    assert namespace["intra_op_threads"]({"intra_op_thread_count": "3"}, 2) == 3
