"""Pipelines designed from real folders: a causal language model (last-token logits, no generation), what is refused
before the export (an input no step makes, an image processor whose processing is its own)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests import hf_models
from tritongen.build import BuildOptions, build_model
from tritongen.errors import TritongenError
from tritongen.pipeline import PipelineOptions
from tritongen.repository import load_reference, read_manifest

pytestmark = pytest.mark.slow


def test_a_causal_lm_pipeline_answers_the_last_real_tokens_logits(tmp_path: Path):
    folder = hf_models.gpt2_lm(tmp_path / "gpt2", tokenizer=True)
    notes: list[str] = []
    result = build_model(BuildOptions(folder, name="lm", repository=tmp_path / "repo", max_batch_size=4, deploy=False,
                                      pipeline=PipelineOptions(enabled=True, length_buckets=())), warn=notes.append)
    assert result.pipeline["purpose"] == "last-token" and result.pipeline["answers"] == ["logits:300:fp32"]
    assert result.pipeline["parity"]["passed"]
    # GPT-2's tokenizer adds no special token: the empty string has none, is refused by the step, and not compared.
    assert any("give no token with this tokenizer" in n for n in notes)
    raw, answers = load_reference(tmp_path / "repo" / "lm" / "1")
    assert b"" not in raw["text"].reshape(-1).tolist() and answers["logits"].shape == (len(raw["text"]), 300)
    step = json.loads((tmp_path / "repo" / "lm_preprocess" / "1" / "step.json").read_text())
    assert step["buckets"] == [] and step["padding_side"] == "right" and "token_type_ids" not in step["outputs"]
    assert read_manifest(tmp_path / "repo" / "lm_postprocess" / "1")["pipeline"]["purpose"] == "last-token"
    assert np.isfinite(answers["logits"]).all()


@pytest.mark.parametrize(("inputs", "words"), [
    (("input_ids:seq:int64",), "the network takes no attention_mask"),  # padding would change its answers
    (("input_ids:seq:int64", "attention_mask:seq:int64", "position_ids:seq:int64"),
     "cannot feed the network's input 'position_ids'"),
])
def test_inputs_a_pipeline_cannot_make_right_are_refused_before_the_export(tmp_path: Path, inputs, words):
    folder = hf_models.bert_classifier(tmp_path / "bert")
    with pytest.raises(TritongenError, match=words):
        build_model(BuildOptions(folder, repository=tmp_path / "repo", deploy=False, inputs=inputs,
                                 pipeline=PipelineOptions(enabled=True)))
    assert not (tmp_path / "repo").exists()


def test_an_image_processor_that_pads_is_refused(tmp_path: Path):
    processor = {"image_processor_type": "ViTImageProcessor", "size": {"height": 32, "width": 32}, "do_pad": True,
                 "pad_size": {"height": 40, "width": 40}}
    folder = hf_models.vit_classifier(tmp_path / "vit", processor=processor)
    with pytest.raises(TritongenError, match=r"\(ViTImageProcessorPil\) pads images"):
        build_model(BuildOptions(folder, repository=tmp_path / "repo", deploy=False,
                                 pipeline=PipelineOptions(enabled=True)))


def test_an_image_processor_whose_size_is_not_the_networks_is_refused(tmp_path: Path):
    processor = {"image_processor_type": "ViTImageProcessor", "size": {"shortest_edge": 40}}  # no crop: sizes vary
    folder = hf_models.vit_classifier(tmp_path / "vit", processor=processor)
    with pytest.raises(TritongenError, match="does not give every image the network's size 32x32"):
        build_model(BuildOptions(folder, repository=tmp_path / "repo", deploy=False,
                                 pipeline=PipelineOptions(enabled=True)))
