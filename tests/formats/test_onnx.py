"""The `onnx` format: the served ONNX files linked into the version, and the config checked against the graph."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tritongen.config import ModelConfig, parse_config, render_config
from tritongen.errors import TritongenError
from tritongen.formats import Exported, VersionJob
from tritongen.formats.onnx import FORMAT
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name, parse_input_spec
from tritongen.verify import ParityReport

SPEC = ModelSpec(inputs=(parse_input_spec("x:4:fp32"),), outputs=(TensorSpec("y", dtype_from_name("fp32"), (4,)),),
                 max_batch_size=8)


def identity_model(path: Path) -> Path:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph), str(path))
    return path


def job(tmp_path: Path, precision_report: dict | None = None) -> VersionJob:
    served = identity_model(tmp_path / "scratch" / "model.onnx")
    parity = ParityReport("onnxruntime", 1e-4, 1e-3, ())
    exported = Exported(served, SPEC, None, parity, (served,), SPEC, parity, precision_report)  # type: ignore[arg-type]
    version_dir = tmp_path / "m" / "1"
    version_dir.mkdir(parents=True)
    return VersionJob(None, "m", exported, version_dir, tmp_path / "work", None, print)  # type: ignore[arg-type]


def test_the_served_model_is_linked_into_the_version(tmp_path):
    j = job(tmp_path, precision_report={"precision": "fp16"})
    written = FORMAT.write_version(j)
    assert (j.version_dir / "model.onnx").samefile(j.exported.served_files[0])
    assert written.spec == SPEC and written.manifest == {"precision": {"precision": "fp16"}}
    FORMAT.check_config(parse_config(render_config(ModelConfig("m", SPEC))), j.version_dir, written)


def test_a_config_that_does_not_match_the_graph_is_refused(tmp_path):
    j = job(tmp_path)
    written = FORMAT.write_version(j)
    wrong = ModelSpec(inputs=(parse_input_spec("x:4:int64"),), outputs=SPEC.outputs, max_batch_size=8)
    with pytest.raises(TritongenError, match="input 'x' is TYPE_INT64 in the config but TYPE_FP32 in the graph"):
        FORMAT.check_config(parse_config(render_config(ModelConfig("m", wrong))), j.version_dir, written)


def test_int8_static_needs_calibration_and_onnx_takes_ort_accelerators():
    from tritongen.precision import PrecisionOptions

    assert FORMAT.needs_calibration(PrecisionOptions("int8", quantize="static"))
    assert not FORMAT.needs_calibration(PrecisionOptions("int8", quantize="dynamic"))
    assert not FORMAT.needs_calibration(PrecisionOptions("fp16"))
    assert FORMAT.ort_accelerators and FORMAT.serves_onnx
