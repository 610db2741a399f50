"""Installing a staged model into the repository so that every moment is a consistent repository.

A new model is one rename of its folder. For an existing model the staged folder is completed into the whole new
model folder (the other versions and files hard-linked in, so nothing is copied), then the two folders are
exchanged in one atomic step (`renameat2(RENAME_EXCHANGE)`): a reader, a polling Triton, or a crash sees the old
model or the new one, never a model without a version or a new version under the previous config.

Where the filesystem cannot exchange, two renames are journaled in the workspace: Ctrl-C between them puts the
old folder back at once, and after a SIGKILL the next build does (`recover_install`).

The live config.pbtxt always belongs to the newest version, the one Triton serves. Replacing an older version
(`--version N --force`) keeps it, and says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError
from tritongen.repository.layout import CONFIG, META_DIR, backup_path, versions_of, write_text_atomic
from tritongen.repository.workspace import JOURNAL_FILE

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@dataclass(frozen=True)
class Installed:
    """A version now in the repository, and what the install had to say about it."""

    model: str
    version: int
    version_dir: Path
    backup: Path | None = None  # the live config no build recorded, kept under this name
    notes: tuple[str, ...] = ()


def install_model_version(staged_model: Path, repository: Path, version: int) -> tuple[Path, Path | None]:
    """Install `<workspace>/<model>/{config.pbtxt, <version>/}`; returns the version directory and any backup."""
    installed = install_staged(staged_model, repository, version)
    return installed.version_dir, installed.backup


def install_staged(staged: Path, repository: Path, version: int) -> Installed:
    """Move a staged model folder into `repository` in one atomic step (see the module's docstring)."""
    model = staged.name
    target = Path(repository) / model
    if not target.exists():
        Path(repository).mkdir(parents=True, exist_ok=True)
        os.rename(staged, target)
        return Installed(model, version, target / str(version))
    live = target / CONFIG
    others = [v for v in versions_of(target) if v != version]
    notes: list[str] = []
    backup = None
    keep = {CONFIG, str(version)}
    if others and version < max(others):
        # An older version was replaced: the live config stays what the newest version needs.
        _check_config_kept(model, version, max(others), staged / CONFIG, live)
        notes.append(_kept_note(model, version, max(others), staged / CONFIG, live))
        keep.discard(CONFIG)
        (staged / CONFIG).unlink()
    elif live.exists() and not _recorded(target, live, others):
        backup = target / backup_path(live).name
        _link_or_copy(live, staged / backup.name)
        notes.append(f"{model}/config.pbtxt had changes no build recorded (hand edits or `tritongen tune`); "
                     f"kept them as {backup} (the new config does not carry them over)")
    _mirror(target, staged, skip=keep)
    _commit(staged, target)
    return Installed(model, version, target / str(version), backup, tuple(notes))


def swap_paths(a: Path, b: Path) -> bool:
    """Exchange two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system lacks it."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def recover_install(workspace: Path) -> str:
    """Undo an install a killed build left between its two renames; says what it did ("" when nothing)."""
    done = []
    for journal in sorted(Path(workspace).glob(f"{JOURNAL_FILE}.*")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads(journal.read_text())
            target, aside = Path(record["target"]), Path(record["aside"])
            if not target.exists() and aside.is_dir():
                os.rename(aside, target)
                done.append(f"put model '{target.name}' back as it was before the interrupted install")
    return "; ".join(done)


def _commit(staged: Path, target: Path) -> None:
    if swap_paths(staged, target):
        shutil.rmtree(staged, ignore_errors=True)  # the old model folder, now in the workspace
        return
    aside = staged.with_name(f"{staged.name}.replaced")
    journal = staged.parent / f"{JOURNAL_FILE}.{staged.name}"
    write_text_atomic(journal, json.dumps({"target": str(target.resolve()), "aside": str(aside)}))
    try:
        os.rename(target, aside)
        os.rename(staged, target)
    except BaseException:
        if not target.exists() and aside.is_dir():
            os.rename(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    journal.unlink(missing_ok=True)


def _mirror(source: Path, dest: Path, skip: set[str]) -> None:
    """Fill `dest` with hard links to everything in `source` except `skip` (folders recreated, files linked)."""
    for entry in sorted(source.iterdir()):
        if entry.name in skip or entry.name.startswith(".tritongen-"):
            continue
        _link_tree(entry, dest / entry.name)


def _link_tree(src: Path, dst: Path) -> None:
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir()
        for child in sorted(src.iterdir()):
            _link_tree(child, dst / child.name)
        shutil.copystat(src, dst)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # filesystems without hard links, or too many links to one file
        shutil.copy2(src, dst)


def _recorded(target: Path, live: Path, versions: list[int]) -> bool:
    """Whether the live config is the one some version was built with (so replacing it loses nothing)."""
    text = live.read_bytes()
    recorded = (target / str(v) / META_DIR / CONFIG for v in versions)
    return any(p.is_file() and p.read_bytes() == text for p in recorded)


def _interface(path: Path) -> Any:
    """What a config asks of requests: batching and each input's and output's name, type and shape."""
    from tritongen.config import parse_config

    try:
        proto = parse_config(path.read_text())
    except (OSError, TritongenError):
        return None
    tensors = tuple((kind, t.name, t.data_type, tuple(t.dims), tuple(t.reshape.shape))
                    for kind, entries in (("input", proto.input), ("output", proto.output)) for t in entries)
    return proto.max_batch_size, tensors, proto


def _kept_note(model: str, version: int, newest: int, own: Path, live: Path) -> str:
    note = (f"version {version} of '{model}' was replaced, but Triton serves version {newest} (the newest): "
            f"config.pbtxt stays as version {newest} needs it")
    ours, theirs = _interface(own), _interface(live)
    if ours is None or theirs is None or ours[:2] != theirs[:2]:
        note += (f"; version {version} takes different inputs or outputs and keeps its own config in "
                 f"{model}/{version}/{META_DIR}/{CONFIG}")
    return note


def _check_config_kept(model: str, version: int, newest: int, own: Path, live: Path) -> None:
    """Refuse when the live config's version policy serves the replaced version too and the interfaces differ."""
    ours, theirs = _interface(own), _interface(live)
    if theirs is None or (ours is not None and ours[:2] == theirs[:2]):
        return
    policy = theirs[2].version_policy
    which = policy.WhichOneof("policy_choice")
    served = (which == "all" or (which == "specific" and version in policy.specific.versions)
              or (which == "latest" and policy.latest.num_versions > 1))
    if served:
        raise TritongenError(
            f"model '{model}' serves more than its newest version (version_policy in config.pbtxt), and the new "
            f"version {version} takes different inputs or outputs than the config those versions share",
            "leave out --version to add a new version instead, or change the version_policy first")
