"""The `tensorrt` format's registry entry: a TensorRT plan built from the FP32 ONNX model (`platform: "tensorrt_plan"`).

The plan is built and checked by the TensorRT step (tritongen.export.tensorrt); this module says what the build
asks of it and what the config is checked against. A plan converts to its precision on its own, from the FP32 ONNX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError
from tritongen.formats import Format, VersionJob, WrittenVersion

PLAN_FILENAME = "model.plan"


class TensorRTFormat(Format):
    name = "tensorrt"
    platform = "tensorrt_plan"
    artifact = PLAN_FILENAME

    def check_plan(self, plan: Any) -> None:
        from tritongen.export import tensorrt

        precision = plan.precision
        if precision.precision == "int8" and precision.calibration_data is None and precision.calibration != "random":
            raise TritongenError("--format tensorrt --precision int8 needs calibration data: TensorRT calibrates the "
                                 "engine itself", "pass --calibration-data FILE.npz (or --calibration random for a "
                                 "test build)")
        tensorrt.check_tensorrt_available(plan.tensorrt)

    def check_spec(self, plan: Any, spec: Any) -> None:
        from tritongen.export import tensorrt

        # An axis without --dynamic-range fails here, not after the export.
        tensorrt.axis_ranges(spec, dict(plan.dynamic_ranges), plan.config.preferred_batch_sizes)

    def needs_calibration(self, precision: Any) -> bool:
        return precision.precision == "int8"

    def check_intent(self, cfg: Any) -> None:
        if cfg.kind == "cpu":
            raise TritongenError("TensorRT plans run only on GPUs, but --kind cpu was given", "use --kind gpu or auto")

    def instance_kind(self, kind: str) -> str:
        return "KIND_GPU"

    def write_version(self, job: VersionJob) -> WrittenVersion:
        from tritongen.export import tensorrt
        from tritongen.precision import model_files

        plan, exported = job.plan, job.exported
        precision = plan.precision
        built = tensorrt.plan_into_version_dir(
            model_files(exported.onnx_path), exported.spec, exported.reference, plan.tensorrt, precision.precision,
            job.version_dir, job.work_dir, calibration=exported.calibration[0] if exported.calibration else None,
            preferred_batch_sizes=plan.config.preferred_batch_sizes, atol=plan.atol, rtol=plan.rtol,
            accept_fidelity=precision.accept_fidelity, fp16_io=precision.fp16_io, step=job.step)
        manifest: dict[str, Any] = {"tensorrt": built.manifest}
        if built.fidelity:
            manifest["precision"] = {"precision": precision.precision, "fidelity": built.fidelity}
        return WrittenVersion(built.spec, built.parity, manifest, facts=built.meta)

    def check_config(self, proto: Any, version_dir: Path, written: WrittenVersion) -> None:
        from tritongen.export import tensorrt

        tensorrt.check_config_against_engine(proto, written.facts)


FORMAT = TensorRTFormat()
