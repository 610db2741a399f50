"""End-to-end `tritongen build` on real small models: repository, config, dynamic axes, parity, errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests import models
from tests.conftest import CNN_ARGS, save_checkpoint
from tritongen.config import read_config
from tritongen.repository import load_reference, read_manifest

pytestmark = pytest.mark.slow


def graph_dims(path):
    model = onnx.load(str(path), load_external_data=False)
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}


def run_onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_cnn_state_dict_builds_a_verified_repository(tmp_path, cnn_checkpoint, cli):
    repo = tmp_path / "repo"
    result = cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", repo, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["model"] == "cnn" and report["version"] == 1
    artifact = report["artifacts"][0]
    assert artifact["format"] == "onnx" and artifact["parity"]["passed"]
    assert artifact["parity"]["outputs"]["output"]["max_abs_err"] < 1e-4
    onnx_path = repo / "cnn" / "1" / "model.onnx"
    assert artifact["path"] == str(onnx_path) and onnx_path.exists()
    # The batch axis is symbolic and the file really runs at batch sizes it was not exported with.
    assert graph_dims(onnx_path)["image"] == ["batch", 3, 32, 32]
    for batch in (1, 5, 32):
        (out,) = run_onnx(onnx_path, {"image": np.random.rand(batch, 3, 32, 32).astype(np.float32)})
        assert out.shape == (batch, 10)
    config = read_config(repo / "cnn" / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 32
    assert list(config.input[0].dims) == [3, 32, 32] and config.output[0].name == "output"
    assert config.HasField("dynamic_batching") and config.instance_group[0].count == 1
    assert config.model_warmup[0].batch_size == 1
    manifest = read_manifest(repo / "cnn" / "1")
    assert manifest["checkpoint"]["kind"] == "torch.save" and len(manifest["checkpoint"]["sha256"]) == 64
    assert manifest["export"]["exporter"] == "dynamo" and manifest["export"]["opset"] >= 17
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime", "onnxsim", "tritongen"}
    assert manifest["command"].startswith("tritongen build")
    inputs, outputs = load_reference(repo / "cnn" / "1")
    assert inputs["image"].shape == (4, 3, 32, 32) and outputs["output"].shape == (4, 10)
    # Nothing but the repository was written: no staging directory left behind.
    assert sorted(p.name for p in repo.iterdir()) == ["cnn"]


def test_encoder_with_tokens_mask_and_dynamic_sequence(tmp_path, cli):
    ckpt = save_checkpoint(models.TinyEncoder(), tmp_path / "encoder.pt")
    repo = tmp_path / "repo"
    result = cli("build", ckpt, "--model-class", "tests.models:TinyEncoder", "--input", "tokens:seq:int64",
                 "--input", "mask:seq:int64", "--output", "hidden", "--output", "pooled", "--repository", repo,
                 "--no-deploy", "--json")
    assert result.exit_code == 0, result.stderr
    onnx_path = repo / "encoder" / "1" / "model.onnx"
    dims = graph_dims(onnx_path)
    assert dims["tokens"] == ["batch", "seq"] and dims["mask"] == ["batch", "seq"]
    config = read_config(repo / "encoder" / "config.pbtxt")
    assert [i.name for i in config.input] == ["tokens", "mask"] and list(config.input[0].dims) == [-1]
    assert [o.name for o in config.output] == ["hidden", "pooled"] and list(config.output[0].dims) == [-1, 16]
    # Token ids were drawn below the embedding size (50): a value outside it would have failed parity.
    inputs, _ = load_reference(repo / "encoder" / "1")
    assert inputs["tokens"].max() < 50
    # Batch 3 and sequence 37 (neither used at export) run through the file.
    hidden, pooled = run_onnx(onnx_path, {"tokens": np.zeros((3, 37), np.int64), "mask": np.ones((3, 37), np.int64)})
    assert hidden.shape == (3, 37, 16) and pooled.shape == (3, 16)


@pytest.mark.parametrize("cls, args, expected_inputs, expected_outputs", [
    (models.TwoInTwoOut, ("--input", "x:4:fp32", "--input", "ids:2:int64"),
     {"x": ["batch", 4], "ids": ["batch", 2]}, ["output_0", "output_1"]),
    (models.DictOut, ("--input", "features:6:fp32"), {"features": ["batch", 6]}, ["logits", "probs"]),
    (models.FullyConv, ("--input", "image:3xHxW:fp32", "--axis-length", "H=16,24", "--axis-length", "W=16,32"),
     {"image": ["batch", 3, "H", "W"]}, ["output"]),
    (models.SmallGRU, ("--input", "seq:Tx5:fp32"), {"seq": ["batch", "T", 5]}, ["output"]),
])
def test_model_shapes(tmp_path, cli, cls, args, expected_inputs, expected_outputs):
    ckpt = save_checkpoint(cls(), tmp_path / "m.pt")
    repo = tmp_path / "repo"
    result = cli("build", ckpt, "--model-class", f"tests.models:{cls.__name__}", *args, "--repository", repo,
                 "--no-deploy", "--json")
    assert result.exit_code == 0, result.stderr
    assert graph_dims(repo / "m" / "1" / "model.onnx") == expected_inputs
    config = read_config(repo / "m" / "config.pbtxt")
    assert [o.name for o in config.output] == expected_outputs
    assert all(p["passed"] for p in result.json()["artifacts"][0]["parity"]["outputs"].values())
    if cls is models.TwoInTwoOut:
        from tritonclient.grpc import model_config_pb2

        assert [model_config_pb2.DataType.Name(i.data_type) for i in config.input] == ["TYPE_FP32", "TYPE_INT64"]


@pytest.mark.parametrize("kind", ["torchscript", "full", "wrapped", "dataparallel"])
def test_checkpoint_kinds(tmp_path, cli, kind):
    ckpt = save_checkpoint(models.SmallCNN(), tmp_path / "m.pt", kind)
    extra = {"torchscript": (), "full": ("--trust-checkpoint",)}.get(kind, ("--model-class", "tests.models:SmallCNN"))
    result = cli("build", ckpt, *extra, "--input", "image:3x32x32:fp32", "--repository", tmp_path / "repo",
                 "--no-deploy", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["exporter"].startswith("legacy") if kind == "torchscript" else report["exporter"] == "dynamo"
    assert graph_dims(tmp_path / "repo" / "m" / "1" / "model.onnx")["image"][0] == "batch"


def test_pt2_needs_no_input_and_gets_readable_axis_names(tmp_path, cli):
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=64)
    example = (torch.randint(0, 50, (2, 8)), torch.ones(2, 8, dtype=torch.int64))
    ckpt = save_checkpoint(models.TinyEncoder(), tmp_path / "enc.pt2", "pt2", example=example,
                           dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}))
    result = cli("build", ckpt, "--repository", tmp_path / "repo", "--no-deploy", "--json")
    assert result.exit_code == 0, result.stderr
    dims = graph_dims(tmp_path / "repo" / "enc" / "1" / "model.onnx")
    assert dims == {"tokens": ["batch", "tokens_dim1"], "mask": ["batch", "tokens_dim1"]}
    assert not any(str(d).startswith("s") and str(d)[1:].isdigit() for d in dims["tokens"])


def test_pt2_with_static_batch_is_refused(tmp_path, cli):
    ckpt = save_checkpoint(models.SmallCNN(), tmp_path / "cnn.pt2", "pt2", example=(torch.randn(2, 3, 32, 32),))
    result = cli("build", ckpt, "--repository", tmp_path / "repo", "--no-deploy")
    assert result.exit_code == 2 and "fixed batch size" in result.stderr and "--max-batch-size 0" in result.stderr
    result = cli("build", ckpt, "--repository", tmp_path / "repo", "--no-deploy", "--max-batch-size", "0", "--json")
    assert result.exit_code == 0, result.stderr
    config = read_config(tmp_path / "repo" / "cnn" / "config.pbtxt")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [2, 3, 32, 32]
    assert "max_batch_size: 0" in (tmp_path / "repo" / "cnn" / "config.pbtxt").read_text()


def test_versions_are_never_overwritten_without_force(tmp_path, cli, cnn_checkpoint):
    repo = tmp_path / "repo"
    assert cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", repo).exit_code == 0
    first = (repo / "cnn" / "1" / "model.onnx").read_bytes()
    assert cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", repo, "--instances", "2").exit_code == 0
    assert (repo / "cnn" / "2" / "model.onnx").exists() and (repo / "cnn" / "1" / "model.onnx").read_bytes() == first
    # The config now describes version 2; version 1 keeps its own copy.
    assert read_config(repo / "cnn" / "config.pbtxt").instance_group[0].count == 2
    assert read_config(repo / "cnn" / "1" / "tritongen" / "config.pbtxt").instance_group[0].count == 1
    refused = cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", repo, "--version", "1")
    assert refused.exit_code == 2 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert (repo / "cnn" / "1" / "model.onnx").read_bytes() == first
    # A hand edit of the live config is never lost: the next build keeps it beside the new config and says so.
    config_path = repo / "cnn" / "config.pbtxt"
    config_path.write_text(config_path.read_text().replace("count: 2", "count: 3"))
    edited = cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", repo, "--json")
    assert edited.exit_code == 0 and any("kept them as" in w for w in edited.json()["warnings"])
    (backup,) = (repo / "cnn").glob("config.pbtxt.bak-*")
    assert "count: 3" in backup.read_text() and "count: 1" in config_path.read_text()
    backup.unlink()
    forced = cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", repo, "--version", "1", "--force", "--json")
    assert forced.exit_code == 0 and forced.json()["version"] == 1
    assert sorted(p.name for p in (repo / "cnn").iterdir()) == ["1", "2", "3", "config.pbtxt"]


def test_both_formats(tmp_path, cli, cnn_checkpoint):
    result = cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", tmp_path / "repo", "--format", "onnx",
                 "--format", "python", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert [(a["format"], a["model"]) for a in report["artifacts"]] == [("onnx", "cnn"), ("python", "cnn_python")]
    config = read_config(tmp_path / "repo" / "cnn_python" / "config.pbtxt")
    assert config.backend == "python" and config.max_batch_size == 32
    assert (tmp_path / "repo" / "cnn_python" / "1" / "model.py").exists()


def test_data_dependent_control_flow_fails_parity(tmp_path, cli):
    ckpt = save_checkpoint(models.DataDependent(), tmp_path / "dd.pt")
    result = cli("build", ckpt, "--model-class", "tests.models:DataDependent", "--input", "x:4:fp32",
                 "--repository", tmp_path / "repo")
    assert result.exit_code == 1
    assert "does not match PyTorch" in result.stderr and "max abs err" in result.stderr
    assert "control flow" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "repo" / "dd").exists()


def test_unsupported_operator_is_named(tmp_path, cli):
    ckpt = save_checkpoint(models.UnsupportedOp(), tmp_path / "op.pt")
    result = cli("build", ckpt, "--model-class", "tests.models:UnsupportedOp", "--input", "x:3x3:fp32",
                 "--repository", tmp_path / "repo")
    assert result.exit_code == 2 and "linalg_eig" in result.stderr and "not supported" in result.stderr


def test_batch_specialised_model_is_refused(tmp_path, cli):
    ckpt = save_checkpoint(models.BatchFrozen(), tmp_path / "bf.pt")
    result = cli("build", ckpt, "--model-class", "tests.models:BatchFrozen", "--input", "x:8:fp32",
                 "--repository", tmp_path / "repo")
    assert result.exit_code == 2 and "fails at another batch size" in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (("--input", "image:3x32x32"), "malformed --input"),
    (("--input", "image:3x32x32:fp32", "--input", "extra:3:fp32"),
     "--input 'extra' is not an input of the model (forward() takes image)"),
    ((), "no --input given"),
    (("--input", "image:3x32x32:int64"), "fails on example inputs"),
    (("--input", "image:3x32x32:fp32", "--name", "bad/name"), "invalid model name"),
    (("--input", "image:3x32x32:fp32", "--preferred-batch-size", "64"), "outside 1..max batch size 32"),
    (("--input", "image:3x32x32:fp32", "--output", "a", "--output", "b"), "2 --output name(s)"),
    (("--input", "image:3x32x32:fp32", "--axis-length", "seq=4,8"), "no input has"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, cli, cnn_checkpoint, args, fragment):
    repo = tmp_path / "repo"
    result = cli("build", cnn_checkpoint, "--model-class", "tests.models:SmallCNN", *args, "--repository", repo,
                 "--no-deploy")
    assert result.exit_code == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0]  # one line: the problem and the fix
    assert not repo.exists() or not list(repo.iterdir())  # nothing written, no staging left behind


def test_json_error_output(tmp_path, cli):
    result = cli("build", tmp_path / "missing.pt", "--json")
    assert result.exit_code == 2
    assert result.json() == {"ok": False, "error": f"checkpoint '{tmp_path / 'missing.pt'}' does not exist",
                             "hint": "check the path", "details": None}


def test_a_model_above_the_size_limit_is_served_with_external_data(tmp_path, cli, cnn_checkpoint, monkeypatch):
    """Above EXTERNAL_DATA_THRESHOLD (256 MB; here lowered below the CNN's weights) the weights go to model.onnx.data,
    onnxsim is not run, and both formats serve the pair; validate passes on the embedded server (its python runner
    and the staged copy take the data file along)."""
    from tritongen.export import onnx as onnx_export
    from tritongen.export import simplify

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 1000)
    monkeypatch.setattr(simplify, "EXTERNAL_DATA_THRESHOLD", 1000)
    repo = tmp_path / "repo"
    result = cli("build", cnn_checkpoint, *CNN_ARGS, "--format", "onnx", "--format", "python", "--repository", repo,
                 "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["simplification"].startswith("not simplified: more than 0 MB of weights")
    for model, extra in (("cnn", []), ("cnn_python", ["model.py"])):
        version = repo / model / "1"
        assert sorted(p.name for p in version.iterdir() if p.is_file()) == sorted(["model.onnx", "model.onnx.data",
                                                                                    *extra])
        assert {"model.onnx", "model.onnx.data"} <= set(read_manifest(version)["artifacts"])
    assert all(a["parity"]["passed"] for a in report["artifacts"])
    graph = onnx.load(str(repo / "cnn" / "1" / "model.onnx"), load_external_data=False)
    largest = max(graph.graph.initializer, key=lambda t: np.prod(t.dims))
    assert largest.data_location == onnx.TensorProto.EXTERNAL  # the weights are in the .data file


@pytest.mark.server
def test_a_model_with_external_data_passes_validate(tmp_path, cli, cnn_checkpoint, monkeypatch):
    from tritongen.export import onnx as onnx_export
    from tritongen.export import simplify

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 1000)
    monkeypatch.setattr(simplify, "EXTERNAL_DATA_THRESHOLD", 1000)
    repo = tmp_path / "repo"
    assert cli("build", cnn_checkpoint, *CNN_ARGS, "--format", "python", "--repository", repo).exit_code == 0
    result = cli("validate", repo, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.json()["passed"]


def test_a_simplified_model_that_fails_parity_gives_way_to_the_export_mock_simplifier(tmp_path, cli, cnn_checkpoint,
                                                                                       monkeypatch):
    """onnxsim has never been seen to change outputs here, so a stand-in does: the build must serve the exported
    model, which passes, and say why."""
    import shutil

    from tritongen import build
    from tritongen.export.simplify import EXPORTED_DIR, Simplification, onnx_files

    def simplify_wrongly(path, spec, *, check):
        aside = path.parent / EXPORTED_DIR
        aside.mkdir()
        for f in onnx_files(path):
            shutil.copy2(f, aside / f.name)
        model = onnx.load(str(path))
        weight = next(t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
        weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight) + 1.0, weight.name))
        for f in onnx_files(path):
            f.unlink()
        onnx.save_model(model, str(path))
        return Simplification(True, "simplified (stand-in)", 1, 1, aside / path.name)

    monkeypatch.setattr(build, "simplify_onnx", simplify_wrongly)
    repo = tmp_path / "repo"
    result = cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", repo, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["simplification"].startswith("simplification changed outputs (output: max abs err")
    assert report["simplification"].endswith("; kept the exported model")
    assert any(w.startswith("simplification changed outputs") for w in report["warnings"])
    assert report["artifacts"][0]["parity"]["passed"]
    assert read_manifest(repo / "cnn" / "1")["export"]["simplification"] == report["simplification"]
