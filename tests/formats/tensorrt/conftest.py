"""The test encoder exported once for the TensorRT tests (the mock `tensorrt` runs it with ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import models
from tests.formats.tensorrt.shared import encoder_spec


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    import torch

    from tritongen.export.onnx import onnx_from_module

    torch.manual_seed(0)
    module = models.TinyEncoder().eval()
    path = tmp_path_factory.mktemp("encoder") / "model.onnx"
    onnx_from_module(module, encoder_spec(), path)
    return module, path
