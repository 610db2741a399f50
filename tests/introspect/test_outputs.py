"""Outputs: tensors named by their keys, non-tensors left out with a note, --output selecting by key, one-line failures."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
from torch import nn

from tritongen.errors import TritongenError
from tritongen.introspect import (
    BoundModel,
    inputs_of_module,
    outputs_of_module,
    select_outputs,
    selected_outputs,
    tensor_outputs,
)
from tritongen.spec import ModelSpec, parse_input_spec


def specs(*texts: str) -> tuple:
    return tuple(parse_input_spec(t) for t in texts)


class DictWithNone(nn.Module):
    """Returns a dict holding None next to the tensor (a cache that is off), as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        return {"logits": self.linear(x), "past_key_values": None}


class FailsAboveBatch16(nn.Module):
    """Runs at small batches; fails at the max batch size (32), which only parity reaches."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 16:
            raise ValueError("this model handles at most 16 items")
        return self.linear(x)


def test_non_tensor_outputs_are_left_out_and_named() -> None:
    pair = namedtuple("pair", "first second")
    result = {"logits": torch.zeros(1), "cache": None, "extra": (torch.ones(1), "text"), "p": pair(torch.ones(1), 3)}
    pairs, skipped = tensor_outputs(result)
    assert [k for k, _ in pairs] == ["logits", "extra_0", "p_first"]
    assert skipped == ["'cache' (NoneType)", "'extra_1' (str)", "'p_second' (int)"]


def test_a_dict_holding_none_gives_its_tensor_outputs_and_one_note() -> None:
    spec = ModelSpec(specs("x:4:fp32"), max_batch_size=8)
    notes: list[str] = []
    outputs = outputs_of_module(DictWithNone(), spec, (), notes.append)
    assert [o.name for o in outputs] == ["logits"] and outputs[0].shape == (2,)
    assert notes == ["forward() also returns values that are not tensors, left out of the outputs: "
                     "'past_key_values' (NoneType)"]


def test_a_model_returning_no_tensor_is_one_clear_error() -> None:
    class Nothing(nn.Module):
        def forward(self, x: torch.Tensor) -> None:
            return None

    with pytest.raises(TritongenError, match="forward\\(\\) returns no tensors"):
        outputs_of_module(Nothing(), ModelSpec(specs("x:4:fp32"), max_batch_size=8))


def test_a_failure_at_another_batch_size_names_it() -> None:
    model = BoundModel(FailsAboveBatch16(), inputs_of_module(FailsAboveBatch16()), ["x"], batched=True)
    model(torch.zeros(2, 4))
    with pytest.raises(TritongenError) as err:
        model(torch.zeros(32, 4))
    assert "the model runs at batch 2 but fails at another batch size or axis length (batch 32: x [32, 4] fp32)" \
        in err.value.message
    assert "ValueError: this model handles at most 16 items" in err.value.message and "--max-batch-size" in err.value.hint


@pytest.mark.slow
def test_build_of_a_model_failing_only_at_the_max_batch_size_is_one_line(tmp_path, cli) -> None:
    ckpt = tmp_path / "fails.pt"
    torch.save(FailsAboveBatch16().state_dict(), ckpt)
    result = cli("build", ckpt, "--model-class", "tests.introspect.test_outputs:FailsAboveBatch16", "--input", "x:4:fp32",
                 "--repository", tmp_path / "repo", "--no-deploy")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = [s for s in result.stderr.splitlines() if s.startswith("error:")]
    assert "fails at another batch size or axis length (batch 32: x [32, 4] fp32)" in line
    assert not (tmp_path / "repo").exists()  # a failed build leaves no empty repository


@pytest.mark.slow
def test_build_of_a_dict_holding_none_leaves_it_out_with_a_note(tmp_path, cli) -> None:
    ckpt = tmp_path / "dict.pt"
    torch.save(DictWithNone().state_dict(), ckpt)
    result = cli("build", ckpt, "--model-class", "tests.introspect.test_outputs:DictWithNone", "--input", "x:4:fp32",
                 "--repository", tmp_path / "repo", "--no-deploy", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert [o["name"] for o in report["spec"]["outputs"]] == ["logits"]
    assert any("'past_key_values' (NoneType)" in w for w in report["warnings"])


class Cache:
    """Not a tensor, nor a container of them: what a Hugging Face model returns as its key/value cache."""

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state


class WithCache(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict:
        logits = self.linear(x)
        return {"logits": logits, "probs": logits.softmax(-1), "cache": Cache(logits)}


def test_output_names_select_outputs_by_key_in_the_models_order() -> None:
    spec = ModelSpec(specs("x:4:fp32"), max_batch_size=8)
    model = BoundModel(WithCache(), inputs_of_module(WithCache()), ["x"], batched=True)
    outputs, selection = select_outputs(model, spec, ("probs",))
    assert [o.name for o in outputs] == ["probs"] and selection.chosen == (1,) and not selection.whole
    (probs,) = model.selecting(selection)(torch.ones(2, 4))
    assert torch.allclose(probs.sum(-1), torch.ones(2))
    with pytest.raises(TritongenError) as err:
        select_outputs(model, spec, ("logit",))
    assert "--output 'logit' is not an output of the model (it returns logits, probs)" in err.value.message


def test_a_cache_object_is_left_out_with_a_note_and_preferred_outputs_are_served() -> None:
    spec = ModelSpec(specs("x:4:fp32"), max_batch_size=8)
    model = BoundModel(WithCache(), inputs_of_module(WithCache()), ["x"], batched=True)
    notes: list[str] = []
    outputs, selection = select_outputs(model, spec, (), notes.append, preferred=("logits", "pooler_output"))
    assert [o.name for o in outputs] == ["logits"] and not selection.whole
    assert notes == ["forward() also returns values that are not tensors, left out of the outputs: 'cache' (Cache)",
                     "the model also returns probs, not served (choose outputs with --output NAME)"]


def test_the_selected_outputs_module_returns_only_them() -> None:
    spec = ModelSpec(specs("x:4:fp32"), max_batch_size=8)
    model = BoundModel(WithCache(), inputs_of_module(WithCache()), ["x"], batched=True)
    _, selection = select_outputs(model, spec, ("logits",))
    wrapper = selected_outputs(model.selecting(selection))
    x = torch.randn(3, 4)
    (logits,) = wrapper(x)
    assert torch.equal(logits, wrapper.model(x=x)["logits"])


@pytest.mark.slow
def test_build_of_a_model_returning_a_cache_object_serves_its_tensors(tmp_path, cli) -> None:
    ckpt = tmp_path / "cache.pt"
    torch.save(WithCache().state_dict(), ckpt)
    result = cli("build", ckpt, "--model-class", "tests.introspect.test_outputs:WithCache", "--input", "x:4:fp32",
                 "--repository", tmp_path / "repo", "--no-deploy", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert [o["name"] for o in report["spec"]["outputs"]] == ["logits", "probs"]
    assert any("'cache' (Cache)" in w for w in report["warnings"])
    assert report["artifacts"][0]["parity"]["passed"]
