"""A model folder read once: config parsed with Triton's schema, versions, manifest, reference, artifact, spec."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tritongen.config
from tritongen.errors import TritongenError
from tritongen.repository import model_dir as model_dir_module
from tritongen.repository import model_dirs, read_model_dir, save_reference, write_manifest

CONFIG = """name: "enc"
platform: "onnxruntime_onnx"
max_batch_size: 8
input { name: "tokens" data_type: TYPE_INT64 dims: [ -1 ] }
output { name: "hidden" data_type: TYPE_FP32 dims: [ -1, 4 ] }
"""
SPEC = {"inputs": [{"name": "tokens", "dtype": "int64", "dims": [-1], "axes": ["seq"], "value_range": [0, 9]}],
        "outputs": [{"name": "hidden", "dtype": "fp32", "dims": [-1, 4], "axes": ["seq", None]}],
        "max_batch_size": 8}


def model(tmp_path, *, manifest: bool = True, versions=(1, 2), config: str = CONFIG):
    path = tmp_path / "repo" / "enc"
    for v in versions:
        (path / str(v)).mkdir(parents=True)
        (path / str(v) / "model.onnx").write_bytes(b"onnx")
        if manifest:
            write_manifest(path / str(v), {"format": "onnx", "version": v, "spec": SPEC})
    (path / "config.pbtxt").write_text(config)
    return path


def test_a_model_folder_is_read_once(tmp_path, monkeypatch):
    path = model(tmp_path)
    save_reference(path / "2", {"tokens": np.zeros((2, 3), np.int64)}, {"hidden": np.ones((2, 3, 4), np.float32)})
    parses, reads = [], []
    real_parse, real_read = tritongen.config.parse_config, model_dir_module.read_manifest
    monkeypatch.setattr(tritongen.config, "parse_config", lambda text: parses.append(1) or real_parse(text))
    monkeypatch.setattr(model_dir_module, "read_manifest", lambda d: reads.append(d) or real_read(d))
    enc = read_model_dir(path)
    for _ in range(3):
        assert enc.name == "enc" and enc.versions == (1, 2) and enc.latest == 2
        assert enc.config.platform == "onnxruntime_onnx" and enc.manifest["version"] == 2
        assert enc.artifact_path() == path / "2" / "model.onnx" and enc.artifact_path(1) == path / "1" / "model.onnx"
        assert enc.spec.inputs[0].shape == ("seq",) and enc.spec.inputs[0].value_range == (0, 9)
    assert len(parses) == 1 and sorted(reads) == [path / "1", path / "2"]  # each file once
    inputs, outputs = enc.reference()
    assert inputs["tokens"].shape == (2, 3) and outputs["hidden"].dtype == np.float32


def test_a_model_tritongen_did_not_build_gets_its_spec_from_the_config(tmp_path):
    enc = read_model_dir(model(tmp_path, manifest=False))
    assert enc.manifest is None
    assert [t.name for t in enc.spec.inputs] == ["tokens"] and enc.spec.max_batch_size == 8
    with pytest.raises(TritongenError, match="no manifest"):
        enc.manifest_of()


def test_artifact_names_follow_the_platform_and_the_config(tmp_path):
    plan = CONFIG.replace("onnxruntime_onnx", "tensorrt_plan")
    path = model(tmp_path, manifest=False, versions=(1,), config=plan)
    assert read_model_dir(path).artifact_path() is None  # model.plan is missing
    (path / "1" / "model.plan").write_bytes(b"plan")
    assert read_model_dir(path).artifact_path() == path / "1" / "model.plan"
    (path / "config.pbtxt").write_text(plan + 'default_model_filename: "engine.bin"\n')
    (path / "1" / "engine.bin").write_bytes(b"plan")
    assert read_model_dir(path).artifact_path() == path / "1" / "engine.bin"


def test_a_broken_config_is_named_with_its_line(tmp_path):
    path = model(tmp_path, config=CONFIG.replace("max_batch_size", "max_batch_sise"))
    with pytest.raises(TritongenError) as err:
        read_model_dir(path)
    assert str(path / "config.pbtxt") in err.value.message and "max_batch_sise" in err.value.message


def test_model_dirs_lists_the_repositorys_models(tmp_path):
    model(tmp_path)
    (tmp_path / "repo" / ".tritongen-build-x").mkdir()
    (tmp_path / "repo" / "notes").mkdir()
    assert [m.name for m in model_dirs(tmp_path / "repo")] == ["enc"]
    assert json.loads((tmp_path / "repo" / "enc" / "1" / "tritongen" / "manifest.json").read_text())["version"] == 1


def test_reference_data_keeps_byte_strings_exactly_without_pickle(tmp_path):
    from tritongen.repository import load_reference

    texts = np.empty((4, 1), dtype=object)
    texts[:, 0] = [b"", "h\u00e9llo", b"ends with NUL\x00", b"\x89PNG\r\n"]  # str is stored as UTF-8
    save_reference(tmp_path, {"text": texts, "n": np.arange(4)}, {"label": texts[:2].copy()})
    inputs, outputs = load_reference(tmp_path)
    assert inputs["text"].dtype == object and inputs["text"].shape == (4, 1)
    assert inputs["text"].reshape(-1).tolist() == [b"", "h\u00e9llo".encode(), b"ends with NUL\x00", b"\x89PNG\r\n"]
    assert inputs["n"].tolist() == [0, 1, 2, 3] and outputs["label"].reshape(-1).tolist() == [b"", "h\u00e9llo".encode()]
    with np.load(tmp_path / "tritongen" / "reference.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
