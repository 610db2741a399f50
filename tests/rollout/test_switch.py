"""Rollout and rollback on a real Triton (the embedded tritonserver in explicit mode with the restricted API) under
continuous load over HTTP and gRPC: no request fails, responses switch from one version's outputs to the other's
at one point in time, and a broken version is refused while the serving one goes on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.load import ContinuousLoad, switch_point
from tests.rollout.versions import FEEDS, MODEL, OUTPUT, is_version, with_broken_version
from tritongen.rollout import ModelControl, rollback, rollout, rollout_flags

pytestmark = [pytest.mark.server, pytest.mark.slow]

KEY = "rollout-test-key-0123456789"
CONCURRENCY = 8  # per protocol


@pytest.fixture(scope="module")
def served(two_versions: Path) -> Iterator[object]:
    from tritongen.server import serve

    with serve(two_versions, "embedded", flags=rollout_flags(KEY), every_version=True) as s:
        yield s


def urls(handle: object) -> dict[str, str]:
    return {"http": handle.http_url, "grpc": handle.grpc_url}  # type: ignore[attr-defined]


def test_rollout_and_rollback_under_load_drop_no_request_and_switch_at_one_point(served, two_versions):
    handle = served.handle
    # The config serves the newest version (2) at start: go to version 1 first, then measure 1 -> 2 -> 1.
    assert rollout(two_versions, MODEL, 1, handle, key=KEY).switched
    with ContinuousLoad(urls(handle), MODEL, FEEDS, OUTPUT, concurrency=CONCURRENCY) as load:
        load.wait_for(300)
        up = rollout(two_versions, MODEL, 2, handle, key=KEY)
        between = time.monotonic()
        load.wait_for(len(load.answers) + 300)
        down = rollback(two_versions, MODEL, handle, key=KEY)
        load.wait_for(len(load.answers) + 300)
    answers = load.answers
    assert up.switched and (up.from_version, up.to_version) == (1, 2), up.problem
    assert down.switched and (down.from_version, down.to_version) == (2, 1), down.problem
    assert all(c.passed for c in up.checks + up.after + down.checks + down.after)
    assert up.differences["output"] > 0.1  # the side-by-side view saw two different models

    failed = [a for a in answers if not a.ok]
    by_protocol = {p: sum(a.protocol == p for a in answers) for p in ("http", "grpc")}
    print(f"\n{len(answers)} requests ({by_protocol}), {len(failed)} failed; rollout {up.seconds:.2f} s, "
          f"rollback {down.seconds:.2f} s")
    assert not failed, failed[:3]
    assert min(by_protocol.values()) > 100
    assert all(is_version(a.output, 1) or is_version(a.output, 2) for a in answers)
    # 1 -> 2: every answer from version 1 was sent before the first answer from version 2 came back.
    first = [a for a in answers if a.sent < between]
    last_old, first_new = switch_point(first, lambda out: is_version(out, 2))
    assert last_old < first_new, "a request sent after version 2 answered was still served by version 1"
    assert any(is_version(a.output, 1) for a in first) and any(is_version(a.output, 2) for a in first)
    # 2 -> 1, the same way.
    second = [a for a in answers if a.sent >= between]
    last_old, first_new = switch_point(second, lambda out: is_version(out, 1))
    assert last_old < first_new, "a request sent after version 1 answered again was still served by version 2"
    assert any(is_version(a.output, 2) for a in second) and any(is_version(a.output, 1) for a in second)
    with ModelControl(handle.http_url, KEY) as control:
        assert control.ready_versions(MODEL) == [1] and not down.notes
        # No candidate left serving (an unloaded one may stay listed as UNAVAILABLE for a moment).
        assert not [e for e in control.index() if e["name"] != MODEL and e.get("state") == "READY"]


def test_a_broken_version_is_refused_and_the_serving_one_drops_no_request(two_versions, tmp_path):
    from tritongen.server import serve

    repository = with_broken_version(two_versions, tmp_path / "model_repository")
    config = repository / MODEL / "config.pbtxt"  # serve version 1 at start; version 2 is the new, broken build
    config.write_text(config.read_text().replace("version_policy: { latest: { num_versions: 1 } }",
                                                 "version_policy: { specific: { versions: [ 1 ] } }"))
    with serve(repository, "embedded", flags=rollout_flags(KEY), every_version=True) as s:
        with ContinuousLoad(urls(s.handle), MODEL, FEEDS, OUTPUT, concurrency=CONCURRENCY) as load:
            load.wait_for(300)
            report = rollout(repository, MODEL, 2, s.handle, key=KEY)
            load.wait_for(len(load.answers) + 300)
        with ModelControl(s.handle.http_url, KEY) as control:
            assert control.ready_versions(MODEL) == [1]
            assert not [e for e in control.index() if e["name"] != MODEL and e.get("state") == "READY"]
    assert not report.switched
    assert "does not answer with its reference outputs" in report.problem and "version 1 still serves" in report.problem
    assert all(not c.passed for c in report.checks)
    failed = [a for a in load.answers if not a.ok]
    print(f"\nbroken version: {len(load.answers)} requests, {len(failed)} failed")
    assert not failed, failed[:3]
    assert all(is_version(a.output, 1) for a in load.answers)
