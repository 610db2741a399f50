"""Versions, atomic installs and reference data in the model repository."""

from __future__ import annotations

import numpy as np
import pytest

from tritongen.errors import TritongenError
from tritongen.repository import (
    build_workspace,
    install_model_version,
    load_reference,
    models_in,
    next_version,
    resolve_version,
    save_reference,
    versions_of,
)


def stage_model(stage, name, version, config_text):
    model = stage / name
    (model / str(version)).mkdir(parents=True)
    (model / str(version) / "model.onnx").write_text(f"weights v{version}")
    (model / "config.pbtxt").write_text(config_text)
    return model


def test_versions_ignore_non_numeric_and_hidden_dirs(tmp_path):
    for name in ("1", "3", "tritongen", ".replaced-2-1", "0"):
        (tmp_path / "m" / name).mkdir(parents=True)
    assert versions_of(tmp_path / "m") == [1, 3] and next_version(tmp_path / "m") == 4
    assert next_version(tmp_path / "new") == 1


def test_resolve_version_refuses_existing_without_force(tmp_path):
    (tmp_path / "m" / "2").mkdir(parents=True)
    with pytest.raises(TritongenError, match="version 2 of model 'm' already exists"):
        resolve_version(tmp_path / "m", 2, force=False)
    assert resolve_version(tmp_path / "m", 2, force=True) == 2
    assert resolve_version(tmp_path / "m", None, force=False) == 3


def test_install_new_then_next_version_keeps_an_unrecorded_config(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    with build_workspace(repo) as stage:
        assert install_model_version(stage_model(stage, "m", 1, "config one"), repo, 1) == (repo / "m" / "1", None)
    with build_workspace(repo) as stage:
        version_dir, backup = install_model_version(stage_model(stage, "m", 2, "config two"), repo, 2)
    assert version_dir == repo / "m" / "2" and (repo / "m" / "config.pbtxt").read_text() == "config two"
    # No version recorded "config one" as the config it was built with: it is kept beside the new one.
    assert backup is not None and backup.name.startswith("config.pbtxt.bak-") and backup.read_text() == "config one"
    assert (repo / "m" / "1" / "model.onnx").read_text() == "weights v1"
    # Staging directories are gone; Triton sees only the model.
    assert [p.name for p in repo.iterdir()] == ["m"] and models_in(repo) == [repo / "m"]


def test_a_config_a_version_recorded_needs_no_backup(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    with build_workspace(repo) as stage:
        model = stage_model(stage, "m", 1, "config one")
        (model / "1" / "tritongen").mkdir()
        (model / "1" / "tritongen" / "config.pbtxt").write_text("config one")
        install_model_version(model, repo, 1)
    with build_workspace(repo) as stage:
        _, backup = install_model_version(stage_model(stage, "m", 2, "config two"), repo, 2)
    assert backup is None and sorted(p.name for p in (repo / "m").iterdir()) == ["1", "2", "config.pbtxt"]


def test_forced_replace_swaps_the_version(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    with build_workspace(repo) as stage:
        install_model_version(stage_model(stage, "m", 1, "a"), repo, 1)
    with build_workspace(repo) as stage:
        install_model_version(stage_model(stage, "m", 1, "b"), repo, 1)
    assert (repo / "m" / "config.pbtxt").read_text() == "b"
    assert sorted(p.name for p in (repo / "m").iterdir() if p.name != "1" and not p.name.startswith("config.pbtxt.bak"))\
        == ["config.pbtxt"]


def test_reference_round_trip(tmp_path):
    inputs = {"tokens": np.arange(6, dtype=np.int64).reshape(2, 3)}
    outputs = {"hidden": np.ones((2, 3, 4), np.float32)}
    save_reference(tmp_path, inputs, outputs)
    got_in, got_out = load_reference(tmp_path)
    assert np.array_equal(got_in["tokens"], inputs["tokens"]) and got_out["hidden"].dtype == np.float32
    with pytest.raises(TritongenError, match="no reference data"):
        load_reference(tmp_path / "other")
