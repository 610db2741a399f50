"""What a model takes and returns: inputs bound by name, outputs named, non-tensors left out, failures as one line."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tests import models
from tests.conftest import save_checkpoint
from tritongen.config import read_config
from tritongen.errors import TritongenError
from tritongen.introspect import (
    BoundModel,
    bind_inputs,
    inputs_for_program,
    inputs_of_module,
    outputs_of_module,
    tensor_outputs,
)
from tritongen.spec import ModelSpec, parse_input_spec


class Weighted(nn.Module):
    """a - 2 * b + 3 * c: swapping any two inputs changes the result."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return a - 2 * b + (3 * c if c is not None else 0)


class StarArgs(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return xs[0] - xs[1]


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


def specs(*texts: str) -> tuple:
    return tuple(parse_input_spec(t) for t in texts)


def test_module_inputs_come_from_forward_and_the_torchscript_schema() -> None:
    inputs = inputs_of_module(Weighted())
    assert inputs.names == ("a", "b", "c") and inputs.required == ("a", "b") and inputs.keywords
    scripted = inputs_of_module(torch.jit.script(models.TinyEncoder()))
    assert scripted.names == ("tokens", "mask") and scripted.required == ("tokens", "mask")
    star = inputs_of_module(StarArgs())
    assert star.positional and not star.keywords


def test_inputs_bind_by_name_in_the_models_order_whatever_the_command_line_order() -> None:
    bound = bind_inputs(inputs_of_module(Weighted()), specs("c:4:fp32", "b:4:fp32", "a:4:fp32"))
    assert [t.name for t in bound] == ["a", "b", "c"]
    # An optional input may be left out.
    assert [t.name for t in bind_inputs(inputs_of_module(Weighted()), specs("b:4:fp32", "a:4:fp32"))] == ["a", "b"]


@pytest.mark.parametrize("given, fragment", [
    (("a:4:fp32", "bee:4:fp32"), "--input 'bee' is not an input of the model (forward() takes a, b, c (optional))"),
    (("a:4:fp32",), "the model's input 'b' has no --input (forward() takes a, b, c (optional))"),
    (("a:4:fp32", "b:4:fp32", "a:4:fp32"), "--input 'a' is given twice"),
])
def test_a_wrong_name_is_refused_with_the_models_input_names(given, fragment) -> None:
    with pytest.raises(TritongenError) as err:
        bind_inputs(inputs_of_module(Weighted()), specs(*given))
    assert fragment in err.value.message and err.value.hint


def test_star_args_bind_by_position_with_a_warning() -> None:
    notes: list[str] = []
    bound = bind_inputs(inputs_of_module(StarArgs()), specs("y:4:fp32", "x:4:fp32"), notes.append)
    assert [t.name for t in bound] == ["y", "x"]
    assert len(notes) == 1 and "in the order given (y, x)" in notes[0]


def test_declared_names_hold_even_when_forward_also_takes_kwargs() -> None:
    class HuggingFaceLike(nn.Module):
        def forward(self, input_ids=None, attention_mask=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
            return input_ids

    class AnyName(nn.Module):
        def forward(self, **inputs):  # noqa: ANN003, ANN201
            return inputs["x"]

    with pytest.raises(TritongenError, match="'atention_mask' is not an input of the model"):
        bind_inputs(inputs_of_module(HuggingFaceLike()), specs("input_ids:seq:int64", "atention_mask:seq:int64"))
    notes: list[str] = []
    assert [t.name for t in bind_inputs(inputs_of_module(AnyName()), specs("x:4:fp32"), notes.append)] == ["x"]
    assert "any input name is accepted" in notes[0]


def test_the_bound_model_feeds_by_name() -> None:
    a, b, c = (torch.full((2, 4), v) for v in (1.0, 10.0, 100.0))
    model = BoundModel(Weighted(), inputs_of_module(Weighted()), ["a", "b", "c"], batched=True)
    (out,) = model(a, b, c)
    assert torch.equal(out, Weighted()(a=a, b=b, c=c))
    reordered = BoundModel(Weighted(), inputs_of_module(Weighted()), ["c", "a", "b"], batched=True)
    (same,) = reordered(c, a, b)
    assert torch.equal(same, out)


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
def test_exported_program_inputs_are_named_by_the_program() -> None:
    batch = torch.export.Dim("batch")
    ep = torch.export.export(Weighted(), (torch.zeros(2, 4), torch.zeros(2, 4)),
                             dynamic_shapes=({0: batch}, {0: batch}))
    inputs = inputs_for_program(ep, specs("b:4:fp32"), 8)
    assert [t.name for t in inputs] == ["a", "b"]
    with pytest.raises(TritongenError) as err:
        inputs_for_program(ep, specs("x:4:fp32"), 8)
    assert "--input 'x' is not an input of the model (the exported program takes a, b)" in err.value.message


@pytest.mark.slow
def test_build_binds_inputs_by_name_whatever_their_order(tmp_path, cli) -> None:
    encoder = models.TinyEncoder().eval()
    ckpt = save_checkpoint(encoder, tmp_path / "enc.pt")
    repo = tmp_path / "repo"
    result = cli("build", ckpt, "--model-class", "tests.models:TinyEncoder", "--input", "mask:seq:int64:0-1",
                 "--input", "tokens:seq:int64", "--output", "hidden", "--output", "pooled", "--repository", repo,
                 "--no-deploy", "--json")
    assert result.exit_code == 0, result.stderr
    config = read_config(repo / "enc" / "config.pbtxt")
    assert [i.name for i in config.input] == ["tokens", "mask"]  # the model's order
    tokens = np.random.default_rng(0).integers(0, 50, (3, 12))
    mask = (np.arange(12)[None, :] < np.array([[12], [7], [3]])).astype(np.int64)  # padded rows
    session = ort.InferenceSession(str(repo / "enc" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    hidden, pooled = session.run(["hidden", "pooled"], {"tokens": tokens, "mask": mask})
    with torch.no_grad():
        expected = encoder(tokens=torch.from_numpy(tokens), mask=torch.from_numpy(mask))
    np.testing.assert_allclose(hidden, expected[0].numpy(), atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(pooled, expected[1].numpy(), atol=1e-4, rtol=1e-3)

    wrong = cli("build", ckpt, "--model-class", "tests.models:TinyEncoder", "--input", "tokens:seq:int64",
                "--input", "attention_mask:seq:int64", "--repository", tmp_path / "repo2", "--no-deploy")
    assert wrong.exit_code == 2
    (line,) = [s for s in wrong.stderr.splitlines() if s.startswith("error:")]
    assert "'attention_mask' is not an input of the model (forward() takes tokens, mask)" in line


@pytest.mark.slow
def test_build_of_a_model_failing_only_at_the_max_batch_size_is_one_line(tmp_path, cli) -> None:
    ckpt = tmp_path / "fails.pt"
    torch.save(FailsAboveBatch16().state_dict(), ckpt)
    result = cli("build", ckpt, "--model-class", "tests.test_introspect:FailsAboveBatch16", "--input", "x:4:fp32",
                 "--repository", tmp_path / "repo", "--no-deploy")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = [s for s in result.stderr.splitlines() if s.startswith("error:")]
    assert "fails at another batch size or axis length (batch 32: x [32, 4] fp32)" in line
    assert not (tmp_path / "repo").exists()  # a failed build leaves no empty repository


@pytest.mark.slow
def test_build_of_a_dict_holding_none_leaves_it_out_with_a_note(tmp_path, cli) -> None:
    ckpt = tmp_path / "dict.pt"
    torch.save(DictWithNone().state_dict(), ckpt)
    result = cli("build", ckpt, "--model-class", "tests.test_introspect:DictWithNone", "--input", "x:4:fp32",
                 "--repository", tmp_path / "repo", "--no-deploy", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert [o["name"] for o in report["spec"]["outputs"]] == ["logits"]
    assert any("'past_key_values' (NoneType)" in w for w in report["warnings"])
