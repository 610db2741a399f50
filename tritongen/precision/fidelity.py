"""Fidelity of a converted model against PyTorch FP32: errors as a share of each output's range, top-1 agreement."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tritongen.precision.calibration import count_items
from tritongen.precision.options import FidelityThresholds
from tritongen.spec import ModelSpec, TensorSpec, random_inputs

FIDELITY_ITEMS = 64  # items the fidelity numbers are measured on, besides the reference inputs
FIDELITY_BATCH = 8  # batch of the random items, where there is no calibration data
Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class OutputFidelity:
    """How far one output of the converted model is from PyTorch's FP32 output."""

    name: str
    max_abs_err: float
    mean_abs_err: float
    relative_error: float  # max |error| / max |reference|: comparable across outputs of any scale
    top1_agreement: float | None  # share of items with the same argmax (classifier-like outputs only)
    passed: bool


@dataclass(frozen=True)
class FidelityReport:
    """Fidelity against PyTorch FP32 on the reference inputs plus calibration (or random) items."""

    items: int
    source: str
    thresholds: FidelityThresholds
    outputs: tuple[OutputFidelity, ...]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def failures(self) -> str:
        parts = []
        for o in self.outputs:
            if o.passed:
                continue
            if o.relative_error > self.thresholds.max_relative_error:
                parts.append(f"output '{o.name}' max error {o.max_abs_err:.3g} is {o.relative_error:.1%} of its range "
                             f"(allowed {self.thresholds.max_relative_error:.1%})")
            if o.top1_agreement is not None and o.top1_agreement < self.thresholds.min_top1_agreement:
                parts.append(f"output '{o.name}' top-1 agrees with PyTorch on {o.top1_agreement:.1%} of {self.items} "
                             f"items (needed {self.thresholds.min_top1_agreement:.0%})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "source": self.source, "passed": self.passed,
                "thresholds": asdict(self.thresholds),
                "outputs": {o.name: {k: v for k, v in asdict(o).items() if k != "name"} for o in self.outputs}}


def is_classifier_like(output: TensorSpec) -> bool:
    """A float output with one value per class per item: top-1 agreement means something for it."""
    return output.dtype.is_float and len(output.shape) == 1 and isinstance(output.shape[0], int) and output.shape[0] >= 2


def fidelity_from_outputs(expected: Sequence[dict[str, np.ndarray]], actual: Sequence[dict[str, np.ndarray]],
                          spec: ModelSpec, thresholds: FidelityThresholds, source: str, items: int) -> FidelityReport:
    """Fidelity from outputs already computed (one dict per feed): used for ONNX Runtime and TensorRT alike."""
    outputs = []
    for o in spec.outputs:
        # One row per item, so outputs of different axis lengths across feeds can still be compared item-wise.
        want = [_per_item(np.asarray(e[o.name]), spec).astype(np.float64) for e in expected]
        got = [_per_item(np.asarray(a[o.name]), spec).astype(np.float64) for a in actual]
        errs = [np.abs(a - e) for a, e in zip(got, want, strict=True)]
        max_err = max((float(np.nan_to_num(e, nan=np.inf).max()) for e in errs if e.size), default=0.0)
        total = sum(e.size for e in errs)
        mean_err = float(sum(float(e.sum()) for e in errs) / total) if total else 0.0
        scale = max((float(np.abs(e).max()) for e in want if e.size), default=0.0)
        relative = max_err / scale if scale > 0 else max_err
        top1 = None
        if is_classifier_like(o):
            agree = np.concatenate([np.argmax(a, axis=-1) == np.argmax(e, axis=-1) for a, e in zip(got, want,
                                                                                                   strict=True)])
            top1 = float(agree.mean()) if agree.size else None
        ok = math.isfinite(max_err) and relative <= thresholds.max_relative_error and \
            (top1 is None or top1 >= thresholds.min_top1_agreement)
        outputs.append(OutputFidelity(o.name, max_err, mean_err, relative, top1, ok))
    return FidelityReport(items, source, thresholds, tuple(outputs))


def _per_item(array: np.ndarray, spec: ModelSpec) -> np.ndarray:
    if not spec.batched:
        return array.reshape(1, *array.shape) if array.ndim else array.reshape(1, 1)
    return array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)


def fidelity_feeds(spec: ModelSpec, reference_inputs: Feeds,
                   calibration: Sequence[Feeds] | None) -> tuple[list[Feeds], str]:
    """The reference inputs plus up to FIDELITY_ITEMS more: calibration items (real data) where there are some."""
    feeds = [reference_inputs]
    if calibration:
        taken = 0
        for f in calibration:
            if taken >= FIDELITY_ITEMS:
                break
            feeds.append(f)
            taken += count_items([f], spec)
        return feeds, "reference inputs + calibration items"
    lengths = {a: spec.lengths(a)[-1] for a in spec.dynamic_axes}
    if spec.batched:
        batch = min(FIDELITY_BATCH, spec.max_batch_size)
        feeds += [random_inputs(spec, batch, lengths, np.random.default_rng(2000 + i))
                  for i in range(math.ceil(FIDELITY_ITEMS / batch))]
    else:
        feeds += [random_inputs(spec, None, lengths, np.random.default_rng(2000 + i)) for i in range(8)]
    return feeds, "reference inputs + random items"
