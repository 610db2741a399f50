"""The end-to-end check fails the build with numbers when the pipeline does not do what transformers and PyTorch do:
a tokenizer setting that differs, labels in the wrong order."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import PipelineBuilds
from tritongen.errors import CheckFailed
from tritongen.pipeline import PipelineOptions, check_pipeline, design_pipeline
from tritongen.pipeline.parity import request_sizes
from tritongen.repository import read_model_dir
from tritongen.verify import Tolerance


def test_requests_are_of_1_2_3_then_the_maximum_batch():
    assert request_sizes(24, 8) == [1, 2, 3, 8, 8, 2]
    assert request_sizes(2, 8) == [1, 1]
    assert request_sizes(5, 1) == [1, 1, 1, 1, 1]


@pytest.fixture(scope="module")
def sentiment(pipeline_builds: PipelineBuilds):
    """The built sentiment pipeline's design, its ONNX file and its PyTorch model."""
    from transformers import AutoModelForSequenceClassification

    from tritongen.runners.torch import TorchRunner

    network = read_model_dir(pipeline_builds.repository / "sentiment_model")
    manifest = network.manifest
    assert manifest is not None
    folder = pipeline_builds.sources["sentiment"]
    design = design_pipeline("sentiment", "sentiment_model", PipelineOptions(enabled=True), network.spec,
                             manifest["source"], folder, False)
    module = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    torch_model = TorchRunner(module, [t.name for t in network.spec.inputs], ["logits"], batched=True)
    return design, network.artifact_path(), torch_model, {t.name: t.dtype for t in network.spec.inputs}


@pytest.mark.slow
def test_the_built_pipeline_passes_and_keeps_references_for_every_model(sentiment, tmp_path: Path):
    design, onnx, model, dtypes = sentiment
    check = check_pipeline(design, onnx, model, dtypes, Tolerance(1e-4, 1e-3), tmp_path, print)
    assert check.report.passed and set(check.references) == set(design.models) - {design.network}
    raw, answers = check.references["sentiment"]
    assert raw["text"].shape == (24, 1) and answers["label"].shape == (24, 1)


@pytest.mark.slow
def test_a_tokenizer_setting_that_differs_fails_with_the_numbers(sentiment, tmp_path: Path):
    design, onnx, model, dtypes = sentiment
    params = {**design.preprocess.params, "truncation_side": "left"}  # transformers truncates on the right
    broken = replace(design, preprocess=replace(design.preprocess, params=params))
    with pytest.raises(CheckFailed) as err:
        check_pipeline(broken, onnx, model, dtypes, Tolerance(1e-4, 1e-3), tmp_path, print)
    message = err.value.message
    assert "the pipeline does not match transformers + PyTorch on 24 strings" in message
    # The strings past 64 tokens lose their start instead of their end, and their answers change.
    assert re.search(r"input_ids \(pre-processing\): [1-9] of 24 items differ \(first '", message)
    assert re.search(r"logits: max abs err [0-9.]+ \(atol 0.0001\)", message)


@pytest.mark.slow
def test_a_network_that_differs_from_pytorch_fails_with_the_labels_that_changed(sentiment, tmp_path: Path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    design, onnx_path, model, dtypes = sentiment
    graph = onnx.load(str(onnx_path))
    weight = next(i for i in graph.graph.initializer if i.name == "classifier.weight")
    swapped = numpy_helper.to_array(weight)[[2, 1, 0]]  # the "positive" and "negative" rows swapped
    weight.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(swapped), weight.name))
    onnx.save(graph, str(tmp_path / "model.onnx"))
    with pytest.raises(CheckFailed) as err:
        check_pipeline(design, tmp_path / "model.onnx", model, dtypes, Tolerance(1e-4, 1e-3), tmp_path / "w", print)
    assert re.search(r"label: \d+ of 24 values differ \(first at \d+: '(positive|negative)', expected '",
                     err.value.message)
    assert "(pre-processing)" not in err.value.message  # the tokens still match
