"""Model repository layout, versions, manifests, reference data and atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import TritongenError

META_DIR = "tritongen"  # inside a version directory; Triton's backends ignore it
MANIFEST = "manifest.json"
REFERENCE = "reference.npz"
CONFIG = "config.pbtxt"


def versions_of(model_dir: Path) -> list[int]:
    """Existing numeric version directories of a model, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)


def next_version(model_dir: Path) -> int:
    existing = versions_of(model_dir)
    return existing[-1] + 1 if existing else 1


def resolve_version(model_dir: Path, requested: int | None, force: bool) -> int:
    """The version to write: the next free one, or the requested one (replacing it only with --force)."""
    if requested is None:
        return next_version(model_dir)
    if requested < 1:
        raise TritongenError(f"--version {requested} is not a positive integer", "versions start at 1")
    if requested in versions_of(model_dir) and not force:
        raise TritongenError(
            f"version {requested} of model '{model_dir.name}' already exists in {model_dir.parent}",
            "pass --force to replace it, or leave out --version to write the next version "
            f"({next_version(model_dir)})")
    return requested


def check_repository_dir(repository: Path) -> None:
    if repository.exists() and not repository.is_dir():
        raise TritongenError(f"--repository '{repository}' exists and is not a directory",
                             "pass a directory for the model repository")
    try:
        repository.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TritongenError(f"cannot create repository directory '{repository}': {exc.strerror}",
                             "pass a writable --repository") from exc
    if not os.access(repository, os.W_OK):
        raise TritongenError(f"repository directory '{repository}' is not writable", "pass a writable --repository")


@contextmanager
def staging_dir(repository: Path, name: str) -> Iterator[Path]:
    """A scratch directory on the repository's filesystem (so renames are atomic), removed afterwards.

    Its name starts with '.', is not numeric, and so is never mistaken for a model or a version by Triton.
    """
    path = Path(tempfile.mkdtemp(prefix=f".tritongen-{name}-", dir=repository))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def backup_path(model_dir: Path) -> Path:
    """A free `config.pbtxt.bak-<timestamp>` name next to a model's config (Triton ignores such files)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = candidate = model_dir / f"{CONFIG}.bak-{stamp}"
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}-{n}")
        n += 1
    return candidate


def install_model_version(staged_model: Path, repository: Path, version: int) -> tuple[Path, Path | None]:
    """Move a staged `<model>/{config.pbtxt, <version>/}` into the repository, atomically at each step.

    A new model is one rename. For an existing model the version directory is renamed into place
    first (a replaced version goes aside, then away), then config.pbtxt is replaced. Each version keeps
    the config it was built with in its tritongen/ folder; a live config that matches none of those (edited
    by hand, or written by `tritongen tune`) is first copied to `config.pbtxt.bak-<timestamp>`, so nothing
    is lost. Returns the version directory and that backup, if one was made.
    """
    target = repository / staged_model.name
    if not target.exists():
        os.rename(staged_model, target)
        return target / str(version), None
    version_dir = target / str(version)
    old_aside = None
    if version_dir.exists():
        old_aside = target / f".replaced-{version}-{os.getpid()}"
        os.rename(version_dir, old_aside)
    os.rename(staged_model / str(version), version_dir)
    previous = target / CONFIG
    backup = None
    if previous.exists():
        live = previous.read_bytes()
        recorded = [target / str(v) / META_DIR / CONFIG for v in versions_of(target) if v != version]
        if not any(p.exists() and p.read_bytes() == live for p in recorded):
            backup = backup_path(target)
            shutil.copy2(previous, backup)
    os.replace(staged_model / CONFIG, previous)
    if old_aside is not None:
        shutil.rmtree(old_aside, ignore_errors=True)
    return version_dir, backup


def save_reference(version_dir: Path, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> Path:
    meta = version_dir / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    arrays = {f"inputs/{k}": v for k, v in inputs.items()} | {f"outputs/{k}": v for k, v in outputs.items()}
    path = meta / REFERENCE
    np.savez_compressed(path, **arrays)
    return path


def load_reference(version_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The sample inputs and PyTorch outputs `build` saved with a version."""
    path = version_dir / META_DIR / REFERENCE
    if not path.exists():
        raise TritongenError(f"no reference data at {path}",
                             "rebuild the model with `tritongen build`, which saves PyTorch reference outputs")
    with np.load(path, allow_pickle=False) as data:
        inputs = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("inputs/")}
        outputs = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("outputs/")}
    return inputs, outputs


def write_manifest(version_dir: Path, manifest: dict[str, Any]) -> Path:
    meta = version_dir / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    path = meta / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def read_manifest(version_dir: Path) -> dict[str, Any]:
    path = version_dir / META_DIR / MANIFEST
    if not path.exists():
        raise TritongenError(f"no manifest at {path}", "this version was not written by `tritongen build`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TritongenError(f"manifest {path} is not valid JSON ({exc.msg})", "rebuild the model") from exc


def models_in(repository: Path) -> list[Path]:
    """Model directories: those holding a config.pbtxt."""
    if not repository.is_dir():
        raise TritongenError(f"model repository '{repository}' does not exist",
                             "build one with `tritongen build`, or pass its path")
    return sorted(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / CONFIG).exists())
