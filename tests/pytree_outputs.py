"""A model returning the user's own output type, registered with torch's pytree when this module is imported: a
`.pt2` of it loads only after `--import tests.pytree_outputs`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils import _pytree


@dataclass
class Scores:
    logits: torch.Tensor
    probs: torch.Tensor


_pytree.register_dataclass(Scores, serialized_type_name="tests.pytree_outputs.Scores")


class Scorer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> Scores:
        logits = self.linear(x)
        return Scores(logits, logits.softmax(-1))
