"""Value domains: the embedding table an input really indexes, masks and positions, names only as the fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tritongen.introspect import bound_model, with_value_domains
from tritongen.spec import ModelSpec, parse_input_spec, random_inputs


class TwoTables(nn.Module):
    """Tokens index 1000 rows, types 3; the 1-row table (RoBERTa's token types) is indexed by nothing given."""

    def __init__(self) -> None:
        super().__init__()
        self.words = nn.Embedding(1000, 8)
        self.types = nn.Embedding(3, 8)
        self.unused = nn.Embedding(1, 8)

    def forward(self, tokens: torch.Tensor, kinds: torch.Tensor, attention_mask: torch.Tensor,
                shifted: torch.Tensor) -> torch.Tensor:
        x = self.words(tokens) + self.types(kinds) + self.words(shifted + 1) + self.unused(torch.zeros_like(tokens))
        return x * attention_mask.unsqueeze(-1)


def spec_of(*texts: str, **kwargs) -> ModelSpec:
    return ModelSpec(tuple(parse_input_spec(t) for t in texts), max_batch_size=8, **kwargs)


def test_each_input_gets_the_rows_of_the_table_it_indexes() -> None:
    spec = spec_of("tokens:seq:int64", "kinds:seq:int64", "attention_mask:seq:int64", "shifted:seq:int64")
    traced, sources = with_value_domains(bound_model(TwoTables(), spec), spec)
    by_name = {t.name: t for t in traced.inputs}
    assert by_name["tokens"].value_range == (0, 999)  # not the smallest table (1 row)
    assert by_name["kinds"].value_range == (0, 2)
    assert by_name["attention_mask"].role == "mask" and by_name["attention_mask"].value_range is None
    # Reaching a table only through arithmetic is not indexing it: below the smallest table, which any table takes.
    assert by_name["shifted"].value_range == (0, 0)
    assert sources["tokens"] == "0-999: the rows of embedding 'words'"
    assert sources["attention_mask"] == "mask (from its name)"
    assert "reaches none directly" in sources["shifted"]


def test_what_input_gives_is_kept() -> None:
    spec = spec_of("tokens:seq:int64:5-9", "kinds:seq:int64", "attention_mask:seq:int64:0-1", "shifted:seq:int64")
    traced, sources = with_value_domains(bound_model(TwoTables(), spec), spec)
    by_name = {t.name: t for t in traced.inputs}
    assert by_name["tokens"].value_range == (5, 9) and sources["tokens"].startswith("declared")
    assert by_name["attention_mask"].value_range == (0, 1) and by_name["attention_mask"].role is None


def test_a_torchscript_module_falls_back_to_the_smallest_table() -> None:
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words, self.small = nn.Embedding(50, 4), nn.Embedding(7, 4)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.words(tokens) + self.small(tokens % 7)

    spec = spec_of("tokens:seq:int64")
    scripted = torch.jit.script(Tokens())
    traced, _ = with_value_domains(bound_model(scripted, spec), spec)
    assert traced.inputs[0].value_range == (0, 6)


@pytest.mark.slow
def test_an_exported_program_names_the_table_in_its_graph() -> None:
    batch = torch.export.Dim("batch")
    module = TwoTables().eval()
    ids = tuple(torch.zeros(2, 5, dtype=torch.long) for _ in range(4))  # distinct: export merges aliased inputs
    ep = torch.export.export(module, ids, dynamic_shapes=({0: batch},) * 4)
    spec = spec_of("tokens:seq:int64", "kinds:seq:int64", "attention_mask:seq:int64", "shifted:seq:int64")
    traced, sources = with_value_domains(bound_model(ep.module(), spec, ep), spec, ep)
    by_name = {t.name: t for t in traced.inputs}
    assert by_name["tokens"].value_range == (0, 999) and by_name["kinds"].value_range == (0, 2)
    assert by_name["attention_mask"].role == "mask"
    assert by_name["shifted"].value_range == (0, 0)  # the example input's own range: zeros
    assert "the rows of the embedding the program indexes" in sources["tokens"]


def test_masks_pad_rows_to_different_lengths_with_a_real_token_each() -> None:
    spec = spec_of("ids:seq:int64", "mask:seq:int64:mask", "other_mask:seq:bool:mask", "pos:seq:int64:positions")
    feeds = random_inputs(spec, 32, {"seq": 16}, np.random.default_rng(0))
    mask = feeds["mask"]
    lengths = mask.sum(1)
    assert mask.dtype == np.int64 and lengths.min() >= 1 and lengths[0] == 16 and len(set(lengths)) > 4
    assert all((row[:n] == 1).all() and (row[n:] == 0).all() for row, n in zip(mask, lengths, strict=True))
    assert (feeds["other_mask"] == mask.astype(bool)).all()  # masks on one axis agree
    assert (feeds["pos"] == np.arange(16)).all()
    left = random_inputs(spec_of("mask:seq:int64:mask", padding="left"), 8, {"seq": 6}, np.random.default_rng(1))["mask"]
    assert all((row[6 - n:] == 1).all() and (row[:6 - n] == 0).all() for row, n in zip(left, left.sum(1), strict=True))
