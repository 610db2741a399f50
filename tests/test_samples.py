"""Example inputs from .npz files: checked against the model's inputs, batched for parity, the reference data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritongen.errors import TritongenError
from tritongen.samples import read_examples
from tritongen.spec import ModelSpec, parse_input_spec


def text_spec(max_batch_size: int = 4) -> ModelSpec:
    return ModelSpec((parse_input_spec("input_ids:sequence:int64:0-99"),
                      parse_input_spec("attention_mask:sequence:int64:mask")), max_batch_size=max_batch_size)


def save(path: Path, items: int, length: int, high: int = 99) -> Path:
    rng = np.random.default_rng(items)
    np.savez(path, input_ids=rng.integers(0, high + 1, (items, length)).astype(np.int32),
             attention_mask=np.ones((items, length), np.int64))
    return path


def test_a_folder_of_lengths_gives_batches_of_at_most_max_batch_size(tmp_path: Path) -> None:
    save(tmp_path / "a_short.npz", 6, 8)
    save(tmp_path / "b_long.npz", 3, 24)
    examples = read_examples(tmp_path, text_spec())
    batches = examples.batches(text_spec())
    assert [label for label, _ in batches] == ["examples a_short.npz items 0-3", "examples a_short.npz items 4-5",
                                               "examples b_long.npz items 0-2"]
    assert batches[0][1]["input_ids"].dtype == np.int64  # cast to the input's dtype
    reference = examples.reference(text_spec())
    assert reference["input_ids"].shape == (4, 8)


@pytest.mark.parametrize("high, arrays, words", [
    (200, None, "has values from"),
    (99, {"input_ids": np.zeros((2, 8), np.int64)}, "missing: attention_mask"),
    (99, {"input_ids": np.zeros((2, 8), np.int64), "attention_mask": np.ones((2, 9), np.int64)},
     "disagree on axis 'sequence'"),
])
def test_mistakes_name_the_file_and_what_is_wrong(tmp_path: Path, high: int, arrays: dict | None, words: str) -> None:
    if arrays is None:
        save(tmp_path / "ex.npz", 2, 8, high=high)
    else:
        np.savez(tmp_path / "ex.npz", **arrays)
    with pytest.raises(TritongenError) as err:
        read_examples(tmp_path / "ex.npz", text_spec())
    assert words in err.value.message and "ex.npz" in err.value.message and err.value.hint


def test_a_missing_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TritongenError, match="--example-inputs .* does not exist"):
        read_examples(tmp_path / "nope.npz", text_spec())
