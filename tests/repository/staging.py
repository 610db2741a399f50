"""Model folders for repository tests: each version's files and recorded config carry one tag, so a mixed or
half-installed state is visible."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tritongen.repository import CONFIG, META_DIR, versions_of


def stage_model(stage: Path, name: str, version: int, tag: str, config: str | None = None) -> Path:
    """`<stage>/<name>/{config.pbtxt, <version>/model.onnx, <version>/tritongen/config.pbtxt}` as build writes them."""
    model = stage / name
    (model / str(version) / META_DIR).mkdir(parents=True)
    (model / str(version) / "model.onnx").write_text(f"weights {tag}")
    text = config if config is not None else f"config {tag}"
    (model / CONFIG).write_text(text)
    (model / str(version) / META_DIR / CONFIG).write_text(text)
    return model


def snapshot(repository: Path) -> dict[str, dict[str, str]]:
    """Every model's live config and each version's weights, as text."""
    return {m.name: {"config": (m / CONFIG).read_text() if (m / CONFIG).exists() else "",
                     **{str(v): (m / str(v) / "model.onnx").read_text() for v in versions_of(m)}}
            for m in sorted(repository.iterdir()) if m.is_dir()}


def assert_consistent(repository: Path) -> None:
    """What Triton needs at every moment: only model folders, each with a version, and a live config that is the
    one its newest version was built with; every version whole (its weights match the config it recorded)."""
    for entry in sorted(repository.iterdir()):
        assert entry.is_dir() and not entry.name.startswith("."), f"stray entry {entry.name} in the repository"
        versions = versions_of(entry)
        assert versions, f"model {entry.name} has no version"
        newest = entry / str(versions[-1])
        assert (entry / CONFIG).read_text() == (newest / META_DIR / CONFIG).read_text(), \
            f"model {entry.name}: the live config is not the one version {versions[-1]} was built with"
        for v in versions:
            weights = (entry / str(v) / "model.onnx").read_text().removeprefix("weights ")
            assert (entry / str(v) / META_DIR / CONFIG).read_text().endswith(weights), f"version {v} is mixed"


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """A folder nothing can be written into, not even by root (where tests run as root, an immutable folder)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a read-only folder as root here (chattr +i: {made.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
