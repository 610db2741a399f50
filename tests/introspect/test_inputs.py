"""Inputs bound by name: forward() and TorchScript names, exported programs called as they were exported."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tests import models
from tests.conftest import save_checkpoint
from tritongen.config import read_config
from tritongen.errors import TritongenError
from tritongen.introspect import BoundModel, bind_inputs, inputs_for_program, inputs_of_module, inputs_of_program
from tritongen.spec import parse_input_spec


class Weighted(nn.Module):
    """a - 2 * b + 3 * c: swapping any two inputs changes the result."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return a - 2 * b + (3 * c if c is not None else 0)


class StarArgs(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return xs[0] - xs[1]


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


class ByKeyword(nn.Module):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return input_ids.float() * 10 + attention_mask.float()


@pytest.mark.slow
def test_a_program_exported_with_keyword_inputs_is_called_with_them() -> None:
    batch = torch.export.Dim("batch")
    ids, mask = torch.arange(8).reshape(2, 4), torch.ones(2, 4, dtype=torch.long)
    ep = torch.export.export(ByKeyword(), (), {"attention_mask": mask, "input_ids": ids},
                             dynamic_shapes={"attention_mask": {0: batch}, "input_ids": {0: batch}})
    inputs = inputs_of_program(ep)
    assert inputs.names == ("attention_mask", "input_ids") and inputs.keyword_names == inputs.names
    model = BoundModel(ep.module(), inputs, ["attention_mask", "input_ids"], batched=True)
    (out,) = model(mask, ids)  # positionally, as a program's module would be called, it fails
    assert torch.equal(out, ByKeyword()(input_ids=ids, attention_mask=mask))
    specs_ = inputs_for_program(ep, (), 8)
    assert [t.name for t in specs_] == ["attention_mask", "input_ids"]


@pytest.mark.slow
def test_a_program_with_nested_inputs_is_refused_in_one_line() -> None:
    class Pair(nn.Module):
        def forward(self, pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            return pair[0] + pair[1]

    ep = torch.export.export(Pair(), ((torch.zeros(2, 3), torch.zeros(2, 3)),))
    with pytest.raises(TritongenError, match="nested inputs"):
        inputs_of_program(ep)
