"""The precision step `build` calls: convert the FP32 ONNX model, check it against PyTorch, time it, report."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import CheckFailed, TritongenError
from tritongen.precision.calibration import calibration_for, count_items
from tritongen.precision.convert import (
    fp16_from_onnx,
    int8_dynamic_from_onnx,
    int8_static_from_onnx,
    model_bytes,
    model_files,
    probe_in_subprocess,
)
from tritongen.precision.fidelity import fidelity_feeds, fidelity_from_outputs
from tritongen.precision.options import PrecisionOptions, quantization_record
from tritongen.precision.report import PrecisionReport
from tritongen.precision.speed import speed_before_after
from tritongen.runners.base import CastingRunner, Runner, cast_feeds
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name
from tritongen.verify import (
    ParityCase,
    ParityReport,
    compare,
    max_abs_error,
    parity_cases,
    run_cases,
    tolerance_for,
)

# Extra ops kept in FP32 when ONNX Runtime cannot load the first FP16 conversion (tried in order).
FP16_FALLBACK_BLOCKS: tuple[tuple[str, ...], ...] = ((), ("Transpose",), ("Transpose", "Reshape", "LayerNormalization"))
Note = Callable[[str], None]
Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class PrecisionResult:
    """The converted model and everything `build` needs to ship it."""

    path: Path
    files: tuple[Path, ...]
    spec: ModelSpec  # input/output dtypes of the converted model (FP16 with --fp16-io)
    parity: ParityReport
    report: PrecisionReport
    atol: float
    rtol: float


def spec_for_io(spec: ModelSpec, fp16_io: bool) -> ModelSpec:
    """The spec of the served model: float32 inputs and outputs become float16 with --fp16-io."""
    if not fp16_io:
        return spec
    fp16 = dtype_from_name("fp16")

    def convert(t: TensorSpec) -> TensorSpec:
        return replace(t, dtype=fp16) if t.dtype.short == "fp32" else t

    return replace(spec, inputs=tuple(convert(t) for t in spec.inputs), outputs=tuple(convert(t) for t in spec.outputs))


def onnx_with_precision(onnx_path: Path, spec: ModelSpec, reference: Runner, options: PrecisionOptions,
                        work_dir: Path, reference_inputs: Feeds, *, atol: float | None = None,
                        rtol: float | None = None, note: Note | None = None,
                        step: Callable[[str], Any] | None = None,
                        calibration: tuple[list[Feeds], dict[str, Any]] | None = None) -> PrecisionResult:
    """Convert the FP32 model at `onnx_path` to `options.precision` under `work_dir`, check it, and report.

    Both models run once on the fidelity items and once on the parity cases; the tolerance (which for INT8 follows
    the measured error) and the comparison come after. Raises CheckFailed when the converted model is further from
    PyTorch than the thresholds allow (unless `options.accept_fidelity`), and TritongenError when it cannot be
    converted or loaded. `calibration` is what `calibration_for` returned, when the caller already has it
    (TensorRT calibrates on the same data).
    """
    say = note or (lambda _msg: None)
    stepper = step or (lambda _desc: contextlib.nullcontext())
    notes: list[str] = []

    def remember(msg: str) -> None:
        notes.append(msg)
        say(msg)

    work_dir.mkdir(parents=True, exist_ok=True)
    dest = work_dir / "model.onnx"
    served = spec_for_io(spec, options.fp16_io)
    served_dtypes = {t.name: t.dtype for t in served.inputs}
    ref = CastingRunner(reference, {t.name: t.dtype for t in spec.inputs})
    probe_feeds = cast_feeds(reference_inputs, served_dtypes)
    calibration_feeds, calibration_info = _convert(onnx_path, dest, spec, options, probe_feeds, stepper, remember,
                                                   calibration)

    from tritongen.runners.onnxruntime import OnnxRuntimeRunner

    feeds, source = fidelity_feeds(served, probe_feeds, [cast_feeds(f, served_dtypes) for f in calibration_feeds])
    fidelity_cases = [ParityCase(f"fidelity items {i}", f) for i, f in enumerate(feeds)]
    cases = parity_cases(served)
    with stepper("measuring fidelity against PyTorch FP32"), OnnxRuntimeRunner(dest) as candidate:
        fidelity_expected, fidelity_actual = run_cases(ref, fidelity_cases), run_cases(candidate, fidelity_cases)
        expected, actual = run_cases(ref, cases), run_cases(candidate, cases)
    fidelity = fidelity_from_outputs(fidelity_expected.outputs, fidelity_actual.outputs, served, options.thresholds,
                                     source, count_items(feeds, served))
    measured = max_abs_error(expected, actual)
    tolerance = tolerance_for(options.precision, "onnxruntime", atol, rtol, measured)
    parity = compare(expected, actual, tolerance)

    accepted = False
    failed = [] if fidelity.passed else [fidelity.failures()]
    if not parity.passed:
        failed.append(f"parity at atol {tolerance.atol:g} / rtol {tolerance.rtol:g}: {parity.failures()}")
    if failed:
        if not options.accept_fidelity:
            raise CheckFailed(
                f"the {options.precision.upper()} model is too far from PyTorch FP32: " + "; ".join(failed),
                _fidelity_hint(options))
        accepted = True
        remember(f"the {options.precision.upper()} model is below the fidelity threshold and was kept because of "
                 f"--accept-fidelity: " + "; ".join(failed))
        if not parity.passed:
            # validate compares the served model with PyTorch at the manifest's tolerance: widen it to what was seen.
            tolerance = tolerance.widened_to(measured, "after --accept-fidelity")
            parity = compare(expected, actual, tolerance)

    speed = None
    if options.measure_speed:
        with stepper("timing ONNX Runtime before and after"):
            speed = speed_before_after(onnx_path, dest, spec)
    report = PrecisionReport(
        precision=options.precision, method=options.method, io="fp16" if options.fp16_io else "fp32",
        size_before=model_bytes(onnx_path), size_after=model_bytes(dest), fidelity=fidelity,
        tolerance=tolerance.to_dict(), calibration=calibration_info, speed=speed,
        quantization=quantization_record(options), accepted_below_threshold=accepted, notes=tuple(notes))
    return PrecisionResult(dest, model_files(dest), served, parity, report, tolerance.atol, tolerance.rtol)


def _convert(onnx_path: Path, dest: Path, spec: ModelSpec, options: PrecisionOptions, probe_feeds: Feeds,
             stepper: Callable[[str], Any], remember: Note,
             calibration: tuple[list[Feeds], dict[str, Any]] | None) -> tuple[list[Feeds], dict[str, Any] | None]:
    """Write the converted model at `dest` and check that ONNX Runtime loads it; returns the calibration used."""
    if options.precision == "fp16":
        with stepper("converting to FP16"):
            problems: list[str] = []
            for blocked in FP16_FALLBACK_BLOCKS:
                fp16_from_onnx(onnx_path, dest, keep_io_types=not options.fp16_io, op_block_list=blocked)
                problem = probe_in_subprocess(dest, probe_feeds)
                if problem is None:
                    break
                problems.append(problem)
            if problem is not None:
                raise TritongenError(f"ONNX Runtime cannot load the FP16 model: {problems[0]}",
                                     "build FP32 (or --precision int8) for now; the FP16 graph trips an ONNX Runtime "
                                     "bug that keeping more ops in FP32 did not avoid")
            if problems:
                remember(f"ONNX Runtime could not load the plain FP16 conversion ({problems[0]}); kept "
                         f"{', '.join(blocked)} in FP32, which it loads")
        return [], None
    if options.precision != "int8":
        raise TritongenError(f"--precision {options.precision} needs no conversion", "internal error: please report")
    feeds: list[Feeds] = []
    info = None
    if options.quantize == "static":
        feeds, info = calibration or calibration_for(options, spec, remember)
        with stepper(f"quantizing to INT8 (static, calibrating on {info['items']} items)"):
            int8_static_from_onnx(onnx_path, dest, feeds, method=options.calibration_method,
                                  symmetric_activations=options.symmetric_activations,
                                  reduce_range=options.reduce_range)
    else:
        with stepper("quantizing to INT8 (dynamic)"):
            int8_dynamic_from_onnx(onnx_path, dest, reduce_range=options.reduce_range)
    problem = probe_in_subprocess(dest, probe_feeds)
    if problem is not None:
        raise TritongenError(f"ONNX Runtime cannot load the INT8 model: {problem}",
                             "try --quantize dynamic, or --precision fp16")
    return feeds, info


def _fidelity_hint(options: PrecisionOptions) -> str:
    if options.precision == "fp16":
        return ("the model is precision-sensitive in FP16: keep it FP32, loosen --atol/--rtol or "
                "--max-relative-error if the difference is acceptable, or pass --accept-fidelity to ship it anyway")
    tips = ["calibrate on real inputs (--calibration-data)"] if options.calibration == "random" else []
    tips += ["try --calibration-method entropy or percentile"] if options.quantize == "static" else []
    tips += ["try --quantize dynamic" if options.quantize == "static" else "try --quantize static with calibration data",
             "use --precision fp16", "or pass --accept-fidelity to ship it anyway"]
    return "; ".join(tips)
