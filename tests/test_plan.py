"""BuildOptions resolved into a BuildPlan: every option is checked before anything is loaded, exported or written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests import models
from tritongen.errors import TritongenError
from tritongen.plan import BuildOptions, plan_build


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.pt"
    torch.save(models.SmallCNN().state_dict(), path)
    return path


def options(checkpoint: Path, repository: Path, **kwargs) -> BuildOptions:
    return BuildOptions(checkpoint, **{"model_class": "tests.models:SmallCNN", "inputs": ("image:3x32x32:fp32",),
                                       "repository": repository, "deploy": False, **kwargs})


def test_the_plan_holds_resolved_values(tmp_path, checkpoint):
    from tritongen.formats.tensorrt.builder import TensorRTOptions
    from tritongen.formats.tensorrt.profiles import DynamicRange

    plan = plan_build(options(checkpoint, tmp_path / "repo", formats=("ONNX", "python", "onnx"), atol=1e-3,
                              tensorrt=TensorRTOptions(dynamic_ranges=("batch:1:4:32",)), command="tritongen build x"))
    assert [(t.format.name, t.model, t.version) for t in plan.targets] == [("onnx", "cnn", 1),
                                                                           ("python", "cnn_python", 1)]
    assert plan.tolerance == (1e-3, 1e-3) and plan.atol == 1e-3 and plan.rtol is None
    assert plan.dynamic_ranges == {"batch": DynamicRange("batch", 1, 4, 32)}
    assert plan.inputs[0].shape == (3, 32, 32) and plan.spec is None and plan.command == "tritongen build x"
    assert plan.checkpoint == checkpoint and plan.load.model_class == "tests.models:SmallCNN"
    with pytest.raises(AttributeError):
        plan.name = "other"  # frozen


@pytest.mark.parametrize("kwargs, fragment", [
    ({"opset": 5}, "--opset 5 is outside what the ONNX exporter writes (18 to"),
    ({"opset": 99}, "--opset 99 is outside what the ONNX exporter writes"),
    ({"name": ""}, "invalid model name ''"),
    ({"atol": -1.0}, "--atol -1.0 is not a tolerance"),
    ({"rtol": float("nan")}, "--rtol nan is not a tolerance"),
    ({"atol": float("inf")}, "--atol inf is not a tolerance"),
    ({"outputs": ("logits", "logits")}, "output name 'logits' is given twice"),
    ({"axis_lengths": ("seq=4,8", "seq=2,3")}, "--axis-length gives axis 'seq' twice"),
    ({"axis_lengths": ("seq=4,8",)}, "--axis-length names axis 'seq', which no input has"),
    ({"model_kwargs": "{not json"}, "--model-kwargs is not valid JSON"),
    ({"formats": ("onnx", "coreml")}, "unknown --format 'coreml'"),
    ({"max_batch_size": 32, "inputs": ("image:3x100000000000:fp32",)}, "the example inputs would take"),
    ({"inputs": ("tokens:seq:int64:9-0",)}, "the value range 9-0 is empty"),
    ({"kind": "cpu", "formats": ("tensorrt",)}, "TensorRT plans run only on GPUs"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, checkpoint, kwargs, fragment):
    repository = tmp_path / "repo"
    with pytest.raises(TritongenError) as err:
        plan_build(options(checkpoint, repository, **kwargs))
    assert fragment in err.value.message and err.value.hint
    assert not repository.exists()  # nothing written


def test_a_torchscript_checkpoint_takes_the_legacy_exporters_opsets(tmp_path):
    scripted = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.script(models.SmallCNN()), str(scripted))
    plan_build(BuildOptions(scripted, inputs=("image:3x32x32:fp32",), opset=17, repository=tmp_path / "r"))
    with pytest.raises(TritongenError, match="legacy exporter .* writes \\(7 to 20\\)"):
        plan_build(BuildOptions(scripted, inputs=("image:3x32x32:fp32",), opset=21, repository=tmp_path / "r"))


@pytest.mark.parametrize("inside", ["cnn", "cnn/1", "cnn/1/deeper"])
def test_a_repository_inside_a_model_or_version_folder_is_refused(tmp_path, checkpoint, inside):
    (tmp_path / "repo" / "cnn" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "cnn" / "config.pbtxt").write_text('name: "cnn"')
    with pytest.raises(TritongenError) as err:
        plan_build(options(checkpoint, tmp_path / "repo" / inside))
    assert "is inside the folder of model 'cnn'" in err.value.message and str(tmp_path / "repo") in err.value.hint
    assert sorted(p.name for p in (tmp_path / "repo" / "cnn").iterdir()) == ["1", "config.pbtxt"]
    plan_build(options(checkpoint, tmp_path / "repo"))  # the repository itself is fine


def test_example_inputs_are_int8s_calibration_data_unless_told_otherwise(tmp_path, checkpoint):
    import numpy as np

    from tritongen.precision import PrecisionOptions

    examples = tmp_path / "examples.npz"
    np.savez(examples, image=np.zeros((2, 3, 32, 32), np.float32))
    plan = plan_build(options(checkpoint, tmp_path / "repo", example_inputs=examples,
                              precision=PrecisionOptions(precision="int8")))
    assert plan.example_inputs == examples and plan.precision.calibration_data == examples
    other = tmp_path / "calibration.npz"
    np.savez(other, image=np.zeros((2, 3, 32, 32), np.float32))
    plan = plan_build(options(checkpoint, tmp_path / "repo", example_inputs=examples,
                              precision=PrecisionOptions(precision="int8", calibration_data=other)))
    assert plan.precision.calibration_data == other
    with pytest.raises(TritongenError, match="--example-inputs .* does not exist"):
        plan_build(options(checkpoint, tmp_path / "repo", example_inputs=tmp_path / "missing.npz"))
