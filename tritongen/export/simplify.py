"""Simplifying an exported ONNX model with onnxsim, kept only when it still runs and gives the same outputs.

onnxsim reads and writes the files itself (its C++ core, given paths: no Python protobuf round trip, which costs
seconds on a model of hundreds of MB), and writes the weights inline, so an export with its weights in a .data file
(quick to write) becomes one file again here. Models above `EXTERNAL_DATA_THRESHOLD` (256 MB) of weights are served
as exported, with external data: onnxsim copies their weights through protobuf (about 4 s for BERT-base's 440 MB,
where its own work took 0.14 s), the dynamo exporter's optimizer has already folded their constants, and the
simplified BERT-base was no faster in ONNX Runtime (which folds the same at load). The exported model is kept aside
(`Simplification.original`) and the simplified one takes its place; whoever checks the result decides: `check=True`
compares the two here on random inputs (unless onnxsim changed nothing in the graph), `check=False` leaves it to the
caller's own parity check against PyTorch (the build's), which puts the exported model back with `restore_exported`
when the simplified one fails it. Either way a simplified model that does not match is never kept.
"""

from __future__ import annotations

import contextlib
import inspect
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.export.onnx import (
    EXTERNAL_DATA_THRESHOLD,
    check_dynamic_axes,
    example_batch,
    example_lengths,
    quiet_logs,
    summarise_export_error,
)
from tritongen.spec import ModelSpec, random_inputs

EXPORTED_DIR = "exported"  # next to the model: the exported model while the simplified one awaits its check


@dataclass(frozen=True)
class Simplification:
    applied: bool
    message: str
    nodes_before: int = 0
    nodes_after: int = 0
    original: Path | None = None  # the exported model, kept until the simplified one passed the caller's check


def simplify_onnx(path: Path, spec: ModelSpec, *, check: bool = True) -> Simplification:
    """Simplify `path` in place with onnxsim; keep the exported model when onnxsim fails or (with `check`) the
    result does not run or gives other outputs. With `check=False` the caller checks, see the module doc."""
    import onnx

    try:
        import onnxsim
    except ImportError:
        return Simplification(False, "onnxsim is not installed; kept the exported model as is")
    data_file = path.with_name(path.name + ".data")
    if data_file.exists() and data_file.stat().st_size > EXTERNAL_DATA_THRESHOLD:
        return Simplification(False, f"not simplified: more than {EXTERNAL_DATA_THRESHOLD // 1_000_000} MB of weights "
                                     "are served as exported, with external data (onnxsim would only copy them)")
    original = onnx.load(str(path), load_external_data=False)  # the graph: weights are not needed to compare
    before = len(original.graph.node)
    work = path.parent / "simplified"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    candidate = work / path.name  # the same file name: an external data file's name is baked into the graph
    try:
        with quiet_logs():
            simplified, ok = _simplify(onnxsim, path, candidate)
    except Exception as exc:
        shutil.rmtree(work, ignore_errors=True)
        return Simplification(False, f"onnxsim failed ({summarise_export_error(exc)}); kept the exported model",
                              before, before)
    if not ok:
        shutil.rmtree(work, ignore_errors=True)
        return Simplification(False, "onnxsim could not verify its result; kept the exported model", before, before)
    after = len(simplified.graph.node)
    # Nothing to simplify (the dynamo exporter's own optimizer often did it already): no check against itself.
    unchanged = same_graph(original, simplified)
    check_dynamic_axes(simplified, spec)
    if check and not unchanged:
        try:
            worst = _max_difference(path, candidate, spec)
        except Exception as exc:
            shutil.rmtree(work, ignore_errors=True)
            return Simplification(False, f"the simplified model does not run ({summarise_export_error(exc)}); "
                                  "kept the exported model", before, before)
        if worst is not None:
            shutil.rmtree(work, ignore_errors=True)
            return Simplification(False, f"simplification changed outputs ({worst}); kept the exported model",
                                  before, before)
    kept = _swap(path, candidate, path.parent / EXPORTED_DIR)
    shutil.rmtree(work, ignore_errors=True)
    message = f"simplified: {before} → {after} nodes" + (" (nothing to simplify)" if unchanged else "")
    return Simplification(True, message, before, after, None if check else kept)


def writes_files() -> bool:
    """Whether onnxsim is installed and simplifies files itself (0.5 and later): then an export need not write its
    weights inline, since the simplified model is written with them inline anyway."""
    try:
        import onnxsim
    except ImportError:
        return False
    return "output_path" in inspect.signature(onnxsim.simplify).parameters


def _simplify(onnxsim: Any, path: Path, candidate: Path) -> tuple[Any, bool]:
    """onnxsim on files (C++ reads and writes them, with the weights inline), or on a loaded model with onnxsim
    versions that take no paths."""
    import onnx

    try:
        return onnxsim.simplify(str(path), output_path=str(candidate))
    except TypeError:  # onnxsim < 0.5: no output_path
        simplified, ok = onnxsim.simplify(onnx.load(str(path)))
        if ok:
            onnx.save_model(simplified, str(candidate))
        return simplified, ok


def onnx_files(path: Path) -> list[Path]:
    """A model file and its external data file, where it has one."""
    data = path.with_name(path.name + ".data")
    return [path, data] if data.exists() else [path]


def _swap(path: Path, candidate: Path, aside: Path) -> Path:
    """Move the exported model (and its data file) into `aside`, and the simplified one into its place."""
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for file in onnx_files(path):
        file.replace(aside / file.name)
    for file in onnx_files(candidate):
        file.replace(path.parent / file.name)
    return aside / path.name


def restore_exported(result: Simplification, path: Path) -> None:
    """Put the exported model back in place of the simplified one (which failed the caller's check)."""
    if result.original is None:
        return
    for file in onnx_files(path):
        file.unlink()
    for file in onnx_files(result.original):
        file.replace(path.parent / file.name)
    with contextlib.suppress(OSError):
        result.original.parent.rmdir()


def same_graph(a: Any, b: Any) -> bool:
    """The same nodes (operators, wiring, attributes) in the same order on the same weights (names, types, shapes):
    onnxsim changed nothing."""
    def signature(model: Any) -> tuple[Any, ...]:
        graph = model.graph
        # Names and metadata aside: onnxsim names unnamed nodes and drops the exporter's metadata.
        nodes = tuple((n.op_type, n.domain, tuple(n.input), tuple(n.output),
                       tuple(sorted(a.SerializeToString(deterministic=True) for a in n.attribute))) for n in graph.node)
        weights = tuple((t.name, t.data_type, tuple(t.dims)) for t in graph.initializer)
        return nodes, weights, tuple(i.name for i in graph.input), tuple(o.name for o in graph.output)

    return signature(a) == signature(b)


def _max_difference(a: Path, b: Path, spec: ModelSpec) -> str | None:
    """Run both files on the same random inputs; describe the first output that differs beyond tolerance."""
    from tritongen.runners.onnxruntime import OnnxRuntimeRunner

    feeds = random_inputs(spec, example_batch(spec), example_lengths(spec, 1), np.random.default_rng(1))
    with OnnxRuntimeRunner(a) as ra, OnnxRuntimeRunner(b) as rb:
        out_a, out_b = ra.infer(feeds), rb.infer(feeds)
    for name, x in out_a.items():
        y = out_b.get(name)
        if y is None or y.shape != x.shape or not np.allclose(x, y, atol=1e-5, rtol=1e-4, equal_nan=True):
            return f"output '{name}' differs"
    return None
