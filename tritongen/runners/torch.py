"""PyTorch runner: the reference every other backend is compared with."""

from __future__ import annotations

from typing import Any

import numpy as np

from tritongen.errors import TritongenError
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
    """Runs a module on the CPU under no_grad; outputs named in order by `output_names`."""

    name = "pytorch"

    def __init__(self, module: Any, input_names: list[str], output_names: list[str]) -> None:
        self.module = module
        self.input_names = input_names
        self.output_names = output_names

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        with torch.no_grad():
            result = self.module(*args)
        pairs = flatten_outputs(result)
        if len(pairs) != len(self.output_names):
            raise TritongenError(f"the model returned {len(pairs)} outputs but {len(self.output_names)} are named",
                                 "pass one --output per returned tensor")
        return {name: tensor.detach().cpu().numpy() for name, (_, tensor) in zip(self.output_names, pairs, strict=True)}
