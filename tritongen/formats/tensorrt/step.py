"""The TensorRT step `build` calls: build the plan, compare its outputs with PyTorch, keep it with its provenance."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tritongen.errors import CheckFailed
from tritongen.formats.tensorrt.builder import (
    BUILDER_SCRIPT,
    PLAN_FILENAME,
    Builder,
    default_builder,
    default_timing_cache,
    reproduce_script,
)
from tritongen.formats.tensorrt.engine import EngineMeta, spec_from_engine, tensor_dict
from tritongen.formats.tensorrt.job import PlanJob, write_job
from tritongen.formats.tensorrt.profiles import axis_ranges, check_lengths_in_ranges, profile_from_spec
from tritongen.runners.base import Runner
from tritongen.runners.tensorrt import TensorRTOutputsRunner
from tritongen.spec import BATCH_AXIS, ModelSpec
from tritongen.verify import ParityReport, compare, max_abs_error, parity_cases, run_cases, tolerance_for

KEPT_FILES = ("job.json", BUILDER_SCRIPT.name, "engine.json", "calibration.cache")


@dataclass(frozen=True)
class TensorRTArtifact:
    plan: Path
    meta: EngineMeta
    spec: ModelSpec
    parity: ParityReport
    manifest: dict[str, Any]  # the manifest's "tensorrt" section
    fidelity: dict[str, Any] | None = None


def plan_into_version_dir(job: PlanJob, reference: Runner, version_dir: Path, work: Path, *,
                          step: Callable[[str], Any] | None = None, builder: Builder | None = None) -> TensorRTArtifact:
    """Build `model.plan` into `version_dir` from the FP32 ONNX file, check it against PyTorch, and describe it.

    The builder runs the engine on the parity inputs where it runs; their outputs are replayed by a runner and
    compared like any other backend's, at the one tolerance rule (`tolerance_for(..., "tensorrt", ...)`).
    """
    from tritongen.precision.calibration import count_items
    from tritongen.precision.fidelity import fidelity_from_outputs
    from tritongen.precision.options import DEFAULT_THRESHOLDS

    stepper = step or (lambda _desc: contextlib.nullcontext())
    spec, options = job.spec, job.options
    resolved = axis_ranges(spec, job.ranges, job.preferred_batch_sizes)
    check_lengths_in_ranges(spec, resolved)
    profile = profile_from_spec(spec, job.ranges, job.preferred_batch_sizes)
    checked_spec = replace(spec, max_batch_size=resolved[BATCH_AXIS].max) if spec.batched else spec
    cases = parity_cases(checked_spec)
    timing_cache = options.timing_cache or default_timing_cache(options)
    job_path = write_job(work, job, profile, [c.feeds for c in cases], timing_cache)
    with stepper(f"building the TensorRT plan ({job.precision}, {job.where})"):
        meta = (builder or default_builder)(options, job_path)
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    if (work / "timing.cache").exists():
        shutil.copy2(work / "timing.cache", timing_cache)
    served = spec_from_engine(meta, spec)

    expected = run_cases(reference, cases)
    with TensorRTOutputsRunner.from_job(job_path, name=f"tensorrt ({job.where})") as engine:
        actual = run_cases(engine, cases)
    measured = max_abs_error(expected, actual)
    tolerance = tolerance_for(job.precision, "tensorrt", job.atol, job.rtol, measured)
    parity = compare(expected, actual, tolerance)
    fidelity = None
    if job.precision != "fp32":
        report = fidelity_from_outputs(expected.outputs, actual.outputs, checked_spec, DEFAULT_THRESHOLDS[job.precision],
                                       "parity inputs", count_items([c.feeds for c in cases], checked_spec))
        fidelity = report.to_dict()
        if not report.passed and not job.accept_fidelity:
            raise CheckFailed(f"the TensorRT {job.precision.upper()} engine is too far from PyTorch FP32: "
                              f"{report.failures()}", "use better calibration data, build fp16, or pass "
                              "--accept-fidelity to ship it anyway")
    if not parity.passed:
        if not job.accept_fidelity:
            raise CheckFailed(f"the TensorRT engine does not match PyTorch: {parity.failures()}",
                              "loosen --atol/--rtol if the difference is acceptable, or pass --accept-fidelity")
        # validate compares the served plan with PyTorch at the manifest's tolerance: widen it to what was seen.
        tolerance = tolerance.widened_to(measured, "after --accept-fidelity")
        parity = compare(expected, actual, tolerance)

    shutil.copy2(work / PLAN_FILENAME, version_dir / PLAN_FILENAME)
    keep = version_dir / "tritongen" / "tensorrt"
    keep.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        if (work / name).exists():
            shutil.copy2(work / name, keep / name)
    (keep / "reproduce.sh").write_text(reproduce_script(options))
    (keep / "reproduce.sh").chmod(0o755)
    manifest = {
        "tensorrt_version": meta.tensorrt_version, "compute_capability": meta.compute_capability,
        "cuda_runtime": meta.cuda_runtime, "builder": "container" if options.image else "in-process",
        "image": options.image, "precision": job.precision, "fp16_io": job.fp16_io,
        "workspace_mb": options.workspace_mb, "builder_optimization_level": options.builder_optimization_level,
        "profile": {name: r.to_dict() for name, r in profile.items()},
        "calibration_cache": "tritongen/tensorrt/calibration.cache" if (work / "calibration.cache").exists() else None,
        "timing_cache": str(timing_cache), "reproduce": "tritongen/tensorrt/reproduce.sh",
        "tolerance": tolerance.to_dict(),
        "engine": {"inputs": [tensor_dict(t) for t in meta.inputs], "outputs": [tensor_dict(t) for t in meta.outputs]},
        **({"build": meta.facts} if meta.facts else {}),
    }
    return TensorRTArtifact(version_dir / PLAN_FILENAME, meta, served, parity, manifest, fidelity)
