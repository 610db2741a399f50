"""Lower precision for an exported ONNX model: FP16 conversion, INT8 quantization, and what they cost.

Everything here runs on ONNX Runtime on the CPU, for real: the converted model is written and loaded in child
processes first (ONNX Runtime has crashed outright on some FP16 graphs, and a crash must not take the build
down), then checked against the FP32 PyTorch model for parity and fidelity, and timed against the FP32 ONNX model.

| module | holds |
| --- | --- |
| `options` | `PrecisionOptions`, their checks, fidelity thresholds, how INT8 is quantized (`quantization_record`) |
| `calibration` | calibration data from .npz files or random, checked against the model's inputs |
| `convert` | FP16 / INT8 conversions and the load probe, each run in `worker.py` in a child process |
| `fidelity` | errors as a share of each output's range, top-1 agreement |
| `speed` | in-process latency before and after |
| `report` | `PrecisionReport` and its summary lines |
| `step` | `onnx_with_precision`: the step `build` calls |
"""

from tritongen.precision.calibration import calibration_for, calibration_from_npz, random_calibration
from tritongen.precision.convert import (
    fp16_from_onnx,
    int8_dynamic_from_onnx,
    int8_static_from_onnx,
    model_bytes,
    model_files,
    probe_in_subprocess,
)
from tritongen.precision.fidelity import FidelityReport, fidelity_from_outputs
from tritongen.precision.options import (
    DEFAULT_THRESHOLDS,
    FidelityThresholds,
    PrecisionOptions,
    check_precision_options,
    quantization_record,
)
from tritongen.precision.report import PrecisionReport, precision_summary
from tritongen.precision.speed import interleaved_latencies, speed_before_after
from tritongen.precision.step import PrecisionResult, onnx_with_precision, spec_for_io
from tritongen.runners.base import CastingRunner, cast_feeds

__all__ = [
    "DEFAULT_THRESHOLDS", "CastingRunner", "FidelityReport", "FidelityThresholds", "PrecisionOptions",
    "PrecisionReport", "PrecisionResult", "calibration_for", "calibration_from_npz", "cast_feeds",
    "check_precision_options", "fidelity_from_outputs", "fp16_from_onnx", "int8_dynamic_from_onnx",
    "int8_static_from_onnx", "interleaved_latencies", "model_bytes", "model_files", "onnx_with_precision",
    "precision_summary", "probe_in_subprocess", "quantization_record", "random_calibration", "speed_before_after",
    "spec_for_io",
]
