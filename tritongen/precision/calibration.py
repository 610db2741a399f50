"""Calibration data for static INT8: the user's .npz files checked against the model's inputs, or random feeds."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tritongen import defaults
from tritongen.errors import TritongenError
from tritongen.samples import npz_files, read_npz
from tritongen.spec import ModelSpec, random_inputs

if TYPE_CHECKING:
    from tritongen.precision.options import PrecisionOptions

CALIBRATION_BATCH = 8
MAX_CALIBRATION_ITEMS = defaults.CALIBRATION_ITEMS
RANDOM_CALIBRATION_ITEMS = 64
Feeds = dict[str, np.ndarray]


def calibration_files(source: Path) -> list[Path]:
    """The .npz files `--calibration-data` names (a file, or a folder of them); an error says what is wrong."""
    return npz_files(source, "--calibration-data")


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
        checked = read_npz(path, spec, "calibration")
        count = len(next(iter(checked.values()))) if spec.batched else 1
        step = batch if spec.batched else 1
        for start in range(0, count, step):
            if items >= max_items:
                return feeds
            take = min(step, max_items - items, count - start)
            feeds.append({k: v[start:start + take] for k, v in checked.items()} if spec.batched else checked)
            items += take
    return feeds


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
