"""Hugging Face folders: what makes one complete, which task it is built for, and what a build of one records.

Folder and task checks read config.json only (fast). The builds are the session's tiny models (tests/hf_models.py,
built once by the `hf_builds` fixture): their interfaces, manifests and parity against transformers itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.conftest import HfBuilds
from tritongen.build import BuildOptions, build_model, plan_build
from tritongen.checkpoint import CheckpointKind, kind_of_checkpoint
from tritongen.config import read_config
from tritongen.errors import TritongenError
from tritongen.repository import load_reference, read_manifest
from tritongen.sources.hf import read_hf_folder, task_of


def folder(tmp_path: Path, architecture: str | None = "BertForSequenceClassification", weights: bool = True) -> Path:
    path = tmp_path / "model"
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "bert"} | (
        {"architectures": [architecture]} if architecture else {})))
    if weights:
        (path / "model.safetensors").write_bytes(b"")
    return path


def test_a_folder_is_told_apart_by_its_config(tmp_path: Path) -> None:
    assert kind_of_checkpoint(folder(tmp_path)) is CheckpointKind.HF_FOLDER


@pytest.mark.parametrize("make, words, hint", [
    (lambda p: folder(p, weights=False), "has config.json but no weights (model.safetensors", "never downloads"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "a folder without config.json", "save_pretrained"),
])
def test_an_incomplete_folder_says_what_is_missing(tmp_path: Path, make, words: str, hint: str) -> None:
    with pytest.raises(TritongenError) as err:
        kind_of_checkpoint(make(tmp_path))
    assert words in err.value.message and hint in err.value.hint


def test_a_missing_shard_is_named(tmp_path: Path) -> None:
    path = folder(tmp_path, weights=False)
    (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    (path / "model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(TritongenError) as err:
        read_hf_folder(path)
    assert "1 of the 2 weight shards that model.safetensors.index.json lists are missing " \
           "(model-00002-of-00002.safetensors)" in err.value.message
    assert "never downloads from the Hugging Face hub" in err.value.hint


@pytest.mark.parametrize("architecture, task", [
    ("BertForSequenceClassification", "text-classification"), ("GPT2LMHeadModel", "text-generation"),
    ("LlamaForCausalLM", "text-generation"), ("ViTForImageClassification", "image-classification"),
    ("WhisperForAudioClassification", "audio-classification"), ("Wav2Vec2ForCTC", "automatic-speech-recognition"),
    ("BertForMaskedLM", "fill-mask"), ("DistilBertModel", "feature-extraction"), (None, "feature-extraction"),
])
def test_the_task_is_the_one_the_folder_was_saved_for(tmp_path: Path, architecture: str | None, task: str) -> None:
    assert task_of(read_hf_folder(folder(tmp_path, architecture)), None).name == task


def test_generation_models_and_unknown_tasks_are_refused_with_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(TritongenError) as err:
        task_of(read_hf_folder(folder(tmp_path, "T5ForConditionalGeneration")), None)
    assert "sequence-to-sequence model" in err.value.message and "--task feature-extraction" in err.value.hint
    with pytest.raises(TritongenError, match="unknown --task 'summarize'"):
        task_of(read_hf_folder(folder(tmp_path)), "summarize")


def test_task_and_model_class_are_refused_where_they_do_not_apply(tmp_path: Path, cnn_checkpoint: Path) -> None:
    with pytest.raises(TritongenError, match="--task applies to Hugging Face model folders"):
        plan_build(BuildOptions(checkpoint=cnn_checkpoint, task="text-classification", repository=tmp_path / "r"))
    with pytest.raises(TritongenError, match="--model-class does not apply to a Hugging Face folder"):
        plan_build(BuildOptions(checkpoint=folder(tmp_path), model_class="x:Y", repository=tmp_path / "r"))
    assert plan_build(BuildOptions(checkpoint=folder(tmp_path), repository=tmp_path / "r")).name == "model"


# ------------------------------------------------------------------------------------------------ built models
@pytest.mark.slow
def test_a_bert_folder_builds_with_its_own_inputs_and_records_what_pipelines_need(hf_builds: HfBuilds) -> None:
    result = hf_builds.results["bert"]
    assert [t.describe() for t in result.spec.inputs] == [
        "input_ids:sequence:int64", "attention_mask:sequence:int64", "token_type_ids:sequence:int64"]
    assert [t.describe() for t in result.spec.outputs] == ["logits:3:fp32"]
    version = hf_builds.repository / "bert" / "1"
    manifest = read_manifest(version)
    source = manifest["source"]
    assert (source["task"], source["architecture"], source["max_length"]) == ("text-classification",
                                                                            "BertForSequenceClassification", 64)
    assert source["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert source["tokenizer"] == "tokenizer.json" and source["transformers"] == manifest["versions"]["transformers"]
    copied = version / "tritongen" / "source" / "tokenizer.json"
    assert copied.read_bytes() == (hf_builds.sources["bert"] / "tokenizer.json").read_bytes()
    assert set(source["files"]) == {"tokenizer.json", "tokenizer_config.json"}
    values = manifest["input_values"]
    assert values["input_ids"] == "0-199: the rows of embedding 'bert.embeddings.word_embeddings'"
    assert values["token_type_ids"] == "0-1: the rows of embedding 'bert.embeddings.token_type_embeddings'"
    assert manifest["checkpoint"]["kind"] == "huggingface"


@pytest.mark.slow
def test_parity_includes_padded_masks_and_the_served_model_matches_transformers(hf_builds: HfBuilds) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    inputs, _ = load_reference(hf_builds.repository / "bert" / "1")
    assert (inputs["attention_mask"] == 0).any() and (inputs["attention_mask"].sum(1) >= 1).all()
    path = hf_builds.sources["bert"]
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    texts = ["hello", "the quick brown fox jumps over the lazy dog", "triton serves models", "hello world hello"]
    batch = tokenizer(texts, padding=True, return_tensors="np")
    assert (batch["attention_mask"] == 0).any()
    model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True).eval()
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    session = ort.InferenceSession(str(hf_builds.repository / "bert" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (served,) = session.run(["logits"], {k: v.astype(np.int64) for k, v in batch.items()})
    np.testing.assert_allclose(served, expected, atol=1e-4, rtol=1e-3)
    assert np.ptp(served, axis=0).max() > 0.5  # the outputs depend on the input (initializer_range 0.3)


@pytest.mark.slow
def test_inputs_in_another_order_bind_by_name(hf_builds: HfBuilds) -> None:
    """gpt2 was built with --input attention_mask first: the config lists the model's order, and the served model
    fed by name equals transformers fed by name."""
    from transformers import AutoModelForCausalLM

    config = read_config(hf_builds.repository / "gpt2" / "config.pbtxt")
    assert [i.name for i in config.input] == ["input_ids", "attention_mask"] and [o.name for o in config.output] == [
        "logits"]
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 200, (3, 10))
    mask = (np.arange(10)[None, :] < np.array([[10], [6], [2]])).astype(np.int64)  # right-padded rows
    session = ort.InferenceSession(str(hf_builds.repository / "gpt2" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (served,) = session.run(["logits"], {"attention_mask": mask, "input_ids": ids})
    model = AutoModelForCausalLM.from_pretrained(str(hf_builds.sources["gpt2"]), local_files_only=True,
                                                 use_cache=False).eval()
    with torch.no_grad():
        expected = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    np.testing.assert_allclose(served, expected, atol=1e-4, rtol=1e-3)
    # Left padding (how decoder-only models are batched) was checked too; only positions before a row's first real
    # token differ, and the build says so precisely.
    warnings = hf_builds.results["gpt2"].warnings
    assert any("only at padding positions of output 'logits' (where 'attention_mask' is 0)" in w for w in warnings)
    assert read_manifest(hf_builds.repository / "gpt2" / "1")["spec"]["padding"] == "left"


@pytest.mark.slow
def test_a_wrong_input_name_is_refused_with_the_models_input_names(hf_builds: HfBuilds, tmp_path: Path) -> None:
    with pytest.raises(TritongenError) as err:
        build_model(BuildOptions(checkpoint=hf_builds.sources["gpt2"], repository=tmp_path / "repo", deploy=False,
                                 inputs=("input_id:sequence:int64",)))
    assert "--input 'input_id' is not an input of the model (forward() takes input_ids (optional), " \
        in err.value.message and "attention_mask (optional)" in err.value.message
    assert not (tmp_path / "repo").exists()


@pytest.mark.slow
def test_vision_and_audio_inputs_come_from_the_config(hf_builds: HfBuilds) -> None:
    specs = {n: ([t.describe() for t in r.spec.inputs], [t.name for t in r.spec.outputs])
             for n, r in hf_builds.results.items()}
    assert specs["vit"] == (["pixel_values:3x32x32:fp32"], ["logits"])
    assert specs["whisper"] == (["input_features:16x64:fp32"], ["logits"])
    assert specs["wav2vec2"] == (["input_values:samples:fp32"], ["last_hidden_state"])
    assert hf_builds.results["wav2vec2"].spec.lengths("samples") == (1600, 3200)
    assert any("also returns extract_features, not served" in w for w in hf_builds.results["wav2vec2"].warnings)
    vit = read_manifest(hf_builds.repository / "vit" / "1")["source"]
    assert vit["image_processor"] == "preprocessor_config.json" and vit["task"] == "image-classification"
    assert (hf_builds.repository / "vit" / "1" / "tritongen" / "source" / "preprocessor_config.json").is_file()


@pytest.mark.slow
def test_a_hugging_face_pt2_loads_without_trust_and_is_called_with_its_keywords(hf_builds: HfBuilds) -> None:
    result = hf_builds.results["distilbert"]
    manifest = read_manifest(hf_builds.repository / "distilbert" / "1")
    assert manifest["checkpoint"]["loaded_as"] == "torch.export program"  # no --trust-checkpoint needed
    assert [t.name for t in result.spec.inputs] == ["input_ids", "attention_mask"]
    assert result.spec.inputs[0].value_range == (0, 199) and result.spec.inputs[1].role == "mask"
    assert [t.name for t in result.spec.outputs] == ["last_hidden_state"]  # the ModelOutput's key


@pytest.mark.slow
def test_example_inputs_are_checked_and_become_the_reference(hf_builds: HfBuilds) -> None:
    parity = hf_builds.results["encoder"].artifacts[0].parity
    assert [c for c in parity.cases if c.startswith("examples")] == [
        "examples len24.npz items 0-2", "examples len8.npz items 0-4"]
    inputs, _ = load_reference(hf_builds.repository / "encoder" / "1")
    with np.load(hf_builds.examples / "len24.npz") as first:
        assert np.array_equal(inputs["tokens"], first["tokens"]) and np.array_equal(inputs["mask"], first["mask"])
    manifest = read_manifest(hf_builds.repository / "encoder" / "1")
    assert manifest["checkpoint"]["kind"] == "safetensors" and manifest["example_inputs"] == str(
        hf_builds.examples.resolve())


@pytest.mark.slow
def test_a_task_whose_head_the_folder_lacks_is_refused(hf_builds: HfBuilds, tmp_path: Path) -> None:
    with pytest.raises(TritongenError) as err:
        build_model(BuildOptions(checkpoint=hf_builds.sources["wav2vec2"], task="audio-classification",
                                 repository=tmp_path / "repo", deploy=False))
    assert "has no weights for" in err.value.message and "which would answer at random" in err.value.message


class Payload:
    """Unpickling this creates the marker file: what a hostile pytorch_model.bin would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_pytorch_model_bin_is_read_without_running_pickle_code(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    from tritongen.checkpoint import load_checkpoint

    model = BertModel(BertConfig(vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=128, max_position_embeddings=64)).eval()
    path = tmp_path / "bin"
    model.config.save_pretrained(str(path))
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    loaded = load_checkpoint(path)
    assert loaded.how == "BertModel (feature-extraction) from pytorch_model.bin"
    assert loaded.source["weights_format"] == "pytorch_model.bin"
    marker = tmp_path / "pwned"
    torch.save({"embeddings.word_embeddings.weight": Payload(marker)}, path / "pytorch_model.bin")
    with pytest.raises(TritongenError, match="transformers cannot load"):
        load_checkpoint(path)
    assert not marker.exists()
