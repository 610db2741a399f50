"""A model with two versions whose outputs differ (and a broken one), built by `tritongen build`, for the rollout
tests: embedded server and Docker alike."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from tests.conftest import save_checkpoint

MODEL = "lin"
FEEDS = {"x": np.ones((1, 4), np.float32)}  # what the load sends; each version answers it with its own output
OUTPUT = "output"
SEEDS = {1: 1, 2: 2}  # version -> torch seed of its weights


class Lin(torch.nn.Module):
    """x:4:fp32 -> 3 values: small and fast, so the load is many requests per second."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _module(version: int) -> Lin:
    torch.manual_seed(SEEDS[version])
    return Lin().eval()


def expected(version: int) -> np.ndarray:
    """What `version` answers to FEEDS."""
    with torch.no_grad():
        return _module(version)(torch.from_numpy(FEEDS["x"])).numpy()


def is_version(output: np.ndarray | None, version: int) -> bool:
    return output is not None and np.allclose(output, expected(version), atol=1e-4, rtol=1e-3)


def build_versions(root: Path, deploy: bool = False) -> Path:
    """`lin` versions 1 and 2 (python format, servable by the embedded server and the slim image)."""
    from tritongen.build import BuildOptions, build_model

    repository = root / "model_repository"
    for version in SEEDS:
        checkpoint = save_checkpoint(_module(version), root / f"lin-v{version}.pt")
        build_model(BuildOptions(checkpoint, name=MODEL, model_class="tests.rollout.versions:Lin", inputs=("x:4:fp32",),
                                 formats=("python",), repository=repository, max_batch_size=8, deploy=deploy))
    return repository


def with_broken_version(repository: Path, dest: Path, version: int = 2) -> Path:
    """A copy of `repository` whose `version` serves wrong outputs (2x + 1 of the right ones): as a bad build would,
    its files are consistent with its manifest, and only validation against the saved PyTorch outputs can tell."""
    from tritongen.checkpoint import sha256_of
    from tritongen.repository import read_manifest, write_manifest

    shutil.copytree(repository, dest, ignore=shutil.ignore_patterns("__pycache__", ".tritongen-*"))
    version_dir = dest / MODEL / str(version)
    model_py = version_dir / "model.py"
    text = model_py.read_text()
    assert "np.ascontiguousarray(array)" in text
    model_py.write_text(text.replace("np.ascontiguousarray(array)", "np.ascontiguousarray(array * 2 + 1)"))
    manifest = read_manifest(version_dir)
    manifest["artifacts"]["model.py"] = sha256_of(model_py)
    write_manifest(version_dir, manifest)
    return dest
