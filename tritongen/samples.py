"""Inputs from the user's .npz files (one array per input, items along axis 0; a folder of them for several
lengths), checked against the model's inputs: example inputs (`--example-inputs`) and INT8 calibration data alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec, TensorSpec

Feeds = dict[str, np.ndarray]
SAVE_HINT = "save inputs with numpy.savez(path, **{input_name: array})"
# At most this many example items go into the reference data validate sends in one request.
MAX_REFERENCE_ITEMS = 16


def npz_files(source: Path, flag: str) -> list[Path]:
    """The .npz files an option names (a file, or a folder of them); an error says what is wrong."""
    if not source.exists():
        raise TritongenError(f"{flag} '{source}' does not exist",
                             "pass an .npz file (one array per input) or a folder of .npz files")
    files = sorted(source.glob("*.npz")) if source.is_dir() else [source]
    if not files:
        raise TritongenError(f"{flag} folder '{source}' holds no .npz file", SAVE_HINT)
    if source.is_file() and source.suffix != ".npz":
        raise TritongenError(f"{flag} '{source}' is not an .npz file", SAVE_HINT)
    return files


def read_npz(path: Path, spec: ModelSpec, what: str) -> dict[str, np.ndarray]:
    """One file's arrays, checked against the model's inputs and cast to their dtypes."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise TritongenError(f"cannot read {what} file {path}: {exc}", SAVE_HINT) from exc
    return check_arrays(path, arrays, spec, what)


def items_in(feeds: Feeds, spec: ModelSpec) -> int:
    return len(next(iter(feeds.values()))) if spec.batched and feeds else 1


@dataclass(frozen=True)
class Examples:
    """The user's example inputs: one set of feeds per file (items along axis 0), by file name."""

    sets: tuple[tuple[str, Feeds], ...]

    def batches(self, spec: ModelSpec) -> list[tuple[str, Feeds]]:
        """(label, feeds) per batch of at most max_batch_size items (one item each for a model that does not batch)."""
        out = []
        for name, feeds in self.sets:
            count, step = items_in(feeds, spec), max(spec.max_batch_size, 1)
            if not spec.batched:
                out.append((f"examples {name}", feeds))
                continue
            for start in range(0, count, step):
                stop = min(start + step, count)
                out.append((f"examples {name} items {start}-{stop - 1}", {k: v[start:stop] for k, v in feeds.items()}))
        return out

    def reference(self, spec: ModelSpec) -> Feeds:
        """The first file's first items (up to MAX_REFERENCE_ITEMS and max_batch_size): the reference data validate
        sends."""
        feeds = self.sets[0][1]
        if not spec.batched:
            return feeds
        return {k: v[:min(MAX_REFERENCE_ITEMS, spec.max_batch_size)] for k, v in feeds.items()}


def read_examples(source: Path, spec: ModelSpec) -> Examples:
    """`--example-inputs FILE.npz|DIR`, checked against the model's inputs."""
    return Examples(tuple((p.name, read_npz(p, spec, "example")) for p in npz_files(Path(source), "--example-inputs")))


def check_arrays(path: Path, arrays: dict[str, np.ndarray], spec: ModelSpec, what: str) -> dict[str, np.ndarray]:
    """The arrays of one file checked against the model's inputs (names, ranks, sizes, dtypes, value ranges) and cast
    to the inputs' dtypes; `what` names the data in messages ("calibration", "example")."""
    names = [t.name for t in spec.inputs]
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names]
    if missing or extra:
        raise TritongenError(
            f"{what} file {path.name} has arrays {', '.join(sorted(arrays)) or 'none'} but the model's inputs are "
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
                f"{what} array '{t.name}' in {path.name} has shape {list(array.shape)}, but the input is "
                f"{per_item} per item" + (" with the items along a first axis" if spec.batched else ""),
                f"save '{t.name}' as an array of shape [items, {', '.join(str(d) for d in t.shape)}]"
                if spec.batched else f"save one item per file, shaped {per_item}")
        dims = array.shape[1:] if spec.batched else array.shape
        for i, (want, got) in enumerate(zip(t.shape, dims, strict=True)):
            if isinstance(want, int) and want != got:
                raise TritongenError(
                    f"{what} array '{t.name}' in {path.name} has size {got} at per-item dim {i}, the input "
                    f"needs {want} ({per_item})", f"resize the {what} data to the model's input shape")
            if isinstance(want, str) and axis_sizes.setdefault(want, got) != got:
                raise TritongenError(
                    f"{what} arrays in {path.name} disagree on axis '{want}' ({axis_sizes[want]} vs {got})",
                    "inputs that share a named axis must have the same length in each file")
        checked[t.name] = _cast(path, t, array, what)
        if spec.batched:
            counts.add(array.shape[0])
    if len(counts) > 1:
        raise TritongenError(f"{what} arrays in {path.name} hold different numbers of items ({sorted(counts)})",
                             "every input needs the same number of items along axis 0")
    if spec.batched and 0 in counts:
        raise TritongenError(f"{what} file {path.name} holds no items", "save at least one item per input")
    return checked


def _cast(path: Path, tensor: TensorSpec, array: np.ndarray, what: str) -> np.ndarray:
    want = tensor.dtype
    kind = array.dtype.kind
    if want.is_float and kind == "f" or (not want.is_float and want.short != "bool" and kind in "iu") or \
            (want.short == "bool" and kind == "b"):
        cast = array.astype(want.np_dtype)
        if kind in "iu" and not np.array_equal(cast.astype(np.int64), array.astype(np.int64)):
            raise TritongenError(f"{what} array '{tensor.name}' in {path.name} has values that do not fit "
                                 f"{want.short}", f"keep values within the range of {want.short}")
        if tensor.value_range is not None and cast.size and (cast.min() < tensor.value_range[0]
                                                             or cast.max() > tensor.value_range[1]):
            low, high = tensor.value_range
            raise TritongenError(f"{what} array '{tensor.name}' in {path.name} has values from {cast.min()} to "
                                 f"{cast.max()}, but the model takes {low}-{high} there",
                                 "check the data was made for this model (its vocabulary)")
        return cast
    raise TritongenError(f"{what} array '{tensor.name}' in {path.name} is {array.dtype}, but the input is "
                         f"{want.short}", f"save it as {want.numpy}")
