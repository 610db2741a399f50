"""safetensors weights: the header checked before anything is read, loaded into --model-class strictly."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests import models
from tritongen.checkpoint import CheckpointKind, kind_of_checkpoint, load_checkpoint
from tritongen.errors import TritongenError


def weights(tmp_path: Path, module: torch.nn.Module | None = None, name: str = "weights.safetensors") -> Path:
    path = tmp_path / name
    save_file((module or models.TinyEncoder()).state_dict(), str(path))
    return path


def test_a_safetensors_file_is_told_apart_and_loads_into_the_model_class(tmp_path: Path) -> None:
    module = models.TinyEncoder()
    path = weights(tmp_path, module)
    assert kind_of_checkpoint(path) is CheckpointKind.SAFETENSORS
    loaded = load_checkpoint(path, model_class="tests.models:TinyEncoder")
    assert loaded.how == "safetensors weights into tests.models:TinyEncoder"
    for (name, a), b in zip(loaded.module.state_dict().items(), module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_without_a_model_class_it_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(TritongenError) as err:
        load_checkpoint(weights(tmp_path))
    assert "is a safetensors file" in err.value.message and "--model-class" in err.value.hint


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TritongenError, match="does not match tests.models:TinyEncoder"):
        load_checkpoint(weights(tmp_path, models.SmallCNN()), model_class="tests.models:TinyEncoder")


@pytest.mark.parametrize("damage, words", [
    (lambda data: data[:-10], "lies outside the file"),
    (lambda data: struct.pack("<Q", 1 << 40) + data[8:], "its header claims"),
    (lambda data: data[:8] + b"{not json" + data[17:], "header is not JSON"),
])
def test_a_damaged_file_is_one_clear_error(tmp_path: Path, damage, words: str) -> None:
    path = weights(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(TritongenError) as err:
        kind_of_checkpoint(path)
    assert words in err.value.message


def test_a_header_without_the_suffix_is_still_safetensors(tmp_path: Path) -> None:
    path = weights(tmp_path, name="weights.bin")
    assert kind_of_checkpoint(path) is CheckpointKind.SAFETENSORS
    header = json.loads(path.read_bytes()[8:8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])
    assert "embed.weight" in header
