"""PyTorch module to ONNX file with named dynamic axes, checked after export (simplified by `simplify.py`)."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import TritongenError, stop_if_interrupted
from tritongen.spec import BATCH_AXIS, ModelSpec, TensorSpec, dtype_from_onnx, random_inputs

# Models above this many bytes of weights are exported and served with external data (model.onnx.data): ONNX
# protobufs stop at 2 GiB, and well before that inline weights cost seconds in every protobuf write and read (BERT-base,
# 440 MB, measured on 2 cores: 4.6 s more to export inline, 2.6 s per onnx.save, 0.3 s more per ONNX Runtime session).
EXTERNAL_DATA_THRESHOLD = 256_000_000
# Opsets each exporter writes (torch 2.13, measured): the dynamo exporter implements 18 and up and failed to convert
# every model we tried to a lower one (it then writes 18 anyway); the legacy exporter writes 7 to 20.
DYNAMO_MIN_OPSET = 18
LEGACY_OPSETS = (7, 20)
LEGACY_DEFAULT_OPSET = 18


def opset_range(legacy: bool) -> tuple[int, int]:
    """The opsets `--opset` may ask of an exporter: the dynamo one up to the newest the onnx package knows."""
    if legacy:
        return LEGACY_OPSETS
    import onnx

    return DYNAMO_MIN_OPSET, onnx.defs.onnx_opset_version()


def check_opset(opset: int | None, legacy: bool) -> None:
    """`--opset` within what the exporter writes: refused before the export, never silently replaced."""
    if opset is None:
        return
    low, high = opset_range(legacy)
    if not low <= opset <= high:
        which = "the legacy exporter (used for TorchScript checkpoints)" if legacy else "the ONNX exporter"
        raise TritongenError(f"--opset {opset} is outside what {which} writes ({low} to {high})",
                             f"pass --opset between {low} and {high}, or leave it out for the exporter's default")


@dataclass(frozen=True)
class OnnxExport:
    """What `onnx_from_module` wrote and how."""

    path: Path
    exporter: str  # "dynamo" or "legacy (torch.jit.trace)"
    opset: int
    files: tuple[Path, ...]  # model.onnx and its external data file, if any
    warnings: tuple[str, ...] = field(default_factory=tuple)


def example_lengths(spec: ModelSpec, which: int = 0) -> dict[str, int]:
    return {axis: spec.lengths(axis)[which] for axis in spec.dynamic_axes}


def example_batch(spec: ModelSpec) -> int | None:
    """Batch of the example inputs: at least 2, since a batch of 1 can silently freeze the batch axis."""
    return 2 if spec.batched else None


def torch_args(feeds: dict[str, np.ndarray], spec: ModelSpec) -> tuple[Any, ...]:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in spec.inputs)


def _by_name(module: Any, exported_program: Any) -> bool:
    """Whether the model is called with keyword inputs (forward() has names) rather than positionally."""
    from tritongen.introspect import inputs_of_module

    return exported_program is None and inputs_of_module(module).keywords


def _varargs(module: Any, exported_program: Any) -> bool:
    """Whether forward() takes *args: torch.export then wants the dynamic shapes of all of them as one tuple."""
    from tritongen.introspect import inputs_of_module

    return exported_program is None and inputs_of_module(module).positional


def onnx_from_module(
    module: Any,
    spec: ModelSpec,
    path: Path,
    *,
    opset: int | None = None,
    exported_program: Any = None,
    force_legacy: bool = False,
    external_data: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> OnnxExport:
    """Export `module` to `path`, trying the dynamo exporter first and the legacy one when it fails.

    The module is fed by name when its forward() has names. The legacy exporter runs in a child process (its C++
    side prints graphs to stdout when it fails). An interrupt is never taken for an exporter failure: it stops the
    export (KeyboardInterrupt).
    """
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    feeds = random_inputs(spec, example_batch(spec), example_lengths(spec), np.random.default_rng(0))
    args = torch_args(feeds, spec)
    by_name = _by_name(module, exported_program)
    notes: list[str] = []
    is_script = isinstance(module, torch.jit.ScriptModule)
    check_opset(opset, legacy=is_script or force_legacy)
    # Weights in a .data file: always above EXTERNAL_DATA_THRESHOLD; on request (`external_data`) for any size, which
    # skips serializing them into the graph's protobuf: the build asks for it when onnxsim writes the served model
    # (with its weights inline) anyway.
    big = external_data or _weight_bytes(module) > EXTERNAL_DATA_THRESHOLD
    dynamo_error: str | None = None
    exporter = ""
    if not (is_script or force_legacy):
        try:
            _export_dynamo(exported_program if exported_program is not None else module, args, spec, path, opset, big,
                           by_name, _varargs(module, exported_program))
            exporter = "dynamo"
        except TritongenError:
            raise
        except Exception as exc:  # the dynamo exporter fails in many ways; the legacy one may still work
            stop_if_interrupted(exc)
            dynamo_error = summarise_export_error(exc)
            _remove_outputs(path)
            if exported_program is not None:
                raise TritongenError(f"the ONNX exporter failed on this exported program: {dynamo_error}",
                                     "re-export the program with torch.export, or save a state_dict instead") from exc
            notes.append(f"the dynamo exporter failed ({dynamo_error}); used the legacy exporter instead")
    if not exporter:
        try:
            from tritongen.export.legacy import export_in_child

            export_in_child(module, spec, path, opset)
        except TritongenError:
            _remove_outputs(path)
            raise
        except Exception as exc:
            stop_if_interrupted(exc)
            _remove_outputs(path)
            detail = summarise_export_error(exc)
            if dynamo_error and dynamo_error != detail:
                # Both failed: the message that names an operator is the useful one.
                named = [d for d in (dynamo_error, detail) if d.startswith("operator ")]
                detail = named[0] if named else f"dynamo exporter: {dynamo_error}; legacy exporter: {detail}"
            raise TritongenError(f"ONNX export failed: {detail}",
                                 _export_hint(detail)) from exc
        exporter = "legacy (torch.jit.trace)" if not is_script else "legacy (TorchScript)"
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    renamed = rename_graph_axes(model, spec)
    check_dynamic_axes(model, spec)
    files = [path]
    data_file = path.with_name(path.name + ".data")
    if data_file.exists():
        files.append(data_file)
    if renamed:  # rewrites only the graph proto; external data stays where it is (inline weights are written again)
        onnx.save_model(model, str(path))
    opset_used = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset is not None and opset_used != opset:
        _remove_outputs(path)
        raise TritongenError(f"--opset {opset} was asked for, but the {exporter} exporter could write this model "
                             f"only at opset {opset_used}", f"pass --opset {opset_used}, or leave --opset out")
    for note in notes:
        if on_warning:
            on_warning(note)
    return OnnxExport(path, exporter, opset_used, tuple(files), tuple(notes))


def _export_dynamo(model: Any, args: tuple[Any, ...], spec: ModelSpec, path: Path, opset: int | None, big: bool,
                   by_name: bool, varargs: bool = False) -> None:
    import torch

    dims: dict[str, Any] = {}

    def dim(axis: str) -> Any:
        if axis not in dims:
            upper = spec.max_batch_size if axis == BATCH_AXIS and spec.max_batch_size > 2 else None
            dims[axis] = torch.export.Dim(axis, min=1, max=upper) if upper else torch.export.Dim(axis, min=1)
        return dims[axis]

    dynamic_shapes = []
    for t in spec.inputs:
        axes: dict[int, Any] = {}
        offset = 1 if spec.batched else 0
        if spec.batched:
            axes[0] = dim(BATCH_AXIS)
        for i, d in enumerate(t.shape):
            if isinstance(d, str):
                axes[i + offset] = dim(d)
        dynamic_shapes.append(axes or None)
    is_program = isinstance(model, torch.export.ExportedProgram)
    names = [t.name for t in spec.inputs]
    shapes: Any = dict(zip(names, dynamic_shapes, strict=True)) if by_name else tuple(dynamic_shapes)
    if varargs:
        shapes = (shapes,)
    with quiet_logs(), torch.no_grad():
        torch.onnx.export(
            model,
            () if by_name else args,
            str(path),
            kwargs=dict(zip(names, args, strict=True)) if by_name else None,
            dynamo=True,
            input_names=names,
            output_names=[t.name for t in spec.outputs] or None,
            opset_version=opset,
            dynamic_shapes=None if is_program else shapes,
            external_data=big,
            optimize=True,
            verbose=False,  # its progress lines would go to stdout, which --json keeps for the JSON object
        )


def export_legacy(module: Any, spec: ModelSpec, path: Path, opset: int | None) -> None:
    """The legacy (TorchScript-based) exporter, in this process. Its C++ side may print graphs to stdout."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    feeds = random_inputs(spec, example_batch(spec), example_lengths(spec), np.random.default_rng(0))
    args = torch_args(feeds, spec)
    if _by_name(module, None):  # a trailing dict is the legacy exporter's way of passing keyword inputs
        args = ({t.name: a for t, a in zip(spec.inputs, args, strict=True)},)

    dynamic_axes: dict[str, dict[int, str]] = {}
    offset = 1 if spec.batched else 0
    for t in spec.inputs:
        axes = {0: BATCH_AXIS} if spec.batched else {}
        axes.update({i + offset: d for i, d in enumerate(t.shape) if isinstance(d, str)})
        if axes:
            dynamic_axes[t.name] = axes
    for t in spec.outputs:
        axes = {0: BATCH_AXIS} if spec.batched else {}
        axes.update({i + offset: f"{t.name}_dim{i + 1}" for i, d in enumerate(t.shape) if d == -1 or isinstance(d, str)})
        if axes:
            dynamic_axes[t.name] = axes
    # No torch.no_grad() here: the legacy exporter fails on TransformerEncoder's fast path under no_grad.
    with quiet_logs():
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs],
            opset_version=opset or LEGACY_DEFAULT_OPSET,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )


def rename_graph_axes(model: Any, spec: ModelSpec) -> bool:
    """Give every symbolic dim of the inputs our axis name (dynamo writes `s77`), and the same symbol elsewhere;
    whether anything was renamed."""
    mapping: dict[str, str] = {}
    graph_inputs = {i.name: i for i in model.graph.input}
    for t in spec.inputs:
        value = graph_inputs.get(t.name)
        if value is None:
            continue
        dims = value.type.tensor_type.shape.dim
        wanted = ([BATCH_AXIS] if spec.batched else []) + [d if isinstance(d, str) else None for d in t.shape]
        for i, d in enumerate(dims):
            if i < len(wanted) and wanted[i] and d.HasField("dim_param") and d.dim_param != wanted[i]:
                mapping.setdefault(d.dim_param, wanted[i])
    if not mapping:
        return False
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in mapping:
                d.dim_param = mapping[d.dim_param]
    return True


def check_dynamic_axes(model: Any, spec: ModelSpec) -> None:
    """Every axis that should be dynamic is symbolic in the graph: a frozen axis is an error, never a shipped model."""
    graph_inputs = {i.name: i for i in model.graph.input}
    initializers = {i.name for i in model.graph.initializer}
    missing = [t.name for t in spec.inputs if t.name not in graph_inputs]
    if missing:
        present = [n for n in graph_inputs if n not in initializers]
        raise TritongenError(
            f"the exported ONNX graph has no input named {', '.join(repr(m) for m in missing)} "
            f"(it has {', '.join(repr(p) for p in present) or 'no inputs'}); the exporter dropped an input the model ignores",
            "remove unused inputs from --input, or make forward() use them",
        )
    for t in spec.inputs:
        dims = graph_inputs[t.name].type.tensor_type.shape.dim
        expected_rank = len(t.shape) + (1 if spec.batched else 0)
        if len(dims) != expected_rank:
            raise TritongenError(f"input '{t.name}' has rank {len(dims)} in the ONNX graph but the spec gives rank "
                                 f"{expected_rank}", "check --input shapes")
        axes = ([BATCH_AXIS] if spec.batched else []) + list(t.shape)
        for i, (axis, d) in enumerate(zip(axes, dims, strict=True)):
            if isinstance(axis, str) and not d.HasField("dim_param"):
                frozen = d.dim_value if d.HasField("dim_value") else "?"
                raise TritongenError(
                    f"the exporter froze axis '{axis}' (dim {i}) of input '{t.name}' to {frozen}; "
                    "the model would reject other sizes",
                    "the model's code specialises on that size (e.g. a reshape with a constant or a batch-size "
                    "check): make it shape-generic" + (", or pass --max-batch-size 0" if axis == BATCH_AXIS else ""),
                )
    if not spec.batched:
        return
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            raise TritongenError(
                f"the exporter froze the batch axis of output '{out.name}' to {dims[0].dim_value}",
                "the model's code specialises on the batch size (e.g. x.view(2, -1)): use x.view(x.shape[0], -1) "
                "or x.flatten(1)",
            )


def outputs_from_onnx(path: Path) -> list[tuple[str, int]]:
    """Names and ONNX element types of the graph's outputs."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [(o.name, o.type.tensor_type.elem_type) for o in model.graph.output]


def onnx_output_specs(path: Path, spec: ModelSpec) -> tuple[TensorSpec, ...]:
    """Output specs read back from the graph: dtypes as exported (they can differ from PyTorch's, e.g. bool)."""
    by_name = {o.name: o for o in spec.outputs}
    specs = []
    for name, elem in outputs_from_onnx(path):
        base = by_name.get(name)
        shape = base.shape if base else ()
        specs.append(TensorSpec(name, dtype_from_onnx(elem), shape))
    return tuple(specs)


def _weight_bytes(module: Any) -> int:
    try:
        return sum(p.numel() * p.element_size() for p in module.parameters())
    except Exception:
        return 0


def _remove_outputs(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".data").unlink(missing_ok=True)


_OP_PATTERNS = (
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.]+)'"),
    re.compile(r"target=torch\.ops\.([\w.]+?)(?:\.default)?\]"),
    re.compile(r"Exporting the operator '?([\w:.]+)'? to ONNX opset version \d+ is not supported"),
    re.compile(r"No decompositions registered for[^\n]*?\b((?:aten|prims)::[\w.]+|(?:aten|prims)\.[\w.]+)"),
    re.compile(r"Unsupported FX nodes?:?\s*\{?'?call_function'?:\s*\[?'?([\w:.]+)"),
    re.compile(r"OnnxExporterError.*?((?:aten|prims)[.:][\w.]+)"),
    re.compile(r"\b((?:aten|prims)::[\w]+(?:\.[\w]+)?)\b.*not supported"),
)


_ANSI = re.compile(r"\x1b\[[0-9;]*m|\[\d+m")


def summarise_export_error(exc: BaseException) -> str:
    """One line for an exporter error: the unsupported operator when one is named, else the first message line."""
    from tritongen.export.legacy import LegacyExportError

    if isinstance(exc, LegacyExportError):
        return exc.summary  # summarised in the child process, which had the whole chain
    text = _ANSI.sub("", "\n".join(str(e) for e in _chain(exc)))
    for pattern in _OP_PATTERNS:
        m = pattern.search(text)
        if m:
            return f"operator '{m.group(1)}' is not supported by the ONNX exporter"
    # The root cause, last in the chain, says the most; the wrappers around it say "step 1/3 failed".
    for cause in reversed(_chain(exc)):
        for line in _ANSI.sub("", str(cause)).splitlines():
            line = line.strip()
            if line and not line.startswith(("Traceback", "File ", "[", "- ")) and "Next steps" not in line:
                return f"{type(cause).__name__}: {line[:300]}"
    return type(exc).__name__


def _export_hint(detail: str) -> str:
    if "operator" in detail and "not supported" in detail:
        return ("replace that operation in forward(), register a custom ONNX translation, or pass a newer --opset; "
                "see https://pytorch.org/docs/stable/onnx.html")
    if "dtype" in detail.lower() or "expected scalar type" in detail.lower():
        return "check the --input dtypes"
    return "re-run with --debug for the exporter's full error"


def _chain(exc: BaseException) -> list[BaseException]:
    out = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        out.append(cur)
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return out


@contextlib.contextmanager
def quiet_logs():  # noqa: ANN202
    """The exporters' warnings and log lines are noise here; their progress is off (`verbose=False`)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
