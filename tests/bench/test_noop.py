"""The no-op twin of a model: same tensors and batching, python backend, rendered from templates/noop_model.py.j2.
Its answers on a real server are checked in test_run.py."""

from __future__ import annotations

import py_compile
from pathlib import Path

from tritongen.bench import NOOP_PREFIX, write_noop_model
from tritongen.config import parse_config


def test_noop_model_keeps_the_interface_and_drops_the_model(configs: Path, tmp_path: Path) -> None:
    config = parse_config((configs / "cnn" / "config.pbtxt").read_text())
    config.parameters["intra_op_num_threads"].string_value = "1"
    name = write_noop_model(tmp_path, config)
    assert name == NOOP_PREFIX + "cnn"
    noop = parse_config((tmp_path / name / "config.pbtxt").read_text())
    assert noop.name == name and noop.backend == "python" and not noop.platform
    assert noop.input == config.input and noop.output == config.output
    assert noop.max_batch_size == 32 and noop.dynamic_batching == config.dynamic_batching
    assert noop.instance_group == config.instance_group
    assert not noop.model_warmup and not noop.parameters
    model_py = tmp_path / name / "1" / "model.py"
    py_compile.compile(str(model_py), doraise=True)
    text = model_py.read_text()
    assert 'The no-op twin of model "cnn"' in text and "{{" not in text
