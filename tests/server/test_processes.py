"""Nothing outlives a tritongen killed with SIGKILL: not the server, not its python backend stubs, not their
shared memory, not the folders in TMPDIR."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.servers import built_repository, copy_repository, processes_of_run, shared_memory_of_run
from tritongen.server.processes import Watchdog

pytestmark = pytest.mark.server


def commands(repository: Path) -> dict[str, list[str]]:
    return {"serve": ["serve", str(repository)], "validate": ["validate", str(repository)],
            "bench": ["bench", "two_python", "--repository", str(repository), "--duration", "1", "--no-ceiling",
                      "--no-report"]}


def kill_during_start(command: list[str], moment: str) -> int:
    """Start `tritongen COMMAND`, SIGKILL it at `moment` ("first stub": as soon as a python backend stub of the run
    exists, the moment that used to leave stubs behind; or a delay in seconds); return its pid."""
    process = subprocess.Popen([sys.executable, "-m", "tritongen", *command], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    if moment == "first stub":
        while time.monotonic() < deadline and len(processes_of_run(process.pid)) < 2:
            time.sleep(0.005)
    else:
        time.sleep(float(moment))
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process.pid


def leftovers(owner: int, wait_s: float = 15.0) -> list[object]:
    """What is left of run `owner` once its watchdog had `wait_s` to clean up."""
    deadline = time.monotonic() + wait_s
    while True:
        left = [*processes_of_run(owner), *shared_memory_of_run(owner),
                *Path(tempfile.gettempdir()).glob(f"tritongen-s*-{owner}-*")]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.mark.parametrize("moment", ["first stub", "2.5"])
@pytest.mark.parametrize("name", ["serve", "validate", "bench"])
def test_sigkill_during_start_up_leaves_no_process_memory_or_folder(name: str, moment: str,
                                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    repository = copy_repository(built_repository(tmp_path_factory, "two"), tmp_path_factory.mktemp("kill") / "repo",
                                 ("two_python",))
    owner = kill_during_start(commands(repository)[name], moment)
    assert leftovers(owner) == []


def test_a_watchdog_cleans_up_only_what_is_still_guarded_when_released(tmp_path: Path) -> None:
    """A server stopped normally is forgotten; one whose stop was cut short (a second Ctrl-C) is killed."""
    stopped = subprocess.Popen(["sleep", "60"], start_new_session=True)
    cut_short = subprocess.Popen(["sleep", "60"], start_new_session=True)
    folder = tmp_path / "work"
    folder.mkdir()
    dog = Watchdog()
    for process in (stopped, cut_short):
        dog.guard_group(process.pid)
    dog.guard_path(folder)
    dog.forget_group(stopped.pid)
    dog.release()
    try:
        assert cut_short.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not folder.exists() and stopped.poll() is None
    finally:
        for process in (stopped, cut_short):
            process.kill()
            process.wait()
