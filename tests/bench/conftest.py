"""Repositories for the bench tests: the session's built `cnn` recipe (tests/servers.py), and configs only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import built_repository, configs_only_repository


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cnn`: SmallCNN (image:3x32x32, onnx, max batch 32) and `fcn`: FullyConv (image:3xHxW, python format),
    built once per session and shared with the tune tests. Read-only here: bench writes nothing into it."""
    return built_repository(tmp_path_factory, "cnn")


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    """The same models' configs without any export: for checks that fail before a server starts."""
    return configs_only_repository(tmp_path / "configs")
