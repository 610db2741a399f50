"""The console script's exit: after a command that imported PyTorch it skips the interpreter's teardown (1.2 s after
a ResNet-18 build) yet keeps the exit code, the output and the exit handlers."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import atexit, sys, threading, time, types
if {torch}:
    sys.modules["torch"] = types.ModuleType("torch")  # as after a build; importing the real one takes 1.5 s
atexit.register(lambda: print("handler ran", flush=True))
if {thread}:
    threading.Thread(target=lambda: (time.sleep(0.3), print("thread done", end=" "))).start()
print("out", end=" ")
from tritongen.entry import leave
leave({code})
"""


@pytest.mark.parametrize("torch, thread, code, status", [
    (True, False, 3, 3), (True, False, None, 0), (False, False, 2, 2), (True, True, 0, 0),
    (True, False, "'failed'", 1)])
def test_leave_keeps_the_code_the_output_and_the_exit_handlers(torch: bool, thread: bool, code: object,
                                                               status: int) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(torch=torch, thread=thread, code=code)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == status, done.stderr
    assert done.stdout == "out " + ("thread done " if thread else "") + "handler ran\n"
    assert done.stderr == ("failed\n" if code == "'failed'" else "")
