"""Shared fixtures: real small models saved as every checkpoint kind, and a CLI runner."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests import models

REPO_ROOT = Path(__file__).resolve().parent.parent


def save_checkpoint(module: torch.nn.Module, path: Path, kind: str = "state_dict",
                    example: tuple[torch.Tensor, ...] | None = None, dynamic_shapes: object = None) -> Path:
    """Save `module` as one checkpoint kind: state_dict, wrapped, dataparallel, full, torchscript, pt2."""
    module = module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "state_dict":
        torch.save(module.state_dict(), path)
    elif kind == "wrapped":  # what training loops write
        torch.save({"epoch": 3, "model_state_dict": module.state_dict(), "optimizer": {}}, path)
    elif kind == "dataparallel":
        torch.save({f"module.{k}": v for k, v in module.state_dict().items()}, path)
    elif kind == "full":
        torch.save(module, path)
    elif kind == "torchscript":
        torch.jit.save(torch.jit.script(module), str(path))
    elif kind == "pt2":
        assert example is not None
        torch.export.save(torch.export.export(module, example, dynamic_shapes=dynamic_shapes), str(path))
    else:
        raise ValueError(kind)
    return path


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """Run `tritongen ARGS` in-process; stdout and stderr kept apart (for --json)."""
    from tritongen.cli import main

    def run(*args: str | Path) -> CliResult:
        runner = CliRunner()
        argv = [str(a) for a in args]
        saved, sys.argv = sys.argv, ["tritongen", *argv]  # as the console script would see it
        try:
            result = runner.invoke(main, argv, catch_exceptions=True)
        finally:
            sys.argv = saved
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def cnn_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(models.SmallCNN(), tmp_path / "cnn.pt")


CNN_ARGS = ("--model-class", "tests.models:SmallCNN", "--input", "image:3x32x32:fp32", "--no-deploy")
