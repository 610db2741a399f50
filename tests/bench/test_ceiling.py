"""The in-process ONNX Runtime ceiling: batch sizes tried, parallel sessions, threads by the served model's rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritongen.bench import batch_sizes_to_try, instance_count, intra_op_threads, onnx_ceiling
from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec, parse_input_spec


def relu_model(path: Path) -> Path:
    """x [batch, 4] -> relu: a real ONNX file, written without exporting anything."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_batch_sizes_are_powers_of_two_and_the_max() -> None:
    assert batch_sizes_to_try(32) == [1, 2, 4, 8, 16, 32]
    assert batch_sizes_to_try(12) == [1, 2, 4, 8, 12]
    assert batch_sizes_to_try(0) == [1]


def test_instances_and_threads_as_the_served_model_counts_them() -> None:
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig(name="m")
    assert instance_count(config) == 1
    config.instance_group.add(count=2)
    config.instance_group.add(count=0)  # Triton counts a group without a count as one instance
    assert instance_count(config) == 3
    assert intra_op_threads(config, cpus=6) == 2
    config.parameters["intra_op_num_threads"].string_value = "1"
    assert intra_op_threads(config, cpus=6) == 1


def test_ceiling_runs_every_batch_size_with_parallel_sessions(tmp_path: Path) -> None:
    spec = ModelSpec((parse_input_spec("x:4:fp32"),), (parse_input_spec("y:4:fp32"),), 4)
    ceiling = onnx_ceiling(relu_model(tmp_path / "m.onnx"), spec, {}, sessions=2, intra_op_threads=1,
                           seconds_per_size=0.05)
    assert ceiling.sessions == 2 and ceiling.intra_op_threads == 1
    assert set(ceiling.by_batch) == {1, 2, 4} and set(ceiling.latency_ms) == {1, 2, 4}
    assert all(v > 0 for v in ceiling.by_batch.values())
    assert ceiling.throughput == max(ceiling.by_batch.values()) == ceiling.by_batch[ceiling.batch_size]


def test_a_file_onnx_runtime_cannot_load_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"not a model")
    spec = ModelSpec((parse_input_spec("x:4:fp32"),), (), 4)
    with pytest.raises(TritongenError, match="ONNX Runtime cannot load") as err:
        onnx_ceiling(tmp_path / "m.onnx", spec, {}, seconds_per_size=0.05)
    assert "--no-ceiling" in err.value.hint
