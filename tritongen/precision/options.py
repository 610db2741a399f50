"""What `build --precision ...` asks for, checked before anything is exported; how an INT8 model is quantized."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError
from tritongen.precision.calibration import MAX_CALIBRATION_ITEMS, calibration_files

PRECISIONS = ("fp32", "fp16", "int8")
QUANTIZE_MODES = ("static", "dynamic")
CALIBRATION_SOURCES = ("data", "random")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class FidelityThresholds:
    """Below these a converted model fails the build (unless the user accepts it)."""

    max_relative_error: float  # max |error| / max |reference| of each output
    min_top1_agreement: float  # share of items whose argmax matches PyTorch's, for classifier-like outputs


DEFAULT_THRESHOLDS = {"fp16": FidelityThresholds(0.01, 0.99), "int8": FidelityThresholds(0.1, 0.9)}


@dataclass(frozen=True)
class PrecisionOptions:
    """What `build --precision ...` asks for; None means the default for the precision."""

    precision: str = "fp32"  # fp32 | fp16 | int8
    fp16_io: bool = False  # FP16 inputs/outputs too (default: FP32 at the boundary, casts inside)
    quantize: str = "static"  # int8: static (calibrated QDQ) | dynamic (weights only, activations at run time)
    calibration_data: Path | None = None  # an .npz (one array per input) or a folder of them
    calibration: str = "data"  # data | random (random: for testing only)
    calibration_method: str = "minmax"  # minmax | entropy | percentile (ONNX Runtime's calibrators)
    max_calibration_items: int = MAX_CALIBRATION_ITEMS
    symmetric_activations: bool = False  # TensorRT runs only symmetric QDQ; set when it will run the model
    # 7-bit weights (ONNX Runtime's reduce_range): x86-64 CPUs without VNNI multiply uint8 activations by int8
    # weights in pairs summed into int16, which saturates with full 8-bit weights (2 * 255 * 127 > 32767) and not
    # with 7-bit ones (2 * 255 * 64 <= 32767). The CPU that builds is often not the one that serves: on by default.
    reduce_range: bool = True
    max_relative_error: float | None = None
    min_top1_agreement: float | None = None
    accept_fidelity: bool = False
    measure_speed: bool = True

    @property
    def thresholds(self) -> FidelityThresholds:
        base = DEFAULT_THRESHOLDS.get(self.precision, DEFAULT_THRESHOLDS["fp16"])
        return FidelityThresholds(
            base.max_relative_error if self.max_relative_error is None else self.max_relative_error,
            base.min_top1_agreement if self.min_top1_agreement is None else self.min_top1_agreement)

    @property
    def method(self) -> str:
        """How the model is converted, in words, for reports and the manifest."""
        if self.precision == "fp16":
            return "FP16 weights and activations" + (", FP16 inputs/outputs" if self.fp16_io else
                                                     ", FP32 inputs/outputs (casts at the boundary)")
        weights = "INT8 weights in a 7-bit range" if self.reduce_range else "INT8 weights"
        if self.precision == "int8" and self.quantize == "dynamic":
            return f"INT8 dynamic quantization ({weights}; activation scales computed per batch at run time)"
        if self.precision == "int8":
            return (f"INT8 static quantization (QDQ, per-channel {weights}, {self.calibration_method} calibration"
                    + (", symmetric activations" if self.symmetric_activations else "") + ")")
        return "FP32 (as exported)"


def check_precision_options(options: PrecisionOptions) -> list[str]:
    """Mistakes in the precision options, found before anything is exported; returns warnings to show."""
    notes: list[str] = []
    if options.precision not in PRECISIONS:
        raise TritongenError(f"unknown --precision '{options.precision}'", f"use one of {', '.join(PRECISIONS)}")
    if options.quantize not in QUANTIZE_MODES:
        raise TritongenError(f"unknown --quantize '{options.quantize}'", "use --quantize static or dynamic")
    if options.calibration not in CALIBRATION_SOURCES:
        raise TritongenError(f"unknown --calibration '{options.calibration}'",
                             "use --calibration-data FILE.npz, or --calibration random for a test build")
    if options.calibration_method not in CALIBRATION_METHODS:
        raise TritongenError(f"unknown --calibration-method '{options.calibration_method}'",
                             f"use one of {', '.join(CALIBRATION_METHODS)}")
    if options.fp16_io and options.precision != "fp16":
        raise TritongenError(f"--fp16-io needs --precision fp16 (got --precision {options.precision})",
                             "add --precision fp16, or drop --fp16-io")
    for name, value in (("--max-relative-error", options.max_relative_error),
                        ("--min-top1-agreement", options.min_top1_agreement)):
        if value is not None and not (0 <= value <= 1 if name == "--min-top1-agreement" else value >= 0):
            raise TritongenError(f"{name} {value} is out of range",
                                 "give a share between 0 and 1" if "top1" in name else "give a non-negative number")
    if options.max_calibration_items < 1:
        raise TritongenError(f"--calibration-items {options.max_calibration_items} must be at least 1", "e.g. 256")
    if options.precision != "int8":
        if options.calibration_data is not None or options.calibration == "random":
            notes.append(f"calibration data is used only by --precision int8; ignored for {options.precision}")
        return notes
    if options.quantize == "dynamic":
        if options.calibration_data is not None or options.calibration == "random":
            notes.append("--quantize dynamic computes activation scales at run time: the calibration data is not used")
        return notes
    if options.calibration_data is None and options.calibration != "random":
        raise TritongenError(
            "--precision int8 (static quantization) needs calibration data: a few hundred representative inputs",
            "pass --calibration-data FILE.npz (one array per input, items along axis 0) or a folder of .npz files; "
            "or --quantize dynamic (no calibration, for transformer-like models); "
            "or --calibration random for a test build only")
    if options.calibration_data is not None and options.calibration == "random":
        raise TritongenError("both --calibration-data and --calibration random were given",
                             "pass one: real calibration data, or random data for a test build")
    if options.calibration_data is not None:
        calibration_files(Path(options.calibration_data))  # the path exists and holds .npz files
    return notes


def quantization_record(options: PrecisionOptions) -> dict[str, Any] | None:
    """How an INT8 model is quantized, and on which CPUs its INT8 kernels are exact: for the manifest."""
    if options.precision != "int8":
        return None
    static = options.quantize == "static"
    if not static:
        activations = "uint8, scales computed per batch at run time"
    elif options.symmetric_activations:
        activations = "int8, symmetric (zero point 0, as TensorRT requires), calibrated scales"
    else:
        activations = "int8, asymmetric, calibrated scales"
    return {
        "format": "QDQ" if static else "dynamic (DynamicQuantizeLinear, integer MatMul/Conv)",
        "weights": "int8, symmetric, per channel, " + ("7-bit range [-64, 64] (reduce_range)" if options.reduce_range
                                                       else "full 8-bit range"),
        "activations": activations,
        "reduce_range": options.reduce_range,
        "safe_on": ("every x86-64 CPU (with or without VNNI) and ARM" if options.reduce_range else
                    "x86-64 CPUs with VNNI, and ARM; x86-64 CPUs without VNNI can saturate int16 sums and be wrong"),
        "built_on": cpu_int8_description(),
    }


def cpu_int8_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """This CPU as far as INT8 kernels care: architecture, and for x86-64 whether it has VNNI."""
    machine = platform.machine() or "unknown"
    try:
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    if not flags:
        return machine
    vnni = [f for f in flags if f in ("avx512_vnni", "avx_vnni", "amx_int8")]
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{machine}, {simd}, " + (f"VNNI ({', '.join(vnni)})" if vnni else "no VNNI")
