"""What a build may do to the repository before it installs: nothing, and a failure leaves no trace."""

from __future__ import annotations

import pytest

from tests.repository.staging import read_only, stage_model
from tritongen.errors import TritongenError
from tritongen.repository import building, check_repository_dir


def test_a_failed_build_leaves_no_repository_folder(tmp_path):
    repo = tmp_path / "new" / "repo"
    with pytest.raises(RuntimeError), building(repo, ["m"]) as work:
        stage_model(work.workspace, "m", 1, "v1")
        raise RuntimeError("the export failed")
    assert list(tmp_path.iterdir()) == []  # neither the repository nor the folder above it, nor a workspace


def test_ctrl_c_before_installing_leaves_an_existing_repository_as_it_was(tmp_path):
    repo = tmp_path / "repo"
    with building(repo, ["m"]) as work:
        stage_model(work.workspace, "m", 1, "v1")
        work.install()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(KeyboardInterrupt), building(repo, ["m"]) as work:
        stage_model(work.workspace, "m", 2, "v2")
        raise KeyboardInterrupt
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_checking_the_repository_creates_nothing(tmp_path):
    check_repository_dir(tmp_path / "a" / "repo")
    assert not (tmp_path / "a").exists()


def test_a_repository_inside_a_models_folder_is_refused(tmp_path):
    repo = tmp_path / "repo"
    with building(repo, ["tiny"]) as work:
        stage_model(work.workspace, "tiny", 1, "v1")
        work.install()
    with pytest.raises(TritongenError, match="inside the folder of model 'tiny'") as err:
        check_repository_dir(repo / "tiny" / "1")
    assert f"--repository {repo}" in err.value.hint


def test_a_read_only_repository_is_reported_before_any_work(tmp_path):
    with read_only(tmp_path / "repo") as repo:
        with pytest.raises(TritongenError, match="is not writable"):
            check_repository_dir(repo)
        with pytest.raises(TritongenError, match="cannot create repository directory"):
            check_repository_dir(repo / "inner")
