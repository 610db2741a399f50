"""The `tritongen` console script: the CLI, with a Ctrl-C during start-up (importing the commands) ending quietly, and
an exit that does not tear the interpreter down after a command that imported PyTorch."""

from __future__ import annotations

import atexit
import os
import sys
import threading


def run() -> None:
    try:
        from tritongen.cli import main
    except KeyboardInterrupt:  # before any command could install its handlers: same line and code as theirs
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    try:
        main()
    except SystemExit as exc:
        leave(exc.code)
    leave(0)


def leave(code: int | str | None) -> None:
    """Exit with `code` (SystemExit's meaning). After a command that imported PyTorch, skip the interpreter's teardown
    of its modules: after a ResNet-18 build (about 3,400 modules, torch's exporter among them) it took 1.2 s of a 9 s
    build, with nothing left to do. Exit handlers still run (temporary folders, child processes, logging) and output is
    flushed; where a non-daemon thread is still running, Python's own exit waits for it as usual."""
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    status = 0 if code is None else int(code)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if "torch" not in sys.modules or others:
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`tritongen ... | head`): nothing more can be written anyway
            pass
    os._exit(status)
