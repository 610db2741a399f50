"""Versions, atomic installs and reference data in the model repository."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.repository.staging import assert_consistent, snapshot
from tests.repository.staging import stage_model as stage_tagged
from tritongen.errors import TritongenError
from tritongen.repository import (
    build_workspace,
    building,
    install_model_version,
    load_reference,
    models_in,
    next_version,
    resolve_version,
    save_reference,
    versions_of,
)
from tritongen.repository import install as install_module


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


# ------------------------------------------------------------------ every moment consistent, leftovers recovered
SCENARIOS = {
    # name: (versions already installed, with their tags; the version to install)
    "new model": ({}, 1),
    "next version": ({1: "v1"}, 2),
    "replace the newest": ({1: "v1", 2: "v2"}, 2),
    "replace an older one": ({1: "v1", 2: "v2"}, 1),
}


def prepared(tmp_path: Path, scenario: str) -> tuple[Path, int]:
    repo = tmp_path / "project" / "repo"
    existing, version = SCENARIOS[scenario]
    for v, tag in existing.items():
        with building(repo, ["m"], version=v) as work:
            stage_tagged(work.workspace, "m", v, tag)
            work.install()
    return repo, version


class Interrupt:
    """Counts the renames of an install and raises KeyboardInterrupt (Ctrl-C, or SIGTERM) before the one chosen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, before: int | None, exchange: bool) -> None:
        self.count, self.before = 0, before
        for module, name in ((os, "rename"), (os, "replace")):
            monkeypatch.setattr(module, name, self.wrap(getattr(module, name)))
        real_swap = install_module.swap_paths
        monkeypatch.setattr(install_module, "swap_paths", self.wrap(real_swap) if exchange else lambda a, b: False)

    def wrap(self, real):
        def step(*args, **kwargs):
            index, self.count = self.count, self.count + 1
            if index == self.before:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return step


def install_tagged(repo: Path, version: int, tag: str) -> None:
    with building(repo, ["m"], version=version, force=True) as work:
        stage_tagged(work.workspace, "m", version, tag)
        work.install()


def renames_of(tmp_path: Path, scenario: str, exchange: bool, monkeypatch: pytest.MonkeyPatch) -> int:
    repo, version = prepared(tmp_path / "count", scenario)
    with monkeypatch.context() as patch:
        with building(repo, ["m"], version=version, force=True) as work:
            stage_tagged(work.workspace, "m", version, "new")
            counter = Interrupt(patch, None, exchange)
            work.install()
    return counter.count


@pytest.mark.parametrize("exchange", [True, False], ids=["atomic-exchange", "two-renames"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_ctrl_c_between_any_two_renames_leaves_a_consistent_repository(tmp_path, monkeypatch, scenario, exchange):
    steps = renames_of(tmp_path, scenario, exchange, monkeypatch)
    assert steps >= 1
    for before in range(steps + 1):
        root = tmp_path / f"at-{before}"
        repo, version = prepared(root, scenario)
        old = snapshot(repo) if repo.exists() else {}
        with monkeypatch.context() as patch:
            try:
                with building(repo, ["m"], version=version, force=True) as work:
                    stage_tagged(work.workspace, "m", version, "new")
                    Interrupt(patch, before, exchange)
                    work.install()
                interrupted = False
            except KeyboardInterrupt:
                interrupted = True
        assert interrupted == (before < steps)
        now = snapshot(repo) if repo.exists() else {}
        # All or nothing: the repository is the old one or the new one, consistent either way, nothing left over.
        if now != old:
            assert now["m"][str(version)] == "weights new"
        if repo.exists():
            assert_consistent(repo)
            assert set(old.get("m", {})) <= set(now.get("m", {}))  # no version lost
        assert not [p for p in root.rglob(".tritongen-*")], "a workspace or lock file was left behind"
        # The next build goes through.
        install_tagged(repo, version + 10, "later")
        assert_consistent(repo)


def killed_install(repo: Path, version: int, before: int) -> int:
    """Install in a child process that dies (as by SIGKILL: no unwinding) before its rename number `before`."""
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery, no cleanup
        try:
            count = [0]
            real_rename, real_replace = os.rename, os.replace

            def dying(real):
                def step(*args, **kwargs):
                    count[0] += 1
                    if count[0] - 1 == before:
                        os._exit(137)
                    return real(*args, **kwargs)
                return step

            with building(repo, ["m"], version=version, force=True) as work:
                stage_tagged(work.workspace, "m", version, "new")
                os.rename, os.replace = dying(real_rename), dying(real_replace)
                install_module.swap_paths = lambda a, b: False  # the two-rename path: the only one with a gap
                work.install()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("scenario", ["next version", "replace the newest", "replace an older one"])
def test_an_install_killed_between_renames_is_put_back_by_the_next_build(tmp_path, scenario):
    for before in range(4):
        repo, version = prepared(tmp_path / f"at-{before}", scenario)
        old = snapshot(repo)
        code = killed_install(repo, version, before)
        notes: list[str] = []
        with building(repo, ["m"], note=notes.append) as work:  # the next build sweeps first
            stage_tagged(work.workspace, "m", work.versions[0], "later")
            work.install()
        assert_consistent(repo)
        now = snapshot(repo)
        if code == 137:
            assert any("left by a build that was killed" in n for n in notes)
            assert {k: v for k, v in now["m"].items() if k in old["m"] and k != "config"} in (
                {k: v for k, v in old["m"].items() if k != "config"},
                {**{k: v for k, v in old["m"].items() if k != "config"}, str(version): "weights new"})
        assert not list((tmp_path / f"at-{before}").rglob(".tritongen-*"))


def test_replacing_an_older_version_keeps_the_config_the_served_version_needs(tmp_path):
    repo = tmp_path / "repo"
    for v, name in ((1, "x"), (2, "x")):
        with building(repo, ["m"]) as work:
            stage_tagged(work.workspace, "m", v, f"v{v}", config=CONFIG_WITH_INPUT.format(name=name))
            work.install()
    live_before = (repo / "m" / "config.pbtxt").read_text()
    notes: list[str] = []
    with building(repo, ["m"], version=1, force=True, note=notes.append) as work:
        stage_tagged(work.workspace, "m", 1, "v1b", config=CONFIG_WITH_INPUT.format(name="renamed"))
        work.install()
    # Version 2 is served: its config stays; version 1 keeps its own, and the build says so.
    assert (repo / "m" / "config.pbtxt").read_text() == live_before
    assert 'name: "renamed"' in (repo / "m" / "1" / "tritongen" / "config.pbtxt").read_text()
    assert (repo / "m" / "1" / "model.onnx").read_text() == "weights v1b"
    (note,) = notes
    assert "Triton serves version 2" in note and "takes different inputs or outputs" in note


def test_replacing_a_version_the_policy_also_serves_with_other_inputs_is_refused(tmp_path):
    repo = tmp_path / "repo"
    serve_all = CONFIG_WITH_INPUT.format(name="x") + "version_policy { all {} }\n"
    for v in (1, 2):
        with building(repo, ["m"]) as work:
            stage_tagged(work.workspace, "m", v, f"v{v}", config=serve_all)
            work.install()
    before = snapshot(repo)
    with pytest.raises(TritongenError, match="serves more than its newest version"), \
            building(repo, ["m"], version=1, force=True) as work:
        stage_tagged(work.workspace, "m", 1, "v1b", config=CONFIG_WITH_INPUT.format(name="renamed"))
        work.install()
    assert snapshot(repo) == before


CONFIG_WITH_INPUT = """name: "m"
backend: "python"
max_batch_size: 8
input {{ name: "{name}" data_type: TYPE_FP32 dims: [ 4 ] }}
output {{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] }}
"""
