"""Where a rollback goes: the version the last rollout replaced, else the newest older one."""

from __future__ import annotations

from tritongen.rollout import HISTORY_FILE, previous_version, read_history
from tritongen.rollout.history import record_switch


def test_rollback_goes_to_what_the_last_rollout_to_the_serving_version_replaced(tmp_path):
    assert previous_version(tmp_path, "m", 3, [1, 2, 3]) == (2, "no rollout to version 3 is recorded: the newest "
                                                                "version below it")
    assert record_switch(tmp_path, "m", 1, 3, "host:8000", "rollout") is None
    assert previous_version(tmp_path, "m", 3, [1, 2, 3])[0] == 1  # not 2: the rollout went 1 -> 3
    record_switch(tmp_path, "m", 3, 1, "host:8000", "rollback")
    assert previous_version(tmp_path, "m", 1, [1, 2, 3]) == (None, "no rollout to version 1 is recorded and no older "
                                                                   "version exists")
    assert [e["kind"] for e in read_history(tmp_path)["m"]] == ["rollout", "rollback"]
    assert previous_version(tmp_path, "other", 2, [2])[0] is None
    (tmp_path / HISTORY_FILE).write_text("not json")
    assert read_history(tmp_path) == {}


def test_a_read_only_repository_says_the_switch_was_not_recorded(tmp_path):
    from tests.repository.staging import read_only

    with read_only(tmp_path):
        why = record_switch(tmp_path, "m", 1, 2, "host:8000", "rollout")
    assert why is not None and HISTORY_FILE in why
