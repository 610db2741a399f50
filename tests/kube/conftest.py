"""Fixtures for the deployment tests: the repositories of tests/kube/repositories.py, and one real build."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import models
from tests.conftest import save_checkpoint
from tests.kube.repositories import write_repositories


@pytest.fixture(scope="session")
def cnn_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmallCNN built with `--format python` (served by the slim image and by the embedded server) as `cnn`."""
    from tritongen.build import BuildOptions, build_model

    root = tmp_path_factory.mktemp("kube-cnn")
    checkpoint = save_checkpoint(models.SmallCNN(), root / "cnn.pt")
    build_model(BuildOptions(checkpoint, name="cnn", model_class="tests.models:SmallCNN", inputs=("image:3x32x32:fp32",),
                             formats=("python",), repository=root / "model_repository", deploy=False))
    return root / "model_repository"


@pytest.fixture(scope="session")
def repositories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """kind -> repository: cpu, gpu, pipeline, multi."""
    return write_repositories(tmp_path_factory.mktemp("kube-repositories"))
