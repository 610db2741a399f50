"""Parity with the PyTorch reference: the cases, running them, comparing the outputs, and the one tolerance rule.

Running and comparing are separate steps (as in Polygraphy's Comparator): `run_cases(runner, cases)` once per
runner, then `compare(expected, actual, tolerance)` as often as needed, so a tolerance that depends on the
measured error (INT8) costs no second run of either model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tritongen.runners.base import Runner
from tritongen.spec import ModelSpec, random_inputs

Feeds = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]

# ---------------------------------------------------------------------------------------------------------------
# Tolerances

# (atol, rtol) per target and precision. FP32 on ONNX Runtime: the build's defaults. FP16 keeps about 3 significant
# digits, and errors add up through layers. TensorRT's FP32 builds use TF32 tensor cores by default on Ampere and
# later: about 1e-3 relative error. INT8 starts from the FP32 defaults and takes the measured error (below).
DEFAULT_TOLERANCES: dict[str, dict[str, tuple[float, float]]] = {
    "onnxruntime": {"fp32": (1e-4, 1e-3), "fp16": (1e-2, 1e-2), "int8": (1e-4, 1e-3)},
    "tensorrt": {"fp32": (1e-3, 1e-3), "fp16": (1e-2, 1e-2), "int8": (1e-4, 1e-3)},
}
# validate compares the served model with PyTorch at the manifest's tolerance: for INT8 that is the error measured
# at build time, with headroom for a server that batches requests differently (dynamic quantization scales depend on
# the whole batch).
TOLERANCE_HEADROOM = 2.0


@dataclass(frozen=True)
class Tolerance:
    """|actual - expected| <= atol + rtol * |expected|, and how the numbers were chosen (for reports)."""

    atol: float
    rtol: float
    how: str = ""

    def widened_to(self, measured: float, why: str) -> Tolerance:
        """At least the measured error with headroom: for a model kept although it missed the tolerance."""
        atol = max(self.atol, round_up(measured * TOLERANCE_HEADROOM))
        return Tolerance(atol, self.rtol, f"{self.how}; widened to {atol:g} {why}")

    def to_dict(self) -> dict[str, Any]:
        return {"atol": self.atol, "rtol": self.rtol, "how": self.how}


def tolerance_for(precision: str = "fp32", target: str = "onnxruntime", user_atol: float | None = None,
                  user_rtol: float | None = None, measured: float | None = None) -> Tolerance:
    """The parity tolerance for a precision on a target (onnxruntime | tensorrt): the user's values where given.

    Quantization error is the point of INT8, so a fixed FP32-style tolerance means nothing there: the fidelity
    thresholds judge the model, and the tolerance only has to tell "this model, served" from "something else". For
    INT8 without --atol it is the `measured` max abs error × TOLERANCE_HEADROOM (never below the FP32 default);
    other precisions ignore `measured`.
    """
    table = DEFAULT_TOLERANCES.get(target, DEFAULT_TOLERANCES["onnxruntime"])
    default_atol, default_rtol = table.get(precision, table["fp32"])
    rtol = default_rtol if user_rtol is None else user_rtol
    if user_atol is not None:
        return Tolerance(user_atol, rtol, "given with --atol/--rtol")
    if precision == "int8" and measured is not None:
        return Tolerance(max(default_atol, round_up(measured * TOLERANCE_HEADROOM)), rtol,
                         f"measured INT8 error {measured:.3g} on the parity inputs × {TOLERANCE_HEADROOM:g} headroom")
    where = " for TensorRT" if target == "tensorrt" else ""
    return Tolerance(default_atol, rtol, f"{precision.upper()} defaults{where}")


def round_up(value: float) -> float:
    """Two significant digits, rounded up, so a tolerance reads well and never undercuts the measurement."""
    if value <= 0:
        return 0.0
    exponent = math.floor(math.log10(value)) - 1
    digits = math.ceil(value / 10**exponent * (1 - 1e-12))  # 31.000000000000004 is 31, not 32
    return float(f"{digits * 10**exponent:.2g}")


# ---------------------------------------------------------------------------------------------------------------
# Cases and runs


@dataclass(frozen=True)
class ParityCase:
    """One set of inputs to compare on, and its name in reports (`batch=2 seq=16 seed=3`)."""

    label: str
    feeds: Feeds = field(repr=False)


def parity_cases(spec: ModelSpec, examples: Sequence[tuple[str, Feeds]] = ()) -> list[ParityCase]:
    """Batch 1, 2 and max; two lengths of each dynamic axis; several seeds at the small batches; then the user's
    example inputs (`examples`: label and feeds), if any.

    The seeds catch a data-dependent branch that tracing baked in; the max batch catches sizes fixed in code along
    the batch axis, so it runs once, at the shorter set of lengths (each length is checked at batch 1 and 2): at the
    longer one it would cost as much as every other case together and prove nothing more. Masks pad each row to a
    different length (`spec.random_inputs`), so padding is always among the cases.
    """
    batches: list[int | None] = sorted({b for b in (1, 2, spec.max_batch_size) if b <= spec.max_batch_size}) \
        if spec.batched else [None]
    length_sets = [{a: spec.lengths(a)[i] for a in spec.dynamic_axes} for i in (0, 1)] if spec.dynamic_axes else [{}]
    shortest = min(range(len(length_sets)), key=lambda i: (math.prod(length_sets[i].values()), i))
    seeds_small = 3 if spec.dynamic_axes else 4
    cases = []
    seed = 100
    for index, lengths in enumerate(length_sets):
        for batch in batches:
            if (batch or 1) > 2 and index != shortest:
                continue
            for _ in range(1 if (batch or 1) > 2 else seeds_small):
                label = " ".join(([f"batch={batch}"] if batch else []) + [f"{a}={n}" for a, n in lengths.items()]
                                 + [f"seed={seed}"])
                cases.append(ParityCase(label, random_inputs(spec, batch, lengths, np.random.default_rng(seed))))
                seed += 1
    return cases + [ParityCase(label, feeds) for label, feeds in examples]


@dataclass(frozen=True)
class CaseOutputs:
    """What one runner returned for each case, in the order of the cases."""

    runner: str
    cases: tuple[ParityCase, ...]
    outputs: tuple[Outputs, ...]


def run_cases(runner: Runner, cases: Sequence[ParityCase]) -> CaseOutputs:
    """Run every case through an active runner, once."""
    return CaseOutputs(runner.name, tuple(cases), tuple(runner.infer(c.feeds) for c in cases))


# ---------------------------------------------------------------------------------------------------------------
# Comparing


@dataclass(frozen=True)
class OutputParity:
    """Worst-case error of one output over every compared input."""

    name: str
    max_abs_err: float
    max_rel_err: float  # |a - b| / (|b| + atol): finite where the reference is zero
    passed: bool
    problem: str | None = None  # a shape or dtype mismatch, NaNs where the reference has none
    # The largest difference at padding positions (where a mask input is 0), when the output differs only there and
    # was compared at real positions: a position that sees no real token has no defined output.
    padding_err: float | None = None
    padding_mask: str | None = None  # the mask input those positions are padding of
    exact: bool = False  # compared for equality (strings: a pipeline's labels), not within a tolerance


@dataclass(frozen=True)
class ParityReport:
    """Parity of one artifact against PyTorch, at several batch sizes and axis lengths."""

    runner: str
    atol: float
    rtol: float
    outputs: tuple[OutputParity, ...]
    cases: tuple[str, ...] = field(default_factory=tuple)  # "batch=2 seq=16 seed=3"

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        d["outputs"] = {o.name: {k: v for k, v in asdict(o).items() if k != "name"} for o in self.outputs}
        return d

    def failures(self) -> str:
        def describe(o: OutputParity) -> str:
            return o.problem or (f"max abs err {o.max_abs_err:.3g} (atol {self.atol:g}), "
                                 f"max rel err {o.max_rel_err:.3g} (rtol {self.rtol:g})")

        return "; ".join(f"{o.name}: {describe(o)}" for o in self.outputs if not o.passed)

    def notes(self) -> list[str]:
        """What the user should know although parity passed: outputs compared at real positions only."""
        return [f"{self.runner} differs from PyTorch only at padding positions of output '{o.name}' (where "
                f"'{o.padding_mask}' is 0), by up to {o.padding_err:.3g}: a position that sees no real token has no "
                "defined output, so those positions were not compared (real positions match)"
                for o in self.outputs if o.padding_err is not None]


def compare_outputs(
    actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], atol: float, rtol: float
) -> dict[str, OutputParity]:
    """Element-wise comparison with np.allclose semantics: |a - e| <= atol + rtol * |e|."""
    result = {}
    for name, exp in expected.items():
        act = actual.get(name)
        if act is None:
            result[name] = OutputParity(name, float("inf"), float("inf"), False, "missing from the outputs")
            continue
        if act.shape != exp.shape:
            result[name] = OutputParity(name, float("inf"), float("inf"), False,
                                        f"shape {list(act.shape)} but PyTorch gives {list(exp.shape)}")
            continue
        if exp.dtype == object or exp.dtype.kind in "SU":  # strings (a pipeline's labels) must be equal
            result[name] = _compare_strings(name, act, exp)
            continue
        a = act.astype(np.float64)
        e = exp.astype(np.float64)
        nan_mismatch = bool(np.any(np.isnan(a) != np.isnan(e)))
        diff = np.abs(np.where(np.isnan(e), 0.0, a - e))
        diff = np.where(np.isnan(diff), np.inf, diff)
        abs_err = float(diff.max()) if diff.size else 0.0
        rel_err = float((diff / (np.abs(np.nan_to_num(e)) + atol)).max()) if diff.size else 0.0
        ok = bool(np.all(diff <= atol + rtol * np.abs(np.nan_to_num(e)))) and not nan_mismatch
        result[name] = OutputParity(name, abs_err, rel_err, ok, "NaN where PyTorch has a number" if nan_mismatch else None)
    return result


def _compare_strings(name: str, act: np.ndarray, exp: np.ndarray) -> OutputParity:
    """Byte or text strings compared for equality; the error is the share of values that differ."""
    def text(value: object) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    a, e = [text(v) for v in act.reshape(-1)], [text(v) for v in exp.reshape(-1)]
    wrong = [i for i, (x, y) in enumerate(zip(a, e, strict=True)) if x != y]
    if not wrong:
        return OutputParity(name, 0.0, 0.0, True, exact=True)
    first = wrong[0]
    return OutputParity(name, float("inf"), len(wrong) / len(e), False,
                        f"{len(wrong)} of {len(e)} values differ (first at {first}: {a[first]!r}, expected {e[first]!r})",
                        exact=True)


def merge(a: OutputParity | None, b: OutputParity) -> OutputParity:
    """The worse of two comparisons of the same output."""
    if a is None:
        return b
    padding = [e for e in (a.padding_err, b.padding_err) if e is not None]
    return OutputParity(b.name, max(a.max_abs_err, b.max_abs_err), max(a.max_rel_err, b.max_rel_err),
                        a.passed and b.passed, a.problem or b.problem, max(padding) if padding else None,
                        a.padding_mask or b.padding_mask, a.exact or b.exact)


def real_positions(spec: ModelSpec, feeds: Feeds, output: str, shape: tuple[int, ...]) -> tuple[str, np.ndarray] | None:
    """(mask input, True where an output value belongs to a real position) for an output that runs along the padded
    axis of a mask input; None when no mask pads an axis of this output."""
    out = next((t for t in spec.outputs if t.name == output), None)
    if out is None:
        return None
    offset = 1 if spec.batched else 0
    for mask in (t for t in spec.inputs if t.role == "mask" and t.shape and isinstance(t.shape[-1], str)):
        if mask.name not in feeds or mask.shape[-1] not in out.shape or feeds[mask.name].ndim != 1 + offset:
            continue
        dim = offset + list(out.shape).index(mask.shape[-1])
        real = np.asarray(feeds[mask.name]) != 0
        view = [1] * len(shape)
        if spec.batched:
            view[0] = real.shape[0]
        view[dim] = real.shape[-1]
        if len(shape) <= dim or shape[dim] != real.shape[-1]:
            continue
        return mask.name, np.broadcast_to(real.reshape(view), shape)
    return None


def _at_real_positions(parity: OutputParity, case: ParityCase, spec: ModelSpec, act: np.ndarray, exp: np.ndarray,
                       tolerance: Tolerance) -> OutputParity:
    """A failed comparison again at real positions only: passed with the padding error noted when that is the only
    difference, else the failure as it was."""
    found = real_positions(spec, case.feeds, parity.name, exp.shape) if parity.problem is None else None
    if found is None:
        return parity
    mask, real = found
    again = compare_outputs({parity.name: np.where(real, act, 0)}, {parity.name: np.where(real, exp, 0)},
                            tolerance.atol, tolerance.rtol)[parity.name]
    if not again.passed:
        return parity
    return OutputParity(parity.name, again.max_abs_err, again.max_rel_err, True, None, parity.max_abs_err, mask)


def compare(expected: CaseOutputs, actual: CaseOutputs, tolerance: Tolerance, spec: ModelSpec | None = None
            ) -> ParityReport:
    """The worst error per output of `actual` against `expected` over every case, at `tolerance`.

    With `spec`, an output that differs only at padding positions (where a mask input of the case is 0) passes with
    that difference noted (`ParityReport.notes`); everywhere else every value is compared.
    """
    if len(expected.outputs) != len(actual.outputs):
        raise ValueError(f"{len(expected.outputs)} expected but {len(actual.outputs)} actual case outputs")
    worst: dict[str, OutputParity] = {}
    for case, exp, act in zip(actual.cases, expected.outputs, actual.outputs, strict=True):
        for name, parity in compare_outputs(act, exp, tolerance.atol, tolerance.rtol).items():
            if not parity.passed and spec is not None:
                parity = _at_real_positions(parity, case, spec, act[name], exp[name], tolerance)
            worst[name] = merge(worst.get(name), parity)
    return ParityReport(actual.runner, tolerance.atol, tolerance.rtol, tuple(worst.values()),
                        tuple(c.label for c in actual.cases))


def max_abs_error(expected: CaseOutputs, actual: CaseOutputs) -> float:
    """The largest finite |actual - expected| over every output and case (a shape mismatch fails parity anyway)."""
    errors = (p.max_abs_err for exp, act in zip(expected.outputs, actual.outputs, strict=True)
              for p in compare_outputs(act, exp, math.inf, 0.0).values())
    return max((e for e in errors if math.isfinite(e)), default=0.0)


def parity_against(reference: Runner, candidate: Runner, spec: ModelSpec, *, atol: float, rtol: float,
                   examples: Sequence[tuple[str, Feeds]] = ()) -> ParityReport:
    """Run both runners on every parity case of `spec` (and the examples) and compare at a fixed tolerance."""
    cases = parity_cases(spec, examples)
    return compare(run_cases(reference, cases), run_cases(candidate, cases), Tolerance(atol, rtol), spec)
