"""Repositories for the bench tests: the session's built `cnn` recipe (tests/servers.py), and configs only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


FLAKY_MODEL_PY = """import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.count = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.count += 1
            if self.count % 3 == 0:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("every third request fails")))
                continue
            items = pb_utils.get_input_tensor_by_name(request, "image").as_numpy().shape[0]
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("output", np.zeros((items, 10), np.float32))]))
        return responses
"""


def add_flaky_model(repository: Path, config: Any) -> None:
    """`flaky`: `config`'s interface, python backend, every third request answered with an error."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    flaky = model_config_pb2.ModelConfig()
    flaky.CopyFrom(config)
    flaky.name, flaky.platform, flaky.backend = "flaky", "", "python"
    for name in ("default_model_filename", "model_warmup", "parameters", "dynamic_batching"):
        flaky.ClearField(name)
    (repository / "flaky" / "1").mkdir(parents=True)
    (repository / "flaky" / "1" / "model.py").write_text(FLAKY_MODEL_PY)
    (repository / "flaky" / "config.pbtxt").write_text(text_format.MessageToString(flaky))


@pytest.fixture(scope="module")
def served(repository: Path) -> Iterator[Any]:
    """`cnn` and `fcn` on the embedded server, with the no-op twin of `cnn` and `flaky` (a `tritongen.server.Served`;
    the two extra models are only in the staged copy)."""
    from tritongen.bench import write_noop_model
    from tritongen.server import serve

    def add_models(staged: Any) -> None:
        write_noop_model(staged.path, staged.model("cnn").config)
        add_flaky_model(staged.path, staged.model("cnn").config)

    with serve(repository, "embedded", before_start=add_models) as running:
        yield running
