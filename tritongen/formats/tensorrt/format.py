"""The `tensorrt` format's registry entry: a TensorRT plan built from the FP32 ONNX model (`platform: "tensorrt_plan"`).

The plan is built and checked by the TensorRT step (tritongen.formats.tensorrt.step); this module says what the build
asks of it and what the config is checked against. A plan converts to its precision on its own, from the FP32 ONNX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError
from tritongen.formats import Format, VersionJob, WrittenVersion
from tritongen.formats.tensorrt.builder import PLAN_FILENAME


class TensorRTFormat(Format):
    name = "tensorrt"
    platform = "tensorrt_plan"
    artifact = PLAN_FILENAME

    def check_plan(self, plan: Any) -> None:
        from tritongen.formats.tensorrt.builder import check_tensorrt_available

        precision = plan.precision
        if precision.precision == "int8" and precision.calibration_data is None and precision.calibration != "random":
            raise TritongenError("--format tensorrt --precision int8 needs calibration data: TensorRT calibrates the "
                                 "engine itself", "pass --calibration-data FILE.npz (or --calibration random for a "
                                 "test build)")
        check_tensorrt_available(plan.tensorrt)

    def check_spec(self, plan: Any, spec: Any) -> None:
        from tritongen.formats.tensorrt.profiles import axis_ranges

        # An axis without --dynamic-range fails here, not after the export.
        axis_ranges(spec, dict(plan.dynamic_ranges), plan.config.preferred_batch_sizes)

    def needs_calibration(self, precision: Any) -> bool:
        return precision.precision == "int8"

    def check_intent(self, cfg: Any) -> None:
        if cfg.kind == "cpu":
            raise TritongenError("TensorRT plans run only on GPUs, but --kind cpu was given", "use --kind gpu or auto")

    def instance_kind(self, kind: str) -> str:
        return "KIND_GPU"

    def write_version(self, job: VersionJob) -> WrittenVersion:
        from tritongen.formats.tensorrt.job import PlanJob
        from tritongen.formats.tensorrt.step import plan_into_version_dir
        from tritongen.precision import model_files

        plan, exported = job.plan, job.exported
        precision = plan.precision
        plan_job = PlanJob(model_files(exported.onnx_path), exported.spec, plan.tensorrt, precision.precision,
                           plan.dynamic_ranges, plan.config.preferred_batch_sizes,
                           exported.calibration[0] if exported.calibration else None, precision.fp16_io, plan.atol,
                           plan.rtol, precision.accept_fidelity)
        built = plan_into_version_dir(plan_job, exported.reference, job.version_dir, job.work_dir, step=job.step)
        manifest: dict[str, Any] = {"tensorrt": built.manifest}
        if built.fidelity:
            manifest["precision"] = {"precision": precision.precision, "fidelity": built.fidelity}
        return WrittenVersion(built.spec, built.parity, manifest, facts=built.meta)

    def check_config(self, proto: Any, version_dir: Path, written: WrittenVersion) -> None:
        from tritongen.formats.tensorrt.engine import check_config_against_engine

        check_config_against_engine(proto, written.facts)


FORMAT = TensorRTFormat()
