"""PyTorch runner: the reference every other backend is compared with."""

from __future__ import annotations

from typing import Any

import numpy as np

from tritongen.errors import TritongenError, stop_if_interrupted
from tritongen.runners.base import Runner


def flatten_outputs(result: Any) -> list[tuple[str | None, Any]]:
    """A forward() result as (key, tensor) pairs: a tensor, a tuple/list of tensors, or a dict of tensors."""
    import torch

    if isinstance(result, torch.Tensor):
        return [(None, result)]
    if isinstance(result, dict):
        return [(str(k), v) for k, v in result.items()]
    if isinstance(result, (tuple, list)):
        pairs: list[tuple[str | None, Any]] = []
        for item in result:
            pairs.extend(flatten_outputs(item))
        return pairs
    if hasattr(result, "_fields"):  # namedtuple
        return [(str(k), v) for k, v in result._asdict().items()]
    raise TritongenError(f"forward() returned a {type(result).__name__}, not tensors",
                         "make forward() return a tensor, a tuple of tensors or a dict of tensors")


class TorchRunner(Runner):
    """Runs a module on the CPU under no_grad; outputs named in order by `output_names`.

    `batched`: the first axis of every input is the batch, so a failure names the batch size it happened at.
    """

    name = "pytorch"

    def __init__(self, module: Any, input_names: list[str], output_names: list[str], *, batched: bool = False) -> None:
        self.module = module
        self.input_names = input_names
        self.output_names = output_names
        self.batched = batched

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        try:
            with torch.no_grad():
                result = self.module(*args)
        except TritongenError:  # already one line (introspect.BoundModel says what it failed on)
            raise
        except Exception as exc:  # the user's code failed: one line that says on what, not a traceback
            stop_if_interrupted(exc)
            raise self._failure(feeds, exc) from exc
        pairs = flatten_outputs(result)
        if len(pairs) != len(self.output_names):
            raise TritongenError(f"the model returned {len(pairs)} outputs but {len(self.output_names)} are named",
                                 "pass one --output per returned tensor")
        return {name: tensor.detach().cpu().numpy() for name, (_, tensor) in zip(self.output_names, pairs, strict=True)}

    def _failure(self, feeds: dict[str, np.ndarray], exc: Exception) -> TritongenError:
        shapes = ", ".join(f"{n} {list(feeds[n].shape)} {feeds[n].dtype}" for n in self.input_names)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        sizes = {feeds[n].shape[0] for n in self.input_names if feeds[n].ndim}
        if self.batched and len(sizes) == 1:
            return TritongenError(
                f"the PyTorch model fails at batch {sizes.pop()} ({shapes}): {type(exc).__name__}: {first}",
                "if it runs at smaller batches, its code fixes a size (e.g. x.reshape(16, -1)): make it "
                "shape-generic (x.reshape(x.shape[0], -1)), or lower --max-batch-size to a size it runs at")
        return TritongenError(f"the PyTorch model fails on inputs {shapes}: {type(exc).__name__}: {first}",
                              "check --input shapes and dtypes (shape is per item, without the batch axis)")
