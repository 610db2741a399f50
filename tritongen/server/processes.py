"""Nothing a server leaves outlives tritongen: a watchdog that cleans up after a killed tritongen, and a sweep of
what a run that had no chance to clean up left behind.

A SIGKILL gives tritongen no chance to stop its server. The kernel's parent-death signal takes tritonserver down,
but not the python backend stubs it started (they are its children, not ours). So every server gets a watchdog: a
tiny separate process, in a session of its own, reading a pipe that only tritongen holds. When tritongen dies, the
kernel closes the pipe; the watchdog then kills the server's whole process group (stubs included), removes the
container, the shared memory and the folders it was told about, and exits. When tritongen stops a server itself, it
tells the watchdog to forget it; whatever is still guarded when tritongen closes the pipe on its way out (a stop cut
short by a second Ctrl-C) is cleaned up the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

SHM = Path("/dev/shm")
# Folders and shared memory named after the tritongen process that owns them, so that leftovers can be told apart.
SERVER_WORKDIR = "tritongen-server-"  # + pid + "-": the embedded server's backends copy and log
STAGING_DIR = "tritongen-stage-"  # + pid + "-": a repository staged for a server
SHM_PREFIX = "tritongen_"  # + pid + "_" + port + "_": python backend shared memory
_OWNED_SHM = re.compile(rf"/?{SHM_PREFIX}(\d+)_\d+_")
_SERVER_PROGRAMS = ("tritonserver", "triton_python_backend_stub")

# The watchdog: stdlib only (it runs with -I -S); reads commands until EOF, then cleans up what is still guarded.
_WATCHDOG = r"""
import os, shutil, signal, socket, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for tritongen, which then tells us "done"
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
groups, paths, prefixes, containers = set(), set(), set(), set()
for line in sys.stdin:
    verb, _, arg = line.rstrip("\n").partition(" ")
    bag = {"group": groups, "path": paths, "shm": prefixes, "container": containers}
    if verb in bag:
        bag[verb].add(arg)
    elif verb == "forget":
        kind, _, what = arg.partition(" ")
        bag.get(kind, set()).discard(what)
for group in groups:
    try:
        os.killpg(int(group), signal.SIGKILL)
    except OSError:
        pass
def members(group):
    found = 0
    for entry in os.listdir("/proc"):
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found += fields[2] == group and fields[0] != "Z"
    return found
deadline = time.monotonic() + 10
while groups and time.monotonic() < deadline and any(members(g) for g in groups):
    time.sleep(0.05)
for item in containers:
    sock_path, _, name = item.partition(" ")
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(sock_path)
        s.sendall(f"DELETE /containers/{name}?force=1&v=1 HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        s.recv(4096)
        s.close()
    except OSError:
        pass
for path in paths:
    shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else None
    try:
        os.unlink(path)
    except OSError:
        pass
for prefix in prefixes:
    for name in os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else ():
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except OSError:
                pass
"""


class Watchdog:
    """Cleans up what it is told about if tritongen dies without doing so itself (see the module docstring)."""

    def __init__(self) -> None:
        with uninterrupted():
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHDOG], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, text=True)

    def _send(self, line: str) -> None:
        stdin = self._process.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError, ValueError):
                stdin.write(line + "\n")
                stdin.flush()

    def guard_group(self, pgid: int) -> None:
        self._send(f"group {pgid}")

    def forget_group(self, pgid: int) -> None:
        self._send(f"forget group {pgid}")

    def guard_path(self, path: Path) -> None:
        self._send(f"path {path}")

    def guard_shm(self, prefix: str) -> None:
        self._send(f"shm {prefix}")

    def guard_container(self, docker_socket: str, name: str) -> None:
        self._send(f"container {docker_socket} {name}")

    def forget_container(self, docker_socket: str, name: str) -> None:
        self._send(f"forget container {docker_socket} {name}")

    def release(self) -> None:
        """Close the pipe: the watchdog cleans up what is still guarded (nothing, after a normal stop) and exits.
        Not waited for, so that a cleanup tritongen could not finish does not hold up its exit."""
        stdin = self._process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()


@contextlib.contextmanager
def watchdog(existing: Watchdog | None = None) -> Iterator[Watchdog]:
    """A watchdog for the block (or `existing`, owned by an outer block); released when the block ends."""
    if existing is not None:
        yield existing
        return
    dog = Watchdog()
    try:
        yield dog
    finally:
        dog.release()


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a child process is created, so that an interrupt cannot land between the fork
    and the moment we know the child's pid (that child would be left unstopped). Delivered right after."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def child_setup(parent_pid: int) -> None:
    """Runs in a server process between fork and exec: unblock the signals `uninterrupted` held, and make the kernel
    kill the server if tritongen dies (even by SIGKILL); exit at once if tritongen is already gone."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # died between fork and prctl: the death signal was never armed
        os._exit(1)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owned_name(prefix: str) -> str:
    """`prefix` + this process's pid + "-": a name the sweep can trace back to its owner."""
    return f"{prefix}{os.getpid()}-"


def sweep_leftovers() -> list[Path]:
    """Remove what runs of tritongen that were killed left behind: their servers and python backend stubs, their
    shared memory, and their work and staging folders in TMPDIR. Only what belongs to a process that is gone."""
    removed: list[Path] = []
    for pid, argv in _server_processes():
        owner = next((int(m.group(1)) for arg in argv for m in [_OWNED_SHM.search(arg)] if m), None)
        if owner is not None and owner != os.getpid() and not process_exists(owner):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                removed.append(Path(f"/proc/{pid}"))
    tmp = Path(tempfile.gettempdir())
    candidates = [(p, p.name.removeprefix(prefix).split("-")[0])
                  for prefix in (SERVER_WORKDIR, STAGING_DIR) for p in tmp.glob(f"{prefix}*")]
    if SHM.is_dir():
        candidates += [(p, p.name.removeprefix(SHM_PREFIX).split("_")[0]) for p in SHM.glob(f"{SHM_PREFIX}*")]
    for path, owner in candidates:
        if owner.isdigit() and not process_exists(int(owner)):
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                removed.append(path)
    return removed


def _server_processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of this user's tritonserver and python backend stub processes."""
    uid = os.getuid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if argv and Path(argv[0]).name in _SERVER_PROGRAMS:
            yield int(entry.name), argv
