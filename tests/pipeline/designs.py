"""A pipeline design written out by hand (no model, no transformers): for the tests of configs and formats."""

from __future__ import annotations

from pathlib import Path

from tritongen.pipeline.design import NETWORK_TENSOR, PipelineDesign, StepDesign
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name

INT64, FP32, BYTES = dtype_from_name("int64"), dtype_from_name("fp32"), dtype_from_name("bytes")


def toy_design(name: str = "toy", max_batch_size: int = 4) -> PipelineDesign:
    """A text classifier: text -> input_ids, attention_mask -> logits (3 classes) -> label, score, logits."""
    ids, mask = TensorSpec("input_ids", INT64, ("sequence",)), TensorSpec("attention_mask", INT64, ("sequence",))
    logits = TensorSpec("logits", FP32, (3,))
    network = ModelSpec(inputs=(ids, mask), outputs=(logits,), max_batch_size=max_batch_size)
    pre = StepDesign("preprocess", f"{name}_preprocess",
                     ModelSpec((TensorSpec("text", BYTES, (1,)),), (ids, mask), max_batch_size), "text",
                     {"input": "text", "tokenizer": "tokenizer.json", "max_length": 8, "buckets": [8],
                      "pad_token_id": 0, "outputs": {"input_ids": "ids", "attention_mask": "mask"},
                      "dtypes": {"input_ids": "int64", "attention_mask": "int64"}},
                     {"tokenizer.json": "{}"})
    answers = (TensorSpec("label", BYTES, (1,)), TensorSpec("score", FP32, (1,)), logits)
    post = StepDesign("postprocess", f"{name}_postprocess", ModelSpec((logits,), answers, max_batch_size), "post",
                      {"task": "classification", "source": "logits", "labels": ["a", "b", "c"], "top_k": 0,
                       "inputs": ["logits"]})
    spec = ModelSpec((TensorSpec("text", BYTES, (1,)),), answers, max_batch_size)
    assert NETWORK_TENSOR.format("logits") == "network_logits"
    return PipelineDesign(name, "text", "text-classification", "classification", f"{name}_model", network, pre, post,
                          spec, Path("/nonexistent"), False)
