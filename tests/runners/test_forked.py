"""Parity cases run in a forked child while the parent goes on: the same outputs as in-process, errors raised as
in-process, the child never outliving its block."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import models
from tests.servers import wait_until_gone
from tritongen.errors import TritongenError
from tritongen.runners.forked import ForkedCases, cases_in_background
from tritongen.runners.torch import TorchRunner
from tritongen.spec import ModelSpec, parse_input_spec
from tritongen.verify import parity_cases, run_cases

SPEC = ModelSpec(inputs=(parse_input_spec("image:3x32x32:fp32"),), outputs=(parse_input_spec("output:10:fp32"),),
                 max_batch_size=8)


class FixedBatch(torch.nn.Module):
    """Fails at any batch but 1 and 2: code that fixes a size (the parity check's max batch finds it)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[0] > 2:
            raise RuntimeError("shape '[2, -1]' is invalid for input")
        return image.flatten(1)[:, :10]


def test_outputs_from_the_child_are_the_in_process_ones(tmp_path: Path) -> None:
    runner = TorchRunner(models.SmallCNN().eval(), ["image"], ["output"], batched=True)
    cases = parity_cases(SPEC)
    with cases_in_background(runner, cases, tmp_path / "ref") as pending:
        assert pending.pid is not None and pending.pid != os.getpid()
        forked = pending.result()
        assert pending.ran_in_child and pending.result() is forked  # computed once
    here = run_cases(runner, cases)
    assert forked.runner == "pytorch" and forked.cases == tuple(cases)
    for a, b in zip(forked.outputs, here.outputs, strict=True):
        assert set(a) == {"output"} and np.array_equal(a["output"], b["output"])


def test_a_failure_in_the_child_is_raised_as_in_process(tmp_path: Path) -> None:
    runner = TorchRunner(FixedBatch(), ["image"], ["output"], batched=True)
    with cases_in_background(runner, parity_cases(SPEC), tmp_path / "ref") as pending:
        with pytest.raises(TritongenError, match="the PyTorch model fails at batch 8"):
            pending.result()
        assert not pending.ran_in_child


def test_the_child_never_outlives_its_block(tmp_path: Path) -> None:
    class Slow(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            time.sleep(30)
            return image.flatten(1)[:, :10]

    runner = TorchRunner(Slow(), ["image"], ["output"], batched=True)
    with pytest.raises(KeyboardInterrupt), cases_in_background(runner, parity_cases(SPEC), tmp_path / "ref") as pending:
        child = pending.pid
        raise KeyboardInterrupt  # as a Ctrl-C during the export would
    assert child is not None and wait_until_gone([child], timeout_s=5) == []
    assert not (tmp_path / "ref" / "outputs.npz").exists()


def test_without_fork_the_cases_run_here(tmp_path: Path) -> None:
    runner = TorchRunner(models.SmallCNN().eval(), ["image"], ["output"], batched=True)
    pending = ForkedCases(runner, parity_cases(SPEC), tmp_path / "ref", fork=False)
    assert pending.pid is None and len(pending.result().outputs) == len(parity_cases(SPEC))
    assert not pending.ran_in_child


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    """A build killed by SIGKILL leaves no child computing PyTorch's outputs (it would hold the repository's lock)."""
    import signal
    import subprocess
    import sys

    script = f"""
import os, sys, time, torch
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from tritongen.runners.forked import ForkedCases
from tritongen.runners.torch import TorchRunner
from tritongen.verify import parity_cases
from tests.runners.test_forked import SPEC

class Slow(torch.nn.Module):
    def forward(self, image):
        time.sleep(60)
        return image

pending = ForkedCases(TorchRunner(Slow(), ["image"], ["output"]), parity_cases(SPEC), Path({str(tmp_path)!r}))
print(pending.pid, flush=True)
time.sleep(60)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert wait_until_gone([child], timeout_s=5) == []
