"""The PyTorch runner: outputs named in order, and a failing model as one line that says on what it failed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import models
from tritongen.errors import TritongenError
from tritongen.runners.torch import TorchRunner, flatten_outputs


def test_outputs_are_named_in_order_from_tuples_and_dicts() -> None:
    runner = TorchRunner(models.TwoInTwoOut().eval(), ["x", "ids"], ["sum", "scaled"])
    out = runner.infer({"x": np.ones((3, 4), np.float32), "ids": np.zeros((3, 2), np.int64)})
    assert list(out) == ["sum", "scaled"] and out["sum"].shape == (3, 4) and out["scaled"].shape == (3, 2)
    assert [k for k, _ in flatten_outputs({"logits": torch.ones(1), "probs": torch.ones(1)})] == ["logits", "probs"]
    with pytest.raises(TritongenError, match="returned 2 outputs but 1 are named"):
        TorchRunner(models.TwoInTwoOut().eval(), ["x", "ids"], ["sum"]).infer(
            {"x": np.ones((1, 4), np.float32), "ids": np.zeros((1, 2), np.int64)})


class Picky(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(16, -1)


def test_a_model_failing_at_one_batch_size_names_the_batch_and_the_shapes() -> None:
    runner = TorchRunner(Picky(), ["x"], ["y"], batched=True)
    assert runner.infer({"x": np.ones((16, 4), np.float32)})["y"].shape == (16, 4)
    with pytest.raises(TritongenError) as err:
        runner.infer({"x": np.ones((3, 4), np.float32)})
    assert err.value.message.startswith("the PyTorch model fails at batch 3 (x [3, 4] float32): RuntimeError:")
    assert "shape-generic" in err.value.hint and "--max-batch-size" in err.value.hint
    assert isinstance(err.value.__cause__, RuntimeError)


def test_an_unbatched_model_failure_names_the_shapes_only() -> None:
    with pytest.raises(TritongenError) as err:
        TorchRunner(Picky(), ["x"], ["y"]).infer({"x": np.ones((3, 4), np.float32)})
    assert err.value.message.startswith("the PyTorch model fails on inputs x [3, 4] float32: RuntimeError:")
    assert "batch" not in err.value.message
