"""A real exported CNN, shared by the precision tests (ONNX Runtime, no mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import models
from tests.precision.shared import cnn_spec


@pytest.fixture(scope="session")
def cnn_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from tritongen.export.onnx import onnx_from_module

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cnn") / "model.onnx"
    onnx_from_module(models.SmallCNN().eval(), cnn_spec(), path)
    return path
