"""safetensors weights for a Hugging Face class named by --model-class: configured by the config.json beside them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import HfBuilds
from tritongen.checkpoint import load_checkpoint
from tritongen.errors import TritongenError

pytestmark = pytest.mark.slow  # transformers models


def test_weights_load_into_the_class_with_the_config_beside_them(hf_builds: HfBuilds, tmp_path: Path) -> None:
    weights = hf_builds.sources["gpt2"] / "model.safetensors"
    loaded = load_checkpoint(weights, model_class="transformers:GPT2LMHeadModel")
    assert loaded.how == "safetensors weights into GPT2LMHeadModel (config.json beside it)"
    assert loaded.module.config.use_cache is False  # a cache object is not a tensor Triton can serve
    ids = torch.arange(6).reshape(1, 6)
    out = loaded.module(input_ids=ids)
    assert list(out.keys()) == ["logits"]


def test_without_a_config_the_class_cannot_be_built(hf_builds: HfBuilds, tmp_path: Path) -> None:
    weights = shutil.copy(hf_builds.sources["gpt2"] / "model.safetensors", tmp_path / "weights.safetensors")
    with pytest.raises(TritongenError) as err:
        load_checkpoint(Path(weights), model_class="transformers:GPT2LMHeadModel")
    assert "needs its config: there is no config.json beside" in err.value.message and "--model-kwargs" in err.value.hint


def test_weights_of_another_class_are_refused(hf_builds: HfBuilds) -> None:
    with pytest.raises(TritongenError, match="do not match BertForSequenceClassification"):
        load_checkpoint(hf_builds.sources["gpt2"] / "model.safetensors",
                        model_class="transformers:BertForSequenceClassification")
