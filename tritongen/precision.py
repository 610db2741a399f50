"""Lower precision for an exported ONNX model: FP16 conversion, INT8 quantization, and what they cost.

Everything here runs on ONNX Runtime on the CPU, for real: the converted model is loaded in a separate process
first (ONNX Runtime has crashed outright on some FP16 graphs, and a crash must not take the build down), then
checked against the FP32 PyTorch model for parity and fidelity, and timed against the FP32 ONNX model.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tritongen import defaults
from tritongen.errors import CheckFailed, TritongenError
from tritongen.runners.base import Runner
from tritongen.spec import DType, ModelSpec, TensorSpec, dtype_from_name, random_inputs
from tritongen.verify import ParityReport, compare_outputs, parity_against, parity_cases

PRECISIONS = ("fp32", "fp16", "int8")
QUANTIZE_MODES = ("static", "dynamic")
CALIBRATION_SOURCES = ("data", "random")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# FP32 tolerances are the build's defaults; FP16 keeps about 3 significant digits, and errors add up through layers.
DEFAULT_TOLERANCE = {"fp32": (1e-4, 1e-3), "fp16": (1e-2, 1e-2), "int8": (1e-4, 1e-3)}
# validate compares the served model with PyTorch: for INT8 the tolerance is the error measured here, with headroom
# for a server that batches requests differently (dynamic quantization scales depend on the whole batch).
TOLERANCE_HEADROOM = 2.0
CALIBRATION_BATCH = 8
MAX_CALIBRATION_ITEMS = defaults.CALIBRATION_ITEMS
FIDELITY_ITEMS = 64  # items the fidelity numbers are measured on, besides the reference inputs
SPEED_BATCH = 8
PROBE_TIMEOUT_S = 300
# Extra ops kept in FP32 when ONNX Runtime cannot load the first FP16 conversion (tried in order).
FP16_FALLBACK_BLOCKS: tuple[tuple[str, ...], ...] = ((), ("Transpose",), ("Transpose", "Reshape", "LayerNormalization"))
EXTERNAL_DATA_THRESHOLD = 1_500_000_000


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
        if self.precision == "int8" and self.quantize == "dynamic":
            return "INT8 dynamic quantization (INT8 weights; activation scales computed per batch at run time)"
        if self.precision == "int8":
            return (f"INT8 static quantization (QDQ, per-channel INT8 weights, {self.calibration_method} calibration"
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
        _calibration_files(Path(options.calibration_data))  # the path exists and holds .npz files
    return notes


def resolve_tolerance(precision: str, atol: float | None, rtol: float | None) -> tuple[float, float]:
    """The parity tolerances for a precision: the user's where given, else that precision's defaults."""
    default_atol, default_rtol = DEFAULT_TOLERANCE.get(precision, DEFAULT_TOLERANCE["fp32"])
    return (default_atol if atol is None else atol, default_rtol if rtol is None else rtol)


# ---------------------------------------------------------------------------------------------------------------
# Conversions


def fp16_from_onnx(source: Path, dest: Path, *, keep_io_types: bool = True,
                   op_block_list: Sequence[str] = ()) -> Path:
    """Convert `source` to FP16 at `dest`; ops ONNX Runtime's converter keeps in FP32 stay FP32 (with casts)."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(source))
    with _quiet_logs():
        converted = convert_float_to_float16(model, keep_io_types=keep_io_types,
                                             op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(op_block_list))
    _save_onnx(converted, dest)
    return dest


def int8_static_from_onnx(source: Path, dest: Path, reader: Any, *, method: str = "minmax",
                          symmetric_activations: bool = False) -> Path:
    """Static INT8 quantization in QDQ format with per-channel INT8 weights, calibrated by `reader`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    dest = Path(dest).resolve()
    with _preprocessed(source) as prepared, _quiet_logs(), _scratch_directory():
        quantize_static(str(prepared), str(dest), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method],
                        use_external_data_format=model_bytes(source) > EXTERNAL_DATA_THRESHOLD,
                        extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True})
    return dest


def int8_dynamic_from_onnx(source: Path, dest: Path) -> Path:
    """Dynamic INT8 quantization: INT8 weights, activation scales computed per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dest = Path(dest).resolve()
    with _preprocessed(source) as prepared, _quiet_logs(), _scratch_directory():
        quantize_dynamic(str(prepared), str(dest), per_channel=True, weight_type=QuantType.QInt8,
                         use_external_data_format=model_bytes(source) > EXTERNAL_DATA_THRESHOLD)
    return dest


@contextlib.contextmanager
def _preprocessed(source: Path) -> Iterator[Path]:
    """ONNX Runtime's recommended pre-processing (shape inference, graph optimisation) before quantization.

    Symbolic shape inference fails on some graphs (seen on a transformer encoder); plain ONNX shape inference then
    does, and when that fails too the model is quantized as it is. The failing symbolic pass dumps
    `sym_shape_infer_temp.onnx` and a data file into the current directory, so it runs from the temporary one.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = Path(source).resolve()
    with tempfile.TemporaryDirectory(prefix="tritongen-quant-") as tmp:
        out = Path(tmp) / "preprocessed.onnx"
        for skip_symbolic in (False, True):
            try:
                with _quiet_logs(), _working_directory(Path(tmp)):
                    quant_pre_process(str(source), str(out), skip_symbolic_shape=skip_symbolic)
                break
            except Exception:
                out.unlink(missing_ok=True)
        yield out if out.exists() else source


@contextlib.contextmanager
def _scratch_directory() -> Iterator[None]:
    """Run ONNX Runtime's quantization tools from a temporary directory: some of them write into the current one."""
    with tempfile.TemporaryDirectory(prefix="tritongen-quant-") as tmp, _working_directory(Path(tmp)):
        yield


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _save_onnx(model: Any, dest: Path) -> None:
    import onnx

    dest.parent.mkdir(parents=True, exist_ok=True)
    big = model.ByteSize() > EXTERNAL_DATA_THRESHOLD
    onnx.save_model(model, str(dest), save_as_external_data=big, all_tensors_to_one_file=True,
                    location=dest.name + ".data" if big else None)


def model_bytes(path: Path) -> int:
    """Size on disk of an ONNX model with its external data file, if any."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def model_files(path: Path) -> tuple[Path, ...]:
    data = path.with_name(path.name + ".data")
    return (path, data) if data.exists() else (path,)


# ---------------------------------------------------------------------------------------------------------------
# Calibration data


def _calibration_files(source: Path) -> list[Path]:
    if not source.exists():
        raise TritongenError(f"--calibration-data '{source}' does not exist",
                             "pass an .npz file (one array per input) or a folder of .npz files")
    files = sorted(source.glob("*.npz")) if source.is_dir() else [source]
    if not files:
        raise TritongenError(f"--calibration-data folder '{source}' holds no .npz file",
                             "save inputs with numpy.savez(path, **{input_name: array})")
    if source.is_file() and source.suffix != ".npz":
        raise TritongenError(f"--calibration-data '{source}' is not an .npz file",
                             "save inputs with numpy.savez(path, **{input_name: array})")
    return files


def calibration_from_npz(source: Path, spec: ModelSpec, *, batch: int = CALIBRATION_BATCH,
                         max_items: int = MAX_CALIBRATION_ITEMS) -> list[dict[str, np.ndarray]]:
    """Feeds for calibration from an .npz (or a folder of them), checked against the model's inputs.

    Each file holds one array per input with the items along axis 0 (batched models), or one item (models with
    max_batch_size 0). Arrays are cast to the input's dtype when the kind matches (float64 to float32, int32 to
    int64); anything else is an error that names the file, the input and what was expected.
    """
    feeds: list[dict[str, np.ndarray]] = []
    items = 0
    for path in _calibration_files(Path(source)):
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise TritongenError(f"cannot read calibration file {path}: {exc}",
                                 "write it with numpy.savez(path, **{input_name: array})") from exc
        checked = _check_calibration_arrays(path, arrays, spec)
        count = len(next(iter(checked.values()))) if spec.batched else 1
        step = batch if spec.batched else 1
        for start in range(0, count, step):
            if items >= max_items:
                return feeds
            take = min(step, max_items - items, count - start)
            feeds.append({k: v[start:start + take] for k, v in checked.items()} if spec.batched else checked)
            items += take
    return feeds


def _check_calibration_arrays(path: Path, arrays: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    names = [t.name for t in spec.inputs]
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names]
    if missing or extra:
        raise TritongenError(
            f"calibration file {path.name} has arrays {', '.join(sorted(arrays)) or 'none'} but the model's inputs are "
            f"{', '.join(names)}" + (f" (missing: {', '.join(missing)})" if missing else ""),
            "save one array per input, named like the input: numpy.savez(path, " + ", ".join(
                f"{n}=..." for n in names) + ")")
    checked: dict[str, np.ndarray] = {}
    axis_sizes: dict[str, int] = {}
    counts = set()
    for t in spec.inputs:
        array = arrays[t.name]
        expected_rank = len(t.shape) + (1 if spec.batched else 0)
        per_item = "x".join(str(d) for d in t.shape) or "scalar"
        if array.ndim != expected_rank:
            raise TritongenError(
                f"calibration array '{t.name}' in {path.name} has shape {list(array.shape)}, but the input is "
                f"{per_item} per item" + (" with the items along a first axis" if spec.batched else ""),
                f"save '{t.name}' as an array of shape [items, {', '.join(str(d) for d in t.shape)}]"
                if spec.batched else f"save one item per file, shaped {per_item}")
        dims = array.shape[1:] if spec.batched else array.shape
        for i, (want, got) in enumerate(zip(t.shape, dims, strict=True)):
            if isinstance(want, int) and want != got:
                raise TritongenError(
                    f"calibration array '{t.name}' in {path.name} has size {got} at per-item dim {i}, the input "
                    f"needs {want} ({per_item})", "resize the calibration data to the model's input shape")
            if isinstance(want, str) and axis_sizes.setdefault(want, got) != got:
                raise TritongenError(
                    f"calibration arrays in {path.name} disagree on axis '{want}' ({axis_sizes[want]} vs {got})",
                    "inputs that share a named axis must have the same length in each file")
        checked[t.name] = _cast_calibration(path, t, array)
        if spec.batched:
            counts.add(array.shape[0])
    if len(counts) > 1:
        raise TritongenError(f"calibration arrays in {path.name} hold different numbers of items ({sorted(counts)})",
                             "every input needs the same number of items along axis 0")
    if spec.batched and 0 in counts:
        raise TritongenError(f"calibration file {path.name} holds no items", "save at least one item per input")
    return checked


def _cast_calibration(path: Path, tensor: TensorSpec, array: np.ndarray) -> np.ndarray:
    want = tensor.dtype
    kind = array.dtype.kind
    if want.is_float and kind == "f" or (not want.is_float and want.short != "bool" and kind in "iu") or \
            (want.short == "bool" and kind == "b"):
        cast = array.astype(want.np_dtype)
        if kind in "iu" and not np.array_equal(cast.astype(np.int64), array.astype(np.int64)):
            raise TritongenError(f"calibration array '{tensor.name}' in {path.name} has values that do not fit "
                                 f"{want.short}", f"keep values within the range of {want.short}")
        return cast
    raise TritongenError(f"calibration array '{tensor.name}' in {path.name} is {array.dtype}, but the input is "
                         f"{want.short}", f"save it as {want.numpy}")


def random_calibration(spec: ModelSpec, *, items: int = 64, batch: int = CALIBRATION_BATCH,
                       seed: int = 1000) -> list[dict[str, np.ndarray]]:
    """Random feeds in the spec's ranges: enough to exercise the quantizer, useless for real accuracy."""
    lengths = {a: spec.lengths(a)[-1] for a in spec.dynamic_axes}
    if not spec.batched:
        return [random_inputs(spec, None, lengths, np.random.default_rng(seed + i)) for i in range(min(items, 16))]
    return [random_inputs(spec, min(batch, spec.max_batch_size), lengths, np.random.default_rng(seed + i))
            for i in range(math.ceil(items / min(batch, spec.max_batch_size)))]


class FeedsReader:
    """ONNX Runtime's CalibrationDataReader over a list of feeds (duck-typed: get_next() and rewind())."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self.feeds = list(feeds)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.feeds):
            return None
        self._next += 1
        return self.feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self.feeds)


def _calibration_reader(feeds: Sequence[dict[str, np.ndarray]]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(FeedsReader, CalibrationDataReader):  # ORT checks isinstance(reader, CalibrationDataReader)
        pass

    return Reader(feeds)


def count_items(feeds: Sequence[dict[str, np.ndarray]], spec: ModelSpec) -> int:
    if not feeds:
        return 0
    return sum(len(next(iter(f.values()))) for f in feeds) if spec.batched else len(feeds)


# ---------------------------------------------------------------------------------------------------------------
# Fidelity, speed, size


@dataclass(frozen=True)
class OutputFidelity:
    """How far one output of the converted model is from PyTorch's FP32 output."""

    name: str
    max_abs_err: float
    mean_abs_err: float
    relative_error: float  # max |error| / max |reference|: comparable across outputs of any scale
    top1_agreement: float | None  # share of items with the same argmax (classifier-like outputs only)
    passed: bool


@dataclass(frozen=True)
class FidelityReport:
    """Fidelity against PyTorch FP32 on the reference inputs plus calibration (or random) items."""

    items: int
    source: str
    thresholds: FidelityThresholds
    outputs: tuple[OutputFidelity, ...]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def failures(self) -> str:
        parts = []
        for o in self.outputs:
            if o.passed:
                continue
            if o.relative_error > self.thresholds.max_relative_error:
                parts.append(f"output '{o.name}' max error {o.max_abs_err:.3g} is {o.relative_error:.1%} of its range "
                             f"(allowed {self.thresholds.max_relative_error:.1%})")
            if o.top1_agreement is not None and o.top1_agreement < self.thresholds.min_top1_agreement:
                parts.append(f"output '{o.name}' top-1 agrees with PyTorch on {o.top1_agreement:.1%} of {self.items} "
                             f"items (needed {self.thresholds.min_top1_agreement:.0%})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "source": self.source, "passed": self.passed,
                "thresholds": asdict(self.thresholds),
                "outputs": {o.name: {k: v for k, v in asdict(o).items() if k != "name"} for o in self.outputs}}


def is_classifier_like(output: TensorSpec) -> bool:
    """A float output with one value per class per item: top-1 agreement means something for it."""
    return output.dtype.is_float and len(output.shape) == 1 and isinstance(output.shape[0], int) and output.shape[0] >= 2


def fidelity_against(reference: Runner, candidate: Runner, feeds: Sequence[dict[str, np.ndarray]], spec: ModelSpec,
                     thresholds: FidelityThresholds, source: str) -> FidelityReport:
    """Run both runners on every feed and measure errors, relative errors and top-1 agreement per output."""
    expected, actual = [], []
    for feed in feeds:
        expected.append(reference.infer(feed))
        actual.append(candidate.infer(feed))
    return fidelity_from_outputs(expected, actual, spec, thresholds, source, count_items(feeds, spec))


def fidelity_from_outputs(expected: Sequence[dict[str, np.ndarray]], actual: Sequence[dict[str, np.ndarray]],
                          spec: ModelSpec, thresholds: FidelityThresholds, source: str, items: int) -> FidelityReport:
    """Fidelity from outputs already computed (one dict per feed): used for ONNX Runtime and TensorRT alike."""
    outputs = []
    for o in spec.outputs:
        # One row per item, so outputs of different axis lengths across feeds can still be compared item-wise.
        want = [_per_item(np.asarray(e[o.name]), spec).astype(np.float64) for e in expected]
        got = [_per_item(np.asarray(a[o.name]), spec).astype(np.float64) for a in actual]
        errs = [np.abs(a - e) for a, e in zip(got, want, strict=True)]
        max_err = max((float(np.nan_to_num(e, nan=np.inf).max()) for e in errs if e.size), default=0.0)
        total = sum(e.size for e in errs)
        mean_err = float(sum(float(e.sum()) for e in errs) / total) if total else 0.0
        scale = max((float(np.abs(e).max()) for e in want if e.size), default=0.0)
        relative = max_err / scale if scale > 0 else max_err
        top1 = None
        if is_classifier_like(o):
            agree = np.concatenate([np.argmax(a, axis=-1) == np.argmax(e, axis=-1) for a, e in zip(got, want,
                                                                                                   strict=True)])
            top1 = float(agree.mean()) if agree.size else None
        ok = math.isfinite(max_err) and relative <= thresholds.max_relative_error and \
            (top1 is None or top1 >= thresholds.min_top1_agreement)
        outputs.append(OutputFidelity(o.name, max_err, mean_err, relative, top1, ok))
    return FidelityReport(items, source, thresholds, tuple(outputs))


def _per_item(array: np.ndarray, spec: ModelSpec) -> np.ndarray:
    if not spec.batched:
        return array.reshape(1, *array.shape) if array.ndim else array.reshape(1, 1)
    return array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)


@dataclass(frozen=True)
class SpeedReport:
    """In-process ONNX Runtime latency of one batch, before and after conversion, on this machine."""

    batch: int | None
    ms_before: float
    ms_after: float
    runs: int
    threads: int
    load_average: float  # the 1-minute load when measured: other work on the machine skews the numbers

    @property
    def speedup(self) -> float:
        return self.ms_before / self.ms_after if self.ms_after > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "speedup": round(self.speedup, 3),
                "items_per_s_before": _items_per_s(self.batch, self.ms_before),
                "items_per_s_after": _items_per_s(self.batch, self.ms_after)}


def _items_per_s(batch: int | None, ms: float) -> float:
    return round((batch or 1) * 1000.0 / ms, 1) if ms > 0 else 0.0


def interleaved_latencies(paths: Sequence[Path], feeds: Sequence[dict[str, np.ndarray]], *, budget_s: float = 1.5,
                          min_runs: int = 3, warmup: int = 2) -> list[tuple[float, int]]:
    """Median milliseconds of one run of each model (ONNX Runtime defaults: all cores) and the number of runs.

    The models run in turn, one run each, until the budget is spent: a change in the machine's load (other work
    on a shared CPU) then hits every model alike instead of whichever happened to be timed at that moment.
    """
    from tritongen.runners.onnxruntime import OnnxRuntimeRunner

    runners = [OnnxRuntimeRunner(p) for p in paths]
    times: list[list[float]] = [[] for _ in runners]
    try:
        for runner, feed in zip(runners, feeds, strict=True):
            runner.activate()
            for _ in range(warmup):
                runner.infer(feed)
        deadline = time.perf_counter() + budget_s
        while time.perf_counter() < deadline or min(len(t) for t in times) < min_runs:
            for runner, feed, series in zip(runners, feeds, times, strict=True):
                t0 = time.perf_counter()
                runner.infer(feed)
                series.append((time.perf_counter() - t0) * 1000.0)
    finally:
        for runner in runners:
            runner.deactivate()
    return [(float(np.median(series)), len(series)) for series in times]


def speed_before_after(before: Path, after: Path, spec: ModelSpec, feeds: dict[str, np.ndarray] | None = None,
                       *, budget_s: float = 1.5) -> SpeedReport:
    """Time both models on the same batch, interleaved."""
    if feeds is None:
        batch = min(SPEED_BATCH, spec.max_batch_size) if spec.batched else None
        lengths = {a: spec.lengths(a)[-1] for a in spec.dynamic_axes}
        feeds = random_inputs(spec, batch, lengths, np.random.default_rng(5))
    batch = len(next(iter(feeds.values()))) if spec.batched and feeds else None
    (ms_before, runs), (ms_after, _) = interleaved_latencies(
        [before, after], [cast_feeds(feeds, _input_dtypes(before)), cast_feeds(feeds, _input_dtypes(after))],
        budget_s=budget_s)
    return SpeedReport(batch, ms_before, ms_after, runs, os.cpu_count() or 1, round(os.getloadavg()[0], 2))


def _input_dtypes(path: Path) -> dict[str, DType]:
    import onnx

    from tritongen.spec import dtype_from_onnx

    model = onnx.load(str(path), load_external_data=False)
    return {i.name: dtype_from_onnx(i.type.tensor_type.elem_type) for i in model.graph.input}


def cast_feeds(feeds: dict[str, np.ndarray], dtypes: dict[str, DType]) -> dict[str, np.ndarray]:
    return {k: v.astype(dtypes[k].np_dtype) if k in dtypes else v for k, v in feeds.items()}


class CastingRunner(Runner):
    """Casts feeds to the dtypes another runner expects: the FP32 PyTorch model fed FP16 inputs, for instance."""

    def __init__(self, inner: Runner, dtypes: dict[str, DType]) -> None:
        self.inner = inner
        self.dtypes = dtypes
        self.name = inner.name

    def activate(self) -> None:
        self.inner.activate()

    def deactivate(self) -> None:
        self.inner.deactivate()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner.infer(cast_feeds(feeds, self.dtypes))


# ---------------------------------------------------------------------------------------------------------------
# Loading in a separate process


_PROBE = r"""
import sys
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.log_severity_level = 3
# The level Triton's onnxruntime backend and tritongen's python runner use: the crash seen was at this level only.
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
with np.load(sys.argv[2]) as data:
    session.run(None, {k: data[k] for k in data.files})
print("ok")
"""


def probe_in_subprocess(path: Path, feeds: dict[str, np.ndarray], *, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Load `path` in ONNX Runtime in a child process and run `feeds`; None when it works, else what went wrong.

    ONNX Runtime 1.32 segfaults while optimising some FP16 graphs (a transformer encoder here): a crash in a child
    process is a message, a crash in ours would be the end of the build.
    """
    with tempfile.TemporaryDirectory(prefix="tritongen-probe-") as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        np.savez(feeds_path, **feeds)
        try:
            done = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(feeds_path)], capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"ONNX Runtime did not load and run the model within {timeout_s:.0f}s"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        return f"ONNX Runtime crashed (signal {-done.returncode}) loading the model"
    last = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return f"ONNX Runtime cannot run the model: {last[-1][:300] if last else f'exit code {done.returncode}'}"


# ---------------------------------------------------------------------------------------------------------------
# The step `build` calls


@dataclass(frozen=True)
class PrecisionReport:
    """What the conversion did and cost: written to the build report and the manifest."""

    precision: str
    method: str
    io: str  # "fp32" or "fp16": the dtype of float inputs/outputs
    size_before: int
    size_after: int
    fidelity: FidelityReport
    tolerance: dict[str, Any]  # atol, rtol and how they were chosen
    calibration: dict[str, Any] | None = None
    speed: SpeedReport | None = None
    accepted_below_threshold: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "method": self.method, "io": self.io,
                "size_bytes": {"before": self.size_before, "after": self.size_after,
                               "ratio": round(self.size_after / self.size_before, 4) if self.size_before else None},
                "speed": self.speed.to_dict() if self.speed else None, "fidelity": self.fidelity.to_dict(),
                "tolerance": self.tolerance, "calibration": self.calibration,
                "accepted_below_threshold": self.accepted_below_threshold, "notes": list(self.notes)}


def precision_summary(report: dict[str, Any]) -> list[str]:
    """Human lines for a precision report (as in the build result and manifest): method, size, speed, fidelity."""
    lines = [f"precision {report['precision']}: {report['method']}"]
    size = report.get("size_bytes") or {}
    if size.get("before"):
        lines.append(f"size {_mb(size['before'])} → {_mb(size['after'])} ({size['after'] / size['before']:.2f}×)")
    speed = report.get("speed")
    if speed:
        faster = speed["speedup"]
        lines.append(f"ONNX Runtime on this CPU, batch {speed['batch'] or 1}: {speed['ms_before']:.2f} → "
                     f"{speed['ms_after']:.2f} ms per batch ({faster:.2f}× the FP32 speed; load average "
                     f"{speed['load_average']:g} on {speed['threads']} cores)")
    fidelity = report["fidelity"]
    for name, o in fidelity["outputs"].items():
        top1 = f", top-1 agreement {o['top1_agreement']:.1%}" if o.get("top1_agreement") is not None else ""
        lines.append(f"fidelity {name}: max err {o['max_abs_err']:.2e} ({o['relative_error']:.2%} of its range){top1} "
                     f"on {fidelity['items']} items ({fidelity['source']})")
    tolerance = report.get("tolerance") or {}
    if tolerance:
        lines.append(f"tolerance for validate: atol {tolerance['atol']:g}, rtol {tolerance['rtol']:g} ({tolerance['how']})")
    return lines


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


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


Note = Callable[[str], None]


def spec_for_io(spec: ModelSpec, fp16_io: bool) -> ModelSpec:
    """The spec of the served model: float32 inputs and outputs become float16 with --fp16-io."""
    if not fp16_io:
        return spec
    fp16 = dtype_from_name("fp16")

    def convert(t: TensorSpec) -> TensorSpec:
        return replace(t, dtype=fp16) if t.dtype.short == "fp32" else t

    return replace(spec, inputs=tuple(convert(t) for t in spec.inputs), outputs=tuple(convert(t) for t in spec.outputs))


def calibration_for(options: PrecisionOptions, spec: ModelSpec,
                    note: Note | None = None) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """Calibration feeds from the user's data, or random ones when asked for (with a warning)."""
    if options.calibration_data is not None:
        feeds = calibration_from_npz(Path(options.calibration_data), spec, max_items=options.max_calibration_items)
        if not feeds:
            raise TritongenError(f"--calibration-data '{options.calibration_data}' holds no items",
                                 "save at least one item per input")
        return feeds, {"source": str(Path(options.calibration_data).resolve()), "items": count_items(feeds, spec),
                       "batches": len(feeds), "method": options.calibration_method}
    if note:
        note("calibrating INT8 on random inputs (--calibration random): the scales fit noise, not your data; "
             "use this for testing only and pass --calibration-data for a real deployment")
    feeds = random_calibration(spec, items=min(64, options.max_calibration_items))
    return feeds, {"source": "random (testing only)", "items": count_items(feeds, spec), "batches": len(feeds),
                   "method": options.calibration_method}


def fidelity_feeds(spec: ModelSpec, reference_inputs: dict[str, np.ndarray],
                   calibration: Sequence[dict[str, np.ndarray]] | None) -> tuple[list[dict[str, np.ndarray]], str]:
    """The reference inputs plus up to FIDELITY_ITEMS more: calibration items (real data) where there are some."""
    feeds = [reference_inputs]
    if calibration:
        taken = 0
        for f in calibration:
            if taken >= FIDELITY_ITEMS:
                break
            feeds.append(f)
            taken += count_items([f], spec)
        return feeds, "reference inputs + calibration items"
    lengths = {a: spec.lengths(a)[-1] for a in spec.dynamic_axes}
    if spec.batched:
        batch = min(SPEED_BATCH, spec.max_batch_size)
        feeds += [random_inputs(spec, batch, lengths, np.random.default_rng(2000 + i))
                  for i in range(math.ceil(FIDELITY_ITEMS / batch))]
    else:
        feeds += [random_inputs(spec, None, lengths, np.random.default_rng(2000 + i)) for i in range(8)]
    return feeds, "reference inputs + random items"


def onnx_with_precision(onnx_path: Path, spec: ModelSpec, reference: Runner, options: PrecisionOptions,
                        work_dir: Path, reference_inputs: dict[str, np.ndarray], *, atol: float | None = None,
                        rtol: float | None = None, note: Note | None = None,
                        step: Callable[[str], Any] | None = None,
                        calibration: tuple[list[dict[str, np.ndarray]], dict[str, Any]] | None = None
                        ) -> PrecisionResult:
    """Convert the FP32 model at `onnx_path` to `options.precision` under `work_dir`, check it, and report.

    Raises CheckFailed when the converted model is further from PyTorch than the thresholds allow (unless
    `options.accept_fidelity`), and TritongenError when it cannot be converted or loaded. `calibration` is what
    `calibration_for` returned, when the caller already has it (TensorRT calibrates on the same data).
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
    fp32_dtypes = {t.name: t.dtype for t in spec.inputs}
    ref = CastingRunner(reference, fp32_dtypes)
    probe_feeds = cast_feeds(reference_inputs, {t.name: t.dtype for t in served.inputs})
    given = calibration
    calibration_feeds: list[dict[str, np.ndarray]] = []
    calibration_info = None

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
    elif options.precision == "int8":
        if options.quantize == "static":
            calibration_feeds, calibration_info = given or calibration_for(options, spec, remember)
            with stepper(f"quantizing to INT8 (static, calibrating on {calibration_info['items']} items)"):
                int8_static_from_onnx(onnx_path, dest, _calibration_reader(calibration_feeds),
                                      method=options.calibration_method,
                                      symmetric_activations=options.symmetric_activations)
        else:
            with stepper("quantizing to INT8 (dynamic)"):
                int8_dynamic_from_onnx(onnx_path, dest)
        problem = probe_in_subprocess(dest, probe_feeds)
        if problem is not None:
            raise TritongenError(f"ONNX Runtime cannot load the INT8 model: {problem}",
                                 "try --quantize dynamic, or --precision fp16")
    else:
        raise TritongenError(f"--precision {options.precision} needs no conversion", "internal error: please report")

    from tritongen.runners.onnxruntime import OnnxRuntimeRunner

    thresholds = options.thresholds
    with stepper("measuring fidelity against PyTorch FP32"), OnnxRuntimeRunner(dest) as candidate:
        feeds, source = fidelity_feeds(served, probe_feeds,
                                       [cast_feeds(f, {t.name: t.dtype for t in served.inputs}) for f in calibration_feeds])
        fidelity = fidelity_against(ref, candidate, feeds, served, thresholds, source)
        atol_used, rtol_used, how = _tolerance_for(options, ref, candidate, served, atol, rtol)
        parity = parity_against(ref, candidate, served, atol=atol_used, rtol=rtol_used)

    accepted = False
    failed = [] if fidelity.passed else [fidelity.failures()]
    if not parity.passed:
        failed.append(f"parity at atol {atol_used:g} / rtol {rtol_used:g}: {parity.failures()}")
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
            worst = max(o.max_abs_err for o in parity.outputs)
            atol_used = max(atol_used, _round_up(worst * TOLERANCE_HEADROOM))
            how += f"; widened to {atol_used:g} after --accept-fidelity"
            with OnnxRuntimeRunner(dest) as candidate:
                parity = parity_against(ref, candidate, served, atol=atol_used, rtol=rtol_used)

    speed = None
    if options.measure_speed:
        with stepper("timing ONNX Runtime before and after"):
            speed = speed_before_after(onnx_path, dest, spec)
    report = PrecisionReport(
        precision=options.precision, method=options.method, io="fp16" if options.fp16_io else "fp32",
        size_before=model_bytes(onnx_path), size_after=model_bytes(dest), fidelity=fidelity,
        tolerance={"atol": atol_used, "rtol": rtol_used, "how": how}, calibration=calibration_info, speed=speed,
        accepted_below_threshold=accepted, notes=tuple(notes))
    return PrecisionResult(dest, model_files(dest), served, parity, report, atol_used, rtol_used)


def _tolerance_for(options: PrecisionOptions, reference: Runner, candidate: Runner, spec: ModelSpec,
                   atol: float | None, rtol: float | None) -> tuple[float, float, str]:
    """Parity tolerances: fixed for FP16; for INT8 the error measured on the parity inputs, with headroom."""
    atol_used, rtol_used = resolve_tolerance(options.precision, atol, rtol)
    if options.precision != "int8" or atol is not None:
        return atol_used, rtol_used, "given with --atol/--rtol" if atol is not None else \
            f"{options.precision.upper()} defaults"
    # Quantization error is the point of INT8, so a fixed FP32-style tolerance means nothing; fidelity thresholds
    # judge the model, and the tolerance only has to tell "this model, served" from "something else".
    worst = 0.0
    for batch, lengths, seed in parity_cases(spec):
        feeds = random_inputs(spec, batch, lengths, np.random.default_rng(seed))
        for parity in compare_outputs(candidate.infer(feeds), reference.infer(feeds), np.inf, 0.0).values():
            if math.isfinite(parity.max_abs_err):
                worst = max(worst, parity.max_abs_err)
    derived = _round_up(worst * TOLERANCE_HEADROOM)
    return max(atol_used, derived), rtol_used, (f"measured INT8 error {worst:.3g} on the parity inputs × "
                                                f"{TOLERANCE_HEADROOM:g} headroom")


def _round_up(value: float) -> float:
    """Two significant digits, rounded up, so the tolerance reads well and never undercuts the measurement."""
    if value <= 0:
        return 0.0
    exponent = math.floor(math.log10(value)) - 1
    digits = math.ceil(value / 10**exponent * (1 - 1e-12))  # 31.000000000000004 is 31, not 32
    return float(f"{digits * 10**exponent:.2g}")


def _fidelity_hint(options: PrecisionOptions) -> str:
    if options.precision == "fp16":
        return ("the model is precision-sensitive in FP16: keep it FP32, loosen --atol/--rtol or "
                "--max-relative-error if the difference is acceptable, or pass --accept-fidelity to ship it anyway")
    tips = ["calibrate on real inputs (--calibration-data)"] if options.calibration == "random" else []
    tips += ["try --calibration-method entropy or percentile"] if options.quantize == "static" else []
    tips += ["try --quantize dynamic" if options.quantize == "static" else "try --quantize static with calibration data",
             "use --precision fp16", "or pass --accept-fidelity to ship it anyway"]
    return "; ".join(tips)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """ONNX Runtime's quantization tools log warnings on the root logger ("Axis 1 is out-of-range ..."): noise here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
