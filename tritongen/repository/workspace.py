"""A build's workspace (its scratch folder), kept outside what Triton serves, and the sweep of killed builds' leftovers.

Triton treats every directory at a repository's root as a model, and a model folder without a config fails the
whole server (measured with tritonserver 2.51: `failed to load all models`). So the workspace goes next to the
repository, on the same filesystem so that installing is a rename. Only when that folder cannot be written, or is
on another filesystem, does it go inside the repository, where a server started during the build would see it.

A SIGKILL leaves the workspace behind. Each records its owner (pid, process start time, host); a later build
removes workspaces whose owner is gone, after undoing a half-done install they journaled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tritongen.repository.layout import versions_of

WORKSPACE_PREFIX = ".tritongen-build-"
OWNER_FILE = "owner.json"
JOURNAL_FILE = "install.json"
# A workspace without an owner record was left between its creation and the record's write: gone after this long.
UNOWNED_GRACE_S = 60.0
# Scratch folders of tritongen before workspaces recorded their owner: `.tritongen-<model>-<8 random characters>`.
_LEGACY_SCRATCH = re.compile(r"^\.tritongen-(?!build-|lock-).+-[a-z0-9_]{8}$")
_LEGACY_IDLE_S = 15 * 60.0
_LEGACY_REPLACED = re.compile(r"^\.replaced-(\d+)-(\d+)$")  # a version set aside by an old install


def workspace_home(repository: Path) -> Path:
    """Where a build of `repository` works: next to it when that is writable and on the same filesystem."""
    repository = Path(repository).resolve()
    parent = repository.parent
    if parent == repository:
        return repository
    if not repository.exists():
        return parent  # the repository will be made there, so it is the same filesystem
    if os.stat(parent).st_dev == os.stat(repository).st_dev and _renames_into(parent, repository):
        return parent
    return repository


def _renames_into(parent: Path, repository: Path) -> bool:
    """Whether a file made in `parent` can be renamed into `repository` (same filesystem and mount, both writable).

    The probe is a file, which Triton never looks at, and it is moved straight back."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".tritongen-probe-", dir=parent)
    except OSError:
        return False
    os.close(fd)
    inside = repository / Path(probe).name
    try:
        os.rename(probe, inside)
        os.rename(inside, probe)
        return True
    except OSError:  # EXDEV: another mount; EACCES/EROFS: the repository is read-only
        return False
    finally:
        for leftover in (probe, inside):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


@contextmanager
def build_workspace(repository: Path) -> Iterator[Path]:
    """A scratch folder for one build, on the repository's filesystem, removed afterwards (also on Ctrl-C)."""
    repository = Path(repository).resolve()
    home = workspace_home(repository)
    home.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{WORKSPACE_PREFIX}{repository.name}-", dir=home))
    try:
        owner = {"pid": os.getpid(), "started": process_start(os.getpid()), "host": socket.gethostname(),
                 "repository": str(repository), "created": time.time()}
        (path / OWNER_FILE).write_text(json.dumps(owner))
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a live owner from a reused pid), where /proc has it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def owner_alive(owner: dict) -> bool:
    """Whether the process that made a workspace may still be running (unknown counts as alive)."""
    if owner.get("host") != socket.gethostname():
        return True  # a shared filesystem: another machine's process cannot be checked from here
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = process_start(pid)
    return started is None or owner.get("started") is None or started == owner.get("started")


def sweep_stale(repository: Path) -> list[str]:
    """Remove what killed builds left for `repository`, undoing half-done installs; returns one line per item."""
    from tritongen.repository.install import recover_install

    repository = Path(repository).resolve()
    done: list[str] = []
    homes = dict.fromkeys(p for p in (workspace_home(repository), repository) if p.is_dir())
    for home in homes:
        for workspace in sorted(home.glob(f"{WORKSPACE_PREFIX}*")):
            if not workspace.is_dir() or not _is_stale(workspace):
                continue
            recovered = recover_install(workspace)
            shutil.rmtree(workspace, ignore_errors=True)
            done.append(f"removed {workspace}, left by a build that was killed" + (f" ({recovered})" if recovered else ""))
    if repository.is_dir():
        done += _sweep_legacy(repository)
    return done


def _is_stale(workspace: Path) -> bool:
    try:
        owner = json.loads((workspace / OWNER_FILE).read_text())
    except FileNotFoundError:
        return time.time() - _mtime(workspace) > UNOWNED_GRACE_S
    except (OSError, ValueError):
        return False
    return isinstance(owner, dict) and not owner_alive(owner)


def _sweep_legacy(repository: Path) -> list[str]:
    done = []
    for entry in sorted(repository.iterdir()):
        if entry.is_dir() and _LEGACY_SCRATCH.match(entry.name) and time.time() - _newest_mtime(entry) > _LEGACY_IDLE_S:
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"removed {entry}, a scratch folder an earlier tritongen left (it stops Triton from starting)")
        elif entry.is_dir() and not entry.name.startswith("."):
            for aside in sorted(entry.iterdir()):
                match = _LEGACY_REPLACED.match(aside.name)
                if not match or not aside.is_dir() or owner_alive({"pid": int(match[2]),
                                                                   "host": socket.gethostname()}):
                    continue
                version = int(match[1])
                if version in versions_of(entry):
                    shutil.rmtree(aside, ignore_errors=True)
                    done.append(f"removed {aside}, the replaced copy of version {version} an interrupted build left")
                else:
                    os.rename(aside, entry / str(version))
                    done.append(f"put back version {version} of '{entry.name}', which an interrupted build had "
                                "moved aside")
    return done


def _mtime(path: Path) -> float:
    with contextlib.suppress(OSError):
        return path.stat().st_mtime
    return 0.0


def _newest_mtime(path: Path) -> float:
    newest = _mtime(path)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            newest = max(newest, _mtime(Path(root) / name))
    return newest
