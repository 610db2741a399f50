"""Simplifying an exported ONNX model with onnxsim, kept only when it still runs and gives the same outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritongen.export.onnx import (
    EXTERNAL_DATA_THRESHOLD,
    check_dynamic_axes,
    example_batch,
    example_lengths,
    quiet_logs,
    summarise_export_error,
)
from tritongen.spec import ModelSpec, random_inputs


@dataclass(frozen=True)
class Simplification:
    applied: bool
    message: str
    nodes_before: int = 0
    nodes_after: int = 0


def simplify_onnx(path: Path, spec: ModelSpec, *, atol: float, rtol: float) -> Simplification:
    """Simplify in place with onnxsim; keep the original when it fails or changes the outputs."""
    import onnx

    try:
        import onnxsim
    except ImportError:
        return Simplification(False, "onnxsim is not installed; kept the exported model as is")
    data_file = path.with_name(path.name + ".data")
    if data_file.exists() and data_file.stat().st_size > EXTERNAL_DATA_THRESHOLD:
        return Simplification(False, "model too large for onnxsim (> 1.5 GB of weights); kept as exported")
    original = onnx.load(str(path))
    before = len(original.graph.node)
    try:
        with quiet_logs():
            simplified, ok = onnxsim.simplify(original)
    except Exception as exc:
        return Simplification(False, f"onnxsim failed ({summarise_export_error(exc)}); kept the exported model",
                              before, before)
    if not ok:
        return Simplification(False, "onnxsim could not verify its result; kept the exported model", before, before)
    check_dynamic_axes(simplified, spec)
    candidate = path.with_name(path.stem + ".simplified.onnx")
    onnx.save_model(simplified, str(candidate))
    try:
        worst = _max_difference(path, candidate, spec)
    except Exception as exc:
        candidate.unlink(missing_ok=True)
        return Simplification(False, f"the simplified model does not run ({summarise_export_error(exc)}); "
                              "kept the exported model", before, before)
    if worst is not None:
        candidate.unlink(missing_ok=True)
        return Simplification(False, f"simplification changed outputs ({worst}); kept the exported model",
                              before, before)
    candidate.replace(path)
    data_file.unlink(missing_ok=True)  # the simplified model holds its weights inline
    return Simplification(True, f"simplified: {before} → {len(simplified.graph.node)} nodes", before,
                          len(simplified.graph.node))


def _max_difference(a: Path, b: Path, spec: ModelSpec) -> str | None:
    """Run both files on the same random inputs; describe the first output that differs beyond tolerance."""
    from tritongen.runners.onnxruntime import OnnxRuntimeRunner

    feeds = random_inputs(spec, example_batch(spec), example_lengths(spec, 1), np.random.default_rng(1))
    with OnnxRuntimeRunner(a) as ra, OnnxRuntimeRunner(b) as rb:
        out_a, out_b = ra.infer(feeds), rb.infer(feeds)
    for name, x in out_a.items():
        y = out_b.get(name)
        if y is None or y.shape != x.shape or not np.allclose(x, y, atol=1e-5, rtol=1e-4, equal_nan=True):
            return f"output '{name}' differs"
    return None
