"""The model repository's layout: versions, manifests, reference data, the one atomic write and backup names."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import TritongenError

META_DIR = "tritongen"  # inside a version directory; Triton's backends ignore it
MANIFEST = "manifest.json"
REFERENCE = "reference.npz"
CONFIG = "config.pbtxt"


def versions_of(model_dir: Path) -> list[int]:
    """Existing numeric version directories of a model, ascending (as Triton counts them: no leading zeros)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.is_dir() and p.name.isdigit() and not p.name.startswith("0"))


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
    """The repository can be written (or created) and is not inside another model's folder; nothing is created."""
    repository = Path(repository)
    if repository.exists() and not repository.is_dir():
        raise TritongenError(f"--repository '{repository}' exists and is not a directory",
                             "pass a directory for the model repository")
    resolved = repository.resolve()
    for ancestor in (resolved, *resolved.parents):
        if (ancestor / CONFIG).is_file():
            raise TritongenError(f"--repository '{repository}' is inside the folder of model '{ancestor.name}' "
                                 f"(it holds a {CONFIG}), where Triton would not find it",
                                 f"pass the repository itself, e.g. --repository {ancestor.parent}")
    existing = repository
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise TritongenError(f"cannot create repository directory '{repository}': '{existing}' is not a directory",
                             "pass a writable --repository")
    if not writable(existing):
        if existing == repository:
            raise TritongenError(f"repository directory '{repository}' is not writable", "pass a writable --repository")
        raise TritongenError(f"cannot create repository directory '{repository}': '{existing}' is not writable",
                             "pass a writable --repository")


def writable(directory: Path) -> bool:
    """Whether a file can really be created in `directory` (read-only mounts and immutable folders included)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".tritongen-probe-", dir=directory)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` so that a reader sees the old file or the new one, never half of one (also after a crash)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes the file 0600; configs and deployment files are read by other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def backup_path(path: Path, kind: str = "bak") -> Path:
    """A free `<name>.<kind>-<timestamp>` name next to `path` (`config.pbtxt.bak-20261201-120000`); Triton ignores it."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    first = candidate = path.with_name(f"{path.name}.{kind}-{stamp}")
    n = 1
    while candidate.exists():
        candidate = first.with_name(f"{first.name}-{n}")
        n += 1
    return candidate


def save_reference(version_dir: Path, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> Path:
    """Write `tritongen/reference.npz`: `inputs/<name>` and `outputs/<name>`; an array of byte strings (a pipeline's
    text or images) as `<kind>_bytes/<name>/data` (the bytes, concatenated) and `.../lengths` (shaped like it), which
    numpy reads back without pickle."""
    meta = version_dir / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for kind, named in (("inputs", inputs), ("outputs", outputs)):
        for name, value in named.items():
            if value.dtype == object:
                items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in value.reshape(-1)]
                arrays[f"{kind}_bytes/{name}/data"] = np.frombuffer(b"".join(items), dtype=np.uint8)
                arrays[f"{kind}_bytes/{name}/lengths"] = np.array([len(i) for i in items], np.int64).reshape(value.shape)
            else:
                arrays[f"{kind}/{name}"] = value
    path = meta / REFERENCE
    np.savez_compressed(path, **arrays)
    return path


def load_reference(version_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The sample inputs and PyTorch outputs `build` saved with a version (byte strings as object arrays of bytes)."""
    path = version_dir / META_DIR / REFERENCE
    if not path.exists():
        raise TritongenError(f"no reference data at {path}",
                             "rebuild the model with `tritongen build`, which saves PyTorch reference outputs")
    found: dict[str, dict[str, np.ndarray]] = {"inputs": {}, "outputs": {}}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            kind, _, name = key.partition("/")
            if kind in found:
                found[kind][name] = data[key]
            elif kind.removesuffix("_bytes") in found and name.endswith("/lengths"):
                name = name.removesuffix("/lengths")
                found[kind.removesuffix("_bytes")][name] = _byte_strings(data[f"{kind}/{name}/data"], data[key])
    return found["inputs"], found["outputs"]


def _byte_strings(data: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    raw = data.tobytes()
    ends = np.cumsum(lengths.reshape(-1))
    items = [raw[end - n:end] for end, n in zip(ends.tolist(), lengths.reshape(-1).tolist(), strict=True)]
    array = np.empty(len(items), dtype=object)
    array[:] = items  # element by element: numpy would turn equal-length byte strings into a fixed-width array
    return array.reshape(lengths.shape)


def write_manifest(version_dir: Path, manifest: dict[str, Any]) -> Path:
    meta = version_dir / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    path = meta / MANIFEST
    write_text_atomic(path, json.dumps(manifest, indent=2, default=str) + "\n")
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
