"""A model's input names, and `--input` bound to them by name.

Inputs bind by name, never by position: an `--input` names one of the model's inputs (a forward() parameter, a
TorchScript schema argument, an exported program's input), command-line order does not matter, and the config
lists inputs in the model's order. Only a forward(*args) has no names; it binds in the order given, with a warning.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tritongen.errors import TritongenError
from tritongen.spec import BATCH_AXIS, TensorSpec, dtype_from_torch

Note = Callable[[str], None]


@dataclass(frozen=True)
class ModelInputs:
    """The inputs a model takes, by name, in its own order, and how it is called with them."""

    names: tuple[str, ...]
    required: tuple[str, ...]
    source: str  # where the names come from, for messages: "forward()", "the exported program"
    positional: bool = False  # forward(*args): no names, so --input binds in the order given
    open_keywords: bool = False  # forward(**kwargs) and no named parameter: any name is accepted
    keywords: bool = True  # every input is passed by keyword (else positionally, except `keyword_names`)
    keyword_names: tuple[str, ...] = ()  # with keywords False: the inputs still passed by keyword (a program's kwargs)

    def describe(self) -> str:
        return ", ".join(n if n in self.required else f"{n} (optional)" for n in self.names) or "no named inputs"

    def call_arguments(self, names: Sequence[str], values: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
        """(args, kwargs) to call the model with `values`, given in the order of `names`."""
        if self.keywords:
            return [], dict(zip(names, values, strict=True))
        kwargs = {n: v for n, v in zip(names, values, strict=True) if n in self.keyword_names}
        return [v for n, v in zip(names, values, strict=True) if n not in self.keyword_names], kwargs


def inputs_of_module(module: Any) -> ModelInputs:
    """The inputs of a module's forward(): the TorchScript schema of a scripted module, else the Python signature."""
    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:
        args = list(schema.arguments)[1:]  # the first is `self`
        return ModelInputs(tuple(a.name for a in args), tuple(a.name for a in args if not a.has_default_value()),
                           "the TorchScript schema of forward()")
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (AttributeError, TypeError, ValueError):
        return ModelInputs((), (), "forward()", positional=True, keywords=False)
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return ModelInputs((), (), "forward()", positional=True, keywords=False)
    named = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    # forward(**inputs) accepts any name; a forward that names its inputs and also takes **kwargs (as Hugging Face
    # models do) is held to the names it declares.
    return ModelInputs(tuple(p.name for p in named), tuple(p.name for p in named if p.default is p.empty),
                       "forward()", open_keywords=not named and any(p.kind is p.VAR_KEYWORD for p in params))


def inputs_of_program(ep: Any) -> ModelInputs:
    """The user inputs of a torch.export program, in its order, called as it was exported: positional inputs first,
    then keyword inputs (`export(model, (), {"input_ids": ...})`, the Hugging Face way). A program is always called
    with all of them."""
    placeholders = tuple(s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT")
    in_spec = ep.call_spec.in_spec
    args_spec, kwargs_spec = (in_spec.children_specs if in_spec is not None and in_spec.num_children == 2
                              else (None, None))
    if args_spec is None or kwargs_spec is None:
        return ModelInputs(placeholders, placeholders, "the exported program", keywords=False)
    leaves = [*args_spec.children_specs, *kwargs_spec.children_specs]
    if len(leaves) != len(placeholders) or any(not leaf.is_leaf() for leaf in leaves):
        raise TritongenError(
            "the exported program takes nested inputs (tuples, lists or dicts of tensors), which Triton cannot feed",
            "re-export the model with one tensor per argument: torch.export.export(model, args, kwargs) where each "
            "value is a tensor")
    keys = tuple(str(k) for k in (kwargs_spec.context or ()))
    names = placeholders[:args_spec.num_children] + keys
    return ModelInputs(names, names, "the exported program", keywords=False, keyword_names=keys)


def bind_inputs(model: ModelInputs, given: Sequence[TensorSpec], note: Note | None = None, *,
                partial: bool = False) -> tuple[TensorSpec, ...]:
    """`--input` specs matched to the model's inputs by name, in the model's order; a wrong name is an error.

    With `partial`, inputs may be left out (an exported program describes them itself).
    """
    names = [t.name for t in given]
    takes = f"({model.source} takes {model.describe()})"
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TritongenError(f"--input '{repeated[0]}' is given twice {takes}", "give each input once")
    if model.positional:
        if note and given:
            note(f"forward() takes *args, so its inputs have no names: the --input values are fed in the order given "
                 f"({', '.join(names)})")
        return tuple(given)
    if model.open_keywords:
        if note and given:
            note(f"forward() takes **kwargs only, so any input name is accepted: {', '.join(names)}")
        return tuple(given)
    unknown = [n for n in names if n not in model.names]
    if unknown:
        raise TritongenError(f"--input '{unknown[0]}' is not an input of the model {takes}",
                             "name each --input after the model's input it feeds (the order does not matter)")
    missing = [n for n in model.required if n not in names and not partial]
    if missing:
        raise TritongenError(f"the model's input '{missing[0]}' has no --input {takes}",
                             f"add --input {missing[0]}:SHAPE:DTYPE"
                             + (f" (and for {', '.join(missing[1:])})" if len(missing) > 1 else ""))
    order = {n: i for i, n in enumerate(model.names)}
    return tuple(sorted(given, key=lambda t: order[t.name]))


def inputs_for_module(module: Any, given: Sequence[TensorSpec], note: Note | None = None) -> tuple[TensorSpec, ...]:
    """The input specs of a loaded module: `--input` bound by name (value domains come later, from a run)."""
    model = inputs_of_module(module)
    if not given:
        wanted = model.describe() if model.names else "each input"
        raise TritongenError(f"no --input given; {model.source} takes ({wanted})",
                             "pass --input NAME:SHAPE:DTYPE once per input, e.g. --input image:3x224x224:fp32")
    if any(t.dtype.short == "bf16" for t in given):
        raise TritongenError("bf16 inputs are not supported yet (ONNX Runtime's CPU kernels lack most bf16 ops)",
                             "declare the input as fp32 or fp16; the model can cast inside forward()")
    return bind_inputs(model, given, note)


def inputs_for_program(ep: Any, given: Sequence[TensorSpec], max_batch_size: int) -> tuple[TensorSpec, ...]:
    """Input specs of a torch.export program: names from the program, dtypes and dynamic axes from its example inputs.

    The program's symbolic dims (`s77`) become readable axis names: `batch` for a shared leading dim, else
    `<input>_dim<i>`; the same symbol on two inputs is the same axis. An --input (named like a program input) may
    name its axes and give its value range or role (the others get theirs from `domains.with_value_domains`).
    """
    model = inputs_of_program(ep)
    by_name = {t.name: t for t in bind_inputs(model, given, partial=True)}
    names = model.names
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    user = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    nodes = {n.name: n for n in placeholders}
    metas = [nodes[p].meta.get("val") for p in user]
    symbols_first_dim = {str(m.shape[0]) for m in metas if m is not None and len(m.shape) > 0}
    batched = max_batch_size > 0
    if batched:
        static = [n for n, m in zip(names, metas, strict=True)
                  if m is None or len(m.shape) == 0 or isinstance(m.shape[0], int)]
        if static:
            raise TritongenError(
                f"the exported program has a fixed batch size on input '{static[0]}', so it cannot batch",
                "re-export with dynamic_shapes={...: {0: torch.export.Dim('batch')}}, or pass --max-batch-size 0")
        if len(symbols_first_dim) != 1:
            raise TritongenError("the exported program's inputs have different leading dims, so they share no batch axis",
                                 "pass --max-batch-size 0")
    axis_names: dict[str, str] = {next(iter(symbols_first_dim)): BATCH_AXIS} if batched else {}
    specs = []
    for name, meta in zip(names, metas, strict=True):
        given_spec = by_name.get(name)
        dtype = dtype_from_torch(meta.dtype)
        if given_spec and given_spec.dtype != dtype:
            raise TritongenError(f"input '{name}' is {dtype.short} in the exported program but --input says "
                                 f"{given_spec.dtype.short}", f"pass --input {name}:...:{dtype.short}")
        dims = list(meta.shape)[1:] if batched else list(meta.shape)
        shape: list[int | str] = []
        for i, d in enumerate(dims):
            if isinstance(d, int) or (hasattr(d, "node") and d.node.is_constant()):
                shape.append(int(d))
                continue
            sym = str(d)
            wanted = given_spec.shape[i] if given_spec and i < len(given_spec.shape) \
                and isinstance(given_spec.shape[i], str) else None
            axis_names.setdefault(sym, wanted or f"{name}_dim{i + (1 if batched else 0)}")
            shape.append(axis_names[sym])
        specs.append(TensorSpec(name, dtype, tuple(shape), given_spec.value_range if given_spec else None,
                                given_spec.role if given_spec else None))
    return tuple(specs)
