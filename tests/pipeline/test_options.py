"""`build --pipeline` options: refused before anything is loaded when the pipeline cannot be built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritongen.errors import TritongenError
from tritongen.pipeline.options import PipelineOptions, parse_length_buckets
from tritongen.plan import BuildOptions, plan_build


def folder(tmp_path: Path, architecture: str = "BertForSequenceClassification", files: tuple[str, ...] = (
        "tokenizer.json", "tokenizer_config.json"), labels: int = 3) -> Path:
    """A Hugging Face folder as far as planning reads it: config.json, a weights file, preprocessing files."""
    path = tmp_path / "folder"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": [architecture],
                                                  "id2label": {str(i): f"l{i}" for i in range(labels)}}))
    (path / "model.safetensors").write_bytes(b"")
    for name in files:
        (path / name).write_text("{}")
    return path


def plan(checkpoint: Path, tmp_path: Path, **fields: object):
    pipeline = fields.pop("pipeline", PipelineOptions(enabled=True))
    return plan_build(BuildOptions(checkpoint=checkpoint, repository=tmp_path / "repo", deploy=False,
                                   pipeline=pipeline, **fields))


def test_a_pipeline_plans_the_network_its_steps_and_the_ensemble_under_the_name(tmp_path: Path):
    built = plan(folder(tmp_path), tmp_path, name="sentiment")
    assert [(t.format.name, t.model, t.version) for t in built.targets] == [
        ("onnx", "sentiment_model", 1), ("preprocess", "sentiment_preprocess", 1),
        ("postprocess", "sentiment_postprocess", 1), ("ensemble", "sentiment", 1)]


@pytest.mark.parametrize(("setup", "fields", "words"), [
    ({}, {"pipeline": PipelineOptions(top_k=2)}, "--top-k applies to pipelines"),
    ({}, {"pipeline": PipelineOptions(length_buckets=(8,))}, "--length-buckets applies to pipelines"),
    ({"architecture": "BertForMaskedLM"}, {}, "a pipeline for the task fill-mask is not supported"),
    ({"files": ()}, {}, "has no tokenizer"),
    ({"architecture": "ViTForImageClassification", "files": ()}, {}, "has no image processor"),
    ({}, {"formats": ("onnx", "python")}, "one network of format onnx or python"),
    ({}, {"formats": ("tensorrt",)}, "one network of format onnx or python"),
    ({}, {"max_batch_size": 0}, "--max-batch-size must be at least 1"),
    ({"architecture": "BertModel"}, {"pipeline": PipelineOptions(enabled=True, top_k=1)}, "--top-k applies to classif"),
    ({}, {"pipeline": PipelineOptions(enabled=True, top_k=4)}, "--top-k 4 is outside 1..3"),
    ({}, {"pipeline": PipelineOptions(enabled=True, normalize=True)}, "--normalize applies to feature-extraction"),
    ({"architecture": "ViTForImageClassification", "files": ("preprocessor_config.json",)},
     {"pipeline": PipelineOptions(enabled=True, length_buckets=(8,))}, "--length-buckets applies to text pipelines"),
])
def test_a_pipeline_that_cannot_be_built_is_refused_before_loading(tmp_path: Path, setup: dict, fields: dict,
                                                                   words: str):
    with pytest.raises(TritongenError, match=words):
        plan(folder(tmp_path, **setup), tmp_path, **fields)


def test_a_pipeline_needs_a_hugging_face_folder(tmp_path: Path):
    import torch

    from tests.models import SmallCNN

    checkpoint = tmp_path / "model.pt"
    torch.save(SmallCNN().state_dict(), checkpoint)
    with pytest.raises(TritongenError, match="builds from a Hugging Face folder"):
        plan(checkpoint, tmp_path, model_class="tests.models:SmallCNN", inputs=("image:3x32x32:fp32",))


def test_length_buckets_parse_or_name_the_mistake():
    assert parse_length_buckets("32,8,16,8") == (8, 16, 32)
    assert parse_length_buckets("none") == () and parse_length_buckets(None) is None
    for bad in ("", "8,x", "0,8"):
        with pytest.raises(TritongenError, match="malformed --length-buckets"):
            parse_length_buckets(bad)
