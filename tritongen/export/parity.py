"""The exported ONNX model against PyTorch: ONNX Runtime on the parity cases, compared with PyTorch's outputs (computed
in a forked child while the export ran); where only the simplified model fails, the export is put back."""

from __future__ import annotations

from pathlib import Path

from tritongen.errors import stop_if_interrupted
from tritongen.export.onnx import summarise_export_error
from tritongen.export.simplify import Simplification, restore_exported
from tritongen.runners.forked import ForkedCases
from tritongen.runners.onnxruntime import OnnxRuntimeRunner
from tritongen.spec import ModelSpec
from tritongen.verify import ParityCase, ParityReport, Tolerance, compare, run_cases


def onnx_parity(pytorch: ForkedCases, onnx_path: Path, cases: list[ParityCase], spec: ModelSpec, tolerance: Tolerance,
            simplified: Simplification | None) -> tuple[ParityReport, str | None]:
    """Parity of the ONNX model against PyTorch; where the simplified model fails it (or does not load) and the
    exported one passes, the exported one is put back: (the report, what was said about that, or None)."""
    try:
        report = _run_and_compare(pytorch, onnx_path, cases, spec, tolerance)
    except Exception as exc:
        if simplified is None or simplified.original is None:
            raise
        stop_if_interrupted(exc)
        problem = f"the simplified model does not run ({summarise_export_error(exc)})"
    else:
        if report.passed or simplified is None or simplified.original is None:
            return report, None
        problem = f"simplification changed outputs ({report.failures()})"
    restore_exported(simplified, onnx_path)
    report = _run_and_compare(pytorch, onnx_path, cases, spec, tolerance)
    return report, f"{problem}; kept the exported model" if report.passed else None


def _run_and_compare(pytorch: ForkedCases, onnx_path: Path, cases: list[ParityCase], spec: ModelSpec,
                 tolerance: Tolerance) -> ParityReport:
    """ONNX Runtime on the cases while the child may still be computing PyTorch's outputs; PyTorch's failure (a model
    that fails at the max batch) is reported before ONNX Runtime's, as when PyTorch ran first."""
    try:
        with OnnxRuntimeRunner(onnx_path) as candidate:
            actual = run_cases(candidate, cases)
    except Exception:
        pytorch.result()  # raises PyTorch's own failure, if there is one
        raise
    return compare(pytorch.result(), actual, tolerance, spec)
