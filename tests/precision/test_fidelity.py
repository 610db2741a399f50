"""Fidelity numbers: max error as a share of each output's range, top-1 agreement, thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from tests.precision.shared import FP32, cnn_spec
from tritongen.precision.fidelity import FIDELITY_ITEMS, fidelity_feeds, fidelity_from_outputs, is_classifier_like
from tritongen.precision.options import FidelityThresholds
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name


def test_fidelity_numbers_top1_and_thresholds() -> None:
    spec = cnn_spec()
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]], np.float32)
    spec = ModelSpec(inputs=spec.inputs, outputs=(TensorSpec("output", FP32, (3,)),))
    close = logits + np.array([[0.1, 0.0, 0.0], [0.0, -1.5, 0.0]], np.float32)  # second item flips to class 2
    report = fidelity_from_outputs([{"output": logits}], [{"output": close}], spec, FidelityThresholds(0.5, 0.9),
                                   "test", 2)
    out = report.outputs[0]
    assert out.max_abs_err == pytest.approx(1.5) and out.relative_error == pytest.approx(0.5)
    assert out.top1_agreement == 0.5 and not out.passed and not report.passed
    assert "top-1 agrees with PyTorch on 50.0% of 2 items" in report.failures()
    assert is_classifier_like(TensorSpec("logits", FP32, (10,)))
    assert not is_classifier_like(TensorSpec("hidden", FP32, ("seq", 16)))
    assert not is_classifier_like(TensorSpec("ids", dtype_from_name("int64"), (10,)))


def test_fidelity_feeds_prefer_calibration_items_over_random_ones() -> None:
    spec = cnn_spec()
    reference = {"image": np.zeros((4, 3, 32, 32), np.float32)}
    calibration = [{"image": np.ones((8, 3, 32, 32), np.float32)} for _ in range(10)]
    feeds, source = fidelity_feeds(spec, reference, calibration)
    assert source == "reference inputs + calibration items" and feeds[0] is reference
    assert sum(len(f["image"]) for f in feeds[1:]) == FIDELITY_ITEMS
    feeds, source = fidelity_feeds(spec, reference, None)
    assert source == "reference inputs + random items" and sum(len(f["image"]) for f in feeds[1:]) == FIDELITY_ITEMS
