"""Default axis lengths a model rejects are retried longer (or shorter), or the error names the axis and the flag."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tritongen.errors import TritongenError
from tritongen.introspect import at_workable_lengths, bound_model, outputs_of
from tritongen.spec import ModelSpec, parse_input_spec


class NeedsSamples(nn.Module):
    """A convolution over raw samples with a kernel of 50: shorter inputs fail, as wav2vec2's feature encoder does."""

    def __init__(self, kernel: int = 50) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, kernel, stride=5)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.conv(audio.unsqueeze(1)).mean(-1)


def spec_of(text: str, lengths: dict | None = None) -> ModelSpec:
    return ModelSpec((parse_input_spec(text),), max_batch_size=4, axis_lengths=lengths or {})


def test_lengths_the_model_rejects_are_retried_longer_with_a_note() -> None:
    spec = spec_of("audio:samples:fp32")
    model = bound_model(NeedsSamples(), spec)
    notes: list[str] = []
    used, outputs = at_workable_lengths(lambda s: outputs_of(model, s, ()), spec, set(), notes.append)
    assert used.lengths("samples") == (64, 128) and outputs[0].shape == (4,)
    assert notes == ["the model fails at the default lengths of 'samples' (8,16): checked at 64,128 instead; pass "
                     "--axis-length samples=SHORT,LONG to choose"]


def test_a_model_that_fails_at_every_length_names_the_axis_and_the_flag() -> None:
    spec = spec_of("audio:samples:fp32")
    model = bound_model(NeedsSamples(kernel=20000), spec)
    with pytest.raises(TritongenError) as err:
        at_workable_lengths(lambda s: outputs_of(model, s, ()), spec, set())
    assert "it also fails with 'samples' at 64,128; 512,1024; 4096,8192; 2,4" in err.value.message
    assert "--axis-length samples=SHORT,LONG" in err.value.hint


def test_lengths_the_user_chose_are_not_changed() -> None:
    spec = spec_of("audio:samples:fp32", {"samples": (8, 16)})
    model = bound_model(NeedsSamples(), spec)
    with pytest.raises(TritongenError) as err:
        at_workable_lengths(lambda s: outputs_of(model, s, ()), spec, {"samples"})
    assert "fails on example inputs" in err.value.message and "--axis-length" in err.value.hint
