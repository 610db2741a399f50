"""Comparing a runner's outputs with the PyTorch reference: ParityReport."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tritongen.runners.base import Runner
from tritongen.spec import ModelSpec, random_inputs


@dataclass(frozen=True)
class OutputParity:
    """Worst-case error of one output over every compared input."""

    name: str
    max_abs_err: float
    max_rel_err: float  # |a - b| / (|b| + atol): finite where the reference is zero
    passed: bool
    problem: str | None = None  # a shape or dtype mismatch, NaNs where the reference has none


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


def merge(a: OutputParity | None, b: OutputParity) -> OutputParity:
    """The worse of two comparisons of the same output."""
    if a is None:
        return b
    return OutputParity(b.name, max(a.max_abs_err, b.max_abs_err), max(a.max_rel_err, b.max_rel_err),
                        a.passed and b.passed, a.problem or b.problem)


def parity_cases(spec: ModelSpec) -> list[tuple[int | None, dict[str, int], int]]:
    """(batch, axis lengths, seed) for each comparison: batch 1, 2 and max; two lengths of each dynamic axis.

    Several seeds at the small batches, so a data-dependent branch baked in by tracing is caught.
    """
    batches: list[int | None] = sorted({b for b in (1, 2, spec.max_batch_size) if b <= spec.max_batch_size}) \
        if spec.batched else [None]
    length_sets = [{a: spec.lengths(a)[i] for a in spec.dynamic_axes} for i in (0, 1)] if spec.dynamic_axes else [{}]
    seeds_small = 3 if spec.dynamic_axes else 4
    cases = []
    seed = 100
    for lengths in length_sets:
        for batch in batches:
            repeats = 1 if (batch or 1) > 2 else seeds_small
            for _ in range(repeats):
                cases.append((batch, lengths, seed))
                seed += 1
    return cases


def parity_against(reference: Runner, candidate: Runner, spec: ModelSpec, *, atol: float, rtol: float) -> ParityReport:
    """Run both runners on fresh random inputs for every parity case and keep the worst error per output."""
    worst: dict[str, OutputParity] = {}
    names = []
    for batch, lengths, seed in parity_cases(spec):
        feeds = random_inputs(spec, batch, lengths, np.random.default_rng(seed))
        expected = reference.infer(feeds)
        actual = candidate.infer(feeds)
        for name, parity in compare_outputs(actual, expected, atol, rtol).items():
            worst[name] = merge(worst.get(name), parity)
        names.append(" ".join([f"batch={batch}"] if batch else []) + "".join(f" {a}={n}" for a, n in lengths.items())
                     + f" seed={seed}")
    ordered = tuple(worst[o.name] for o in spec.outputs if o.name in worst) or tuple(worst.values())
    return ParityReport(candidate.name, atol, rtol, ordered, tuple(n.strip() for n in names))
