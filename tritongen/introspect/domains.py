"""The values each input takes, so that example inputs are ones the model could really get.

Per input, in this order: what `--input` gave (a value range or a role); for an integer input, the rows of the
embedding table it indexes, found by running the model once and seeing which table each input reaches (or, in an
exported program, by following the graph from the embedding back to the input). Names are only the fallback: an
`attention_mask` or `*_mask` input is a padding mask, `position_ids` counts. An integer input that reaches no table
is drawn below the smallest table of the model, which every table can take.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from tritongen.spec import ModelSpec, TensorSpec, random_inputs

MASK_NAME = re.compile(r"(^|_)mask$")  # attention_mask, padding_mask, mask
POSITION_NAMES = frozenset({"position_ids", "positions", "pos_ids"})
# Ops an index tensor may pass through on its way to an embedding and still be the same values.
_SAME_VALUES = frozenset({"view", "reshape", "_unsafe_view", "unsqueeze", "squeeze", "expand", "slice", "select",
                          "clone", "contiguous", "alias", "flatten", "_to_copy", "to", "detach"})


def role_by_name(tensor: TensorSpec) -> TensorSpec:
    """The fallback: a role from the input's name, where it has neither a value range nor a role."""
    if tensor.value_range is not None or tensor.role is not None or not tensor.shape:
        return tensor
    if MASK_NAME.search(tensor.name):
        return replace(tensor, role="mask")
    if tensor.name in POSITION_NAMES and not tensor.dtype.is_float and tensor.dtype.short != "bool":
        return replace(tensor, role="positions")
    return tensor


def _open(tensor: TensorSpec) -> bool:
    """An integer input whose values are not known yet."""
    return tensor.value_range is None and tensor.role is None and not tensor.dtype.is_float \
        and tensor.dtype.short != "bool"


def embedding_tables(module: Any) -> list[tuple[str, int, Any]]:
    """(qualified name, rows, module) of every embedding table of a module, TorchScript ones included."""
    import torch

    tables = []
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Embedding | torch.nn.EmbeddingBag):
            tables.append((name, int(m.num_embeddings), m))
        elif getattr(m, "original_name", "") in ("Embedding", "EmbeddingBag") and hasattr(m, "weight"):
            tables.append((name, int(m.weight.shape[0]), m))  # TorchScript: no hooks, so never traced
    return tables


def with_value_domains(model: Any, spec: ModelSpec, exported_program: Any = None, lengths_index: int = 0
                       ) -> tuple[ModelSpec, dict[str, str]]:
    """`spec` with a value range or role for every input, and where each came from (for the manifest).

    `model` is an `introspect.BoundModel`; it runs once, at the example batch and the first lengths, when some
    integer input's range is not known yet. An exported program's graph says it without running.
    """
    from tritongen.export.onnx import example_batch, example_lengths

    inputs = [role_by_name(t) for t in spec.inputs]
    sources = {t.name: ("declared (--input, or the checkpoint's task)" if t.value_range or t.role
                        else f"{u.role} (from its name)")
               for t, u in zip(spec.inputs, inputs, strict=True) if u.value_range or u.role}
    if exported_program is not None:
        found, why = program_domains(exported_program, tuple(inputs))
        return replace(spec, inputs=found), {**sources, **why}
    open_names = [t.name for t in inputs if _open(t)]
    tables = embedding_tables(model.module) if open_names else []
    if not tables:
        return replace(spec, inputs=tuple(inputs)), sources
    smallest = min(rows for _, rows, _ in tables)
    # Below the smallest table every table takes the values: the run that finds out which table is which is safe.
    safe = (0, smallest - 1)
    probe = replace(spec, inputs=tuple(replace(t, value_range=safe) if t.name in open_names else t for t in inputs))
    feeds = random_inputs(probe, example_batch(probe), example_lengths(probe, lengths_index), np.random.default_rng(0))
    reached = _tables_reached(model, probe, feeds, tables, open_names)
    final = []
    for t in probe.inputs:
        if t.name in reached:
            table, rows = min(reached[t.name], key=lambda r: r[1])
            t = replace(t, value_range=(0, rows - 1))
            sources[t.name] = f"0-{rows - 1}: the rows of embedding '{table}'"
        elif t.name in open_names:
            sources[t.name] = f"0-{smallest - 1}: below the smallest embedding table (it reaches none directly)"
        final.append(t)
    return replace(spec, inputs=tuple(final)), sources


def _tables_reached(model: Any, spec: ModelSpec, feeds: Mapping[str, np.ndarray], tables: list[tuple[str, int, Any]],
                    names: list[str]) -> dict[str, list[tuple[str, int]]]:
    """Which table each input indexes, seen by hooks on the tables while the model runs once on `feeds`."""
    import torch

    tensors = {t.name: torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in spec.inputs}
    storage = {n: tensors[n].untyped_storage().data_ptr() for n in names}
    reached: dict[str, list[tuple[str, int]]] = {}

    def hook(table: str, rows: int):  # noqa: ANN202
        def record(_module: Any, args: tuple[Any, ...]) -> None:
            index = args[0] if args else None
            if isinstance(index, torch.Tensor):
                for name, ptr in storage.items():
                    if index.untyped_storage().data_ptr() == ptr:  # the input itself, or a view of it
                        reached.setdefault(name, []).append((table, rows))
        return record

    handles = []
    try:
        for table, rows, module in tables:
            if isinstance(module, torch.jit.ScriptModule):
                continue
            handles.append(module.register_forward_pre_hook(hook(table, rows)))
        if handles:
            model.call([tensors[t.name] for t in spec.inputs])
    finally:
        for handle in handles:
            handle.remove()
    return reached


def program_domains(ep: Any, specs: tuple[TensorSpec, ...]) -> tuple[tuple[TensorSpec, ...], dict[str, str]]:
    """Value ranges of an exported program's open integer inputs, and where each came from: the rows of the embedding
    its graph indexes with the input, else the range of the program's own example input."""
    import torch

    from tritongen.introspect.inputs import inputs_of_program

    placeholders = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    placeholder_of = dict(zip(inputs_of_program(ep).names, placeholders, strict=True))
    tables: dict[str, tuple[str, int]] = {}
    for node in ep.graph.nodes:
        if node.op != "call_function" or getattr(node.target, "__name__", "").split(".")[0] != "embedding":
            continue
        weight, index = node.args[0], node.args[1]
        val = getattr(weight, "meta", {}).get("val")
        source = _same_values_source(index)
        if source is not None and val is not None and int(val.shape[0]) < tables.get(source, ("", 1 << 62))[1]:
            tables[source] = (str(weight), int(val.shape[0]))
    examples: dict[str, Any] = {}
    if ep.example_inputs is not None:
        args, kwargs = ep.example_inputs
        examples = dict(zip(placeholder_of, list(args) + list(kwargs.values()), strict=False))
    out, sources = [], {}
    for t in specs:
        if _open(t):
            table = tables.get(placeholder_of.get(t.name, t.name))
            example = examples.get(t.name)
            if table is not None:
                t = replace(t, value_range=(0, table[1] - 1))
                sources[t.name] = f"0-{table[1] - 1}: the rows of the embedding the program indexes with it ({table[0]})"
            elif isinstance(example, torch.Tensor) and example.numel():
                t = replace(t, value_range=(int(example.min()), int(example.max())))
                sources[t.name] = f"{t.value_range[0]}-{t.value_range[1]}: the range of the program's example input"
        out.append(t)
    return tuple(out), sources


def _same_values_source(node: Any) -> str | None:
    """The placeholder an index tensor comes from, through ops that keep its values (views, copies)."""
    while getattr(node, "op", None) == "call_function":
        name = getattr(node.target, "__name__", "").split(".")[0]
        if name not in _SAME_VALUES or not node.args:
            return None
        node = node.args[0]
    return node.name if getattr(node, "op", None) == "placeholder" else None
