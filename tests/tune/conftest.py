"""Repositories for the tune tests: private copies of the session's built `cnn` (tune writes into them), and configs
only, for what needs no export."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import built_repository, configs_only_repository, copy_repository


@pytest.fixture
def repository(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A private copy of `cnn`: SmallCNN (image:3x32x32, onnx, max batch 32), as `build` writes it."""
    return copy_repository(built_repository(tmp_path_factory, "cnn"), tmp_path / "repo", ("cnn",))


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    """The same model's config as `build` renders it, without any export."""
    return configs_only_repository(tmp_path / "configs")
