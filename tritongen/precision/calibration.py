"""Calibration data for static INT8: the user's .npz files checked against the model's inputs, or random feeds."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tritongen import defaults
from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec, TensorSpec, random_inputs

if TYPE_CHECKING:
    from tritongen.precision.options import PrecisionOptions

CALIBRATION_BATCH = 8
MAX_CALIBRATION_ITEMS = defaults.CALIBRATION_ITEMS
RANDOM_CALIBRATION_ITEMS = 64
Feeds = dict[str, np.ndarray]


def calibration_files(source: Path) -> list[Path]:
    """The .npz files `--calibration-data` names (a file, or a folder of them); an error says what is wrong."""
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
    for path in calibration_files(Path(source)):
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


def count_items(feeds: Sequence[dict[str, np.ndarray]], spec: ModelSpec) -> int:
    """Items in a list of feeds: along the batch axis, or one per feed for an unbatched model."""
    if not feeds:
        return 0
    return sum(len(next(iter(f.values()))) for f in feeds) if spec.batched else len(feeds)


def calibration_for(options: PrecisionOptions, spec: ModelSpec,
                    note: Callable[[str], None] | None = None) -> tuple[list[Feeds], dict[str, Any]]:
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
    feeds = random_calibration(spec, items=min(RANDOM_CALIBRATION_ITEMS, options.max_calibration_items))
    return feeds, {"source": "random (testing only)", "items": count_items(feeds, spec), "batches": len(feeds),
                   "method": options.calibration_method}
