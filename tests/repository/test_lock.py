"""One writer per model: concurrent builds wait for each other and get different versions."""

from __future__ import annotations

import threading

import pytest

from tests.repository.staging import assert_consistent, stage_model
from tritongen.repository import LOCK_PREFIX, building, model_lock, versions_of


def test_two_concurrent_builds_of_a_model_get_versions_1_and_2(tmp_path):
    repo = tmp_path / "repo"
    first_has_chosen, notes, results = threading.Event(), [], {}

    def first():
        with building(repo, ["m"]) as work:
            results["first"] = work.versions
            first_has_chosen.set()
            stage_model(work.workspace, "m", work.versions[0], "first")
            waited = threading.Event()
            waited.wait(1.0)  # the second build starts meanwhile and must wait here, not choose version 1 too
            work.install()

    def second():
        first_has_chosen.wait(10)
        with building(repo, ["m"], note=notes.append) as work:
            results["second"] = work.versions
            stage_model(work.workspace, "m", work.versions[0], "second")
            work.install()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"first": (1,), "second": (2,)}
    assert versions_of(repo / "m") == [1, 2] and (repo / "m" / "1" / "model.onnx").read_text() == "weights first"
    assert any("another tritongen build of model 'm' is running" in n and "waiting" in n for n in notes)
    assert_consistent(repo)
    assert not list(repo.glob(f"{LOCK_PREFIX}*"))  # the lock files go with their builds


def test_a_lock_removed_by_its_holder_is_not_held_twice(tmp_path):
    held, order = threading.Event(), []

    def holder():
        with model_lock(tmp_path, "m"):
            held.set()
            order.append("holder in")
            threading.Event().wait(0.3)
            order.append("holder out")

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    with model_lock(tmp_path, "m"):  # waits for the holder, then locks a fresh file
        order.append("waiter in")
    t.join(10)
    assert order == ["holder in", "holder out", "waiter in"]
    assert not (tmp_path / f"{LOCK_PREFIX}m").exists()


def test_ctrl_c_while_waiting_releases_nothing_it_did_not_hold(tmp_path):
    held, release = threading.Event(), threading.Event()

    def holder():
        with model_lock(tmp_path, "m"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)

    def interrupt(_message):
        raise KeyboardInterrupt  # as Ctrl-C would, while waiting

    with pytest.raises(KeyboardInterrupt):
        with model_lock(tmp_path, "m", on_wait=interrupt):
            pass
    assert (tmp_path / f"{LOCK_PREFIX}m").exists()  # still the holder's
    release.set()
    t.join(10)
