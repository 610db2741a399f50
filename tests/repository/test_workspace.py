"""A build's workspace lives outside what Triton serves; what killed builds leave is swept, and only then."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from tests.repository.staging import read_only, stage_model
from tritongen.repository import WORKSPACE_PREFIX, build_workspace, building, sweep_stale, versions_of, workspace_home
from tritongen.repository.workspace import OWNER_FILE, process_start


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_workspace_is_next_to_the_repository_and_gone_afterwards(tmp_path):
    repo = tmp_path / "project" / "repo"
    repo.mkdir(parents=True)
    with build_workspace(repo) as workspace:
        assert workspace.parent == tmp_path / "project" and workspace.name.startswith(f"{WORKSPACE_PREFIX}repo-")
        owner = json.loads((workspace / OWNER_FILE).read_text())
        assert owner["pid"] == os.getpid() and owner["repository"] == str(repo.resolve())
    assert not workspace.exists()
    with pytest.raises(KeyboardInterrupt), build_workspace(repo) as workspace:
        raise KeyboardInterrupt
    assert not workspace.exists() and list(repo.iterdir()) == []


def test_a_repository_whose_folder_cannot_be_written_is_worked_in_itself(tmp_path):
    repo = tmp_path / "project" / "repo"
    repo.mkdir(parents=True)
    assert workspace_home(repo) == tmp_path / "project"
    with read_only(tmp_path / "project"):
        assert workspace_home(repo) == repo.resolve()
        with build_workspace(repo) as workspace:
            assert workspace.parent == repo.resolve()
        assert list(repo.iterdir()) == []


def make_workspace(home, owner: dict | None, age_s: float = 0.0):
    path = home / f"{WORKSPACE_PREFIX}repo-{len(list(home.glob(WORKSPACE_PREFIX + '*')))}"
    (path / "m" / "1").mkdir(parents=True)
    if owner is not None:
        (path / OWNER_FILE).write_text(json.dumps(owner))
    if age_s:
        old = time.time() - age_s
        os.utime(path, (old, old))
    return path


def test_only_workspaces_whose_owner_is_gone_are_swept(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    host = socket.gethostname()
    me = {"pid": os.getpid(), "started": process_start(os.getpid()), "host": host}
    dead = make_workspace(tmp_path, {"pid": dead_pid(), "started": 1, "host": host})
    alive = make_workspace(tmp_path, me)
    reused = make_workspace(tmp_path, {**me, "started": (me["started"] or 0) + 1})  # same pid, another process
    elsewhere = make_workspace(tmp_path, {"pid": dead_pid(), "host": "another-machine"})
    unowned_new = make_workspace(tmp_path, None)
    unowned_old = make_workspace(tmp_path, None, age_s=3600)
    in_repo = make_workspace(repo, {"pid": dead_pid(), "host": host})  # the fallback place
    swept = sweep_stale(repo)
    assert not dead.exists() and not reused.exists() and not unowned_old.exists() and not in_repo.exists()
    assert alive.exists() and elsewhere.exists() and unowned_new.exists()
    assert len(swept) == 4 and all("left by a build that was killed" in line for line in swept)


def test_leftovers_of_earlier_tritongen_versions_are_swept_or_put_back(tmp_path):
    repo = tmp_path / "repo"
    with building(repo, ["m"]) as work:
        stage_model(work.workspace, "m", 1, "v1")
        work.install()
    old_scratch = repo / ".tritongen-m-a1b2c3d4"
    (old_scratch / "export").mkdir(parents=True)
    for p in (old_scratch / "export", old_scratch):
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    fresh_scratch = repo / ".tritongen-m-zzzz9999"
    fresh_scratch.mkdir()
    # An old install moved version 2 aside and died; version 1 was replaced and its old copy left.
    (repo / "m" / "1").rename(repo / "m" / f".replaced-2-{dead_pid()}")
    stage_model(repo, "m", 1, "v1")  # version 1 again, as if the install had finished
    (repo / "m" / f".replaced-1-{dead_pid()}").mkdir()
    swept = sweep_stale(repo)
    assert not old_scratch.exists() and fresh_scratch.exists()
    assert versions_of(repo / "m") == [1, 2] and not list((repo / "m").glob(".replaced-*"))
    assert any("put back version 2" in line for line in swept)
