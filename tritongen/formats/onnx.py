"""The `onnx` format: the ONNX file served by Triton's onnxruntime backend (`platform: "onnxruntime_onnx"`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritongen.formats import Format, VersionJob, WrittenVersion, link_or_copy

ONNX_FILENAME = "model.onnx"


def onnx_into_version_dir(job: VersionJob) -> WrittenVersion:
    """The served ONNX model (and its external data file) linked into the version directory, as exported."""
    exported = job.exported
    for f in exported.served_files:
        link_or_copy(f, job.version_dir / f.name)
    manifest = {"precision": exported.precision_report} if exported.precision_report else {}
    return WrittenVersion(exported.served_spec, exported.served_parity, manifest)


class OnnxFormat(Format):
    name = "onnx"
    platform = "onnxruntime_onnx"
    artifact = ONNX_FILENAME
    serves_onnx = True
    ort_accelerators = True

    def needs_calibration(self, precision: Any) -> bool:
        return precision.precision == "int8" and precision.quantize == "static"

    def write_version(self, job: VersionJob) -> WrittenVersion:
        return onnx_into_version_dir(job)

    def check_config(self, proto: Any, version_dir: Path, written: WrittenVersion) -> None:
        from tritongen.config import check_config_against_onnx

        check_config_against_onnx(proto, version_dir / ONNX_FILENAME)


FORMAT = OnnxFormat()
