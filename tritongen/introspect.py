"""What a model takes and returns: its input names, `--input` bound to them by name, its outputs, value domains.

Inputs bind by name, never by position: an `--input` names one of the model's inputs (a forward() parameter, a
TorchScript schema argument, an exported program's input), command-line order does not matter, and the config
lists inputs in the model's order. Only a forward(*args) has no names; it binds in the order given, with a warning.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tritongen.errors import TritongenError, stop_if_interrupted
from tritongen.spec import BATCH_AXIS, ModelSpec, TensorSpec, dtype_from_torch, random_inputs

Note = Callable[[str], None]


@dataclass(frozen=True)
class ModelInputs:
    """The inputs a model takes, by name, in its own order."""

    names: tuple[str, ...]
    required: tuple[str, ...]
    source: str  # where the names come from, for messages: "forward()", "the exported program"
    positional: bool = False  # forward(*args): no names, so --input binds in the order given
    open_keywords: bool = False  # forward(**kwargs) and no named parameter: any name is accepted
    keywords: bool = True  # called with keyword arguments (an exported program and *args: positionally)

    def describe(self) -> str:
        return ", ".join(n if n in self.required else f"{n} (optional)" for n in self.names) or "no named inputs"


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
    """The user inputs of a torch.export program, in its order; a program is always called with all of them."""
    names = tuple(s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT")
    return ModelInputs(names, names, "the exported program", keywords=False)


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
    """The input specs of a loaded module: `--input` bound by name, integer inputs given a value range."""
    model = inputs_of_module(module)
    if not given:
        wanted = model.describe() if model.names else "each input"
        raise TritongenError(f"no --input given; {model.source} takes ({wanted})",
                             "pass --input NAME:SHAPE:DTYPE once per input, e.g. --input image:3x224x224:fp32")
    if any(t.dtype.short == "bf16" for t in given):
        raise TritongenError("bf16 inputs are not supported yet (ONNX Runtime's CPU kernels lack most bf16 ops)",
                             "declare the input as fp32 or fp16; the model can cast inside forward()")
    bound = bind_inputs(model, given, note)
    domains = value_domains(module, bound)
    return tuple(replace(t, value_range=t.value_range or domains.get(t.name)) for t in bound)


def value_domains(module: Any, inputs: Sequence[TensorSpec]) -> dict[str, tuple[int, int]]:
    """A valid value range per integer input: below the smallest embedding table of the model, when it has one."""
    import torch

    sizes = []
    for m in module.modules():
        if isinstance(m, torch.nn.Embedding | torch.nn.EmbeddingBag):
            sizes.append(m.num_embeddings)
        elif getattr(m, "original_name", "") in ("Embedding", "EmbeddingBag") and hasattr(m, "weight"):
            sizes.append(int(m.weight.shape[0]))  # TorchScript
    if not sizes:
        return {}
    return {t.name: (0, min(sizes) - 1) for t in inputs if not t.dtype.is_float and t.dtype.short != "bool"}


def inputs_for_program(ep: Any, given: Sequence[TensorSpec], max_batch_size: int) -> tuple[TensorSpec, ...]:
    """Input specs of a torch.export program: names from the program, dtypes and dynamic axes from its example inputs.

    The program's symbolic dims (`s77`) become readable axis names: `batch` for a shared leading dim, else
    `<input>_dim<i>`; the same symbol on two inputs is the same axis. An --input (named like a program input) may
    name its axes and give its value range.
    """
    import torch

    model = inputs_of_program(ep)
    by_name = {t.name: t for t in bind_inputs(model, given, partial=True)}
    names = model.names
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    examples: list[Any] = []
    if ep.example_inputs is not None:
        args, kwargs = ep.example_inputs
        examples = list(args) + list(kwargs.values())
    metas = [placeholders[n].meta.get("val") for n in names]
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
    for idx, (name, meta) in enumerate(zip(names, metas, strict=True)):
        user = by_name.get(name)
        dtype = dtype_from_torch(meta.dtype)
        if user and user.dtype != dtype:
            raise TritongenError(f"input '{name}' is {dtype.short} in the exported program but --input says "
                                 f"{user.dtype.short}", f"pass --input {name}:...:{dtype.short}")
        dims = list(meta.shape)[1:] if batched else list(meta.shape)
        shape: list[int | str] = []
        for i, d in enumerate(dims):
            if isinstance(d, int) or (hasattr(d, "node") and d.node.is_constant()):
                shape.append(int(d))
                continue
            sym = str(d)
            wanted = user.shape[i] if user and i < len(user.shape) and isinstance(user.shape[i], str) else None
            axis_names.setdefault(sym, wanted or f"{name}_dim{i + (1 if batched else 0)}")
            shape.append(axis_names[sym])
        value_range = user.value_range if user else None
        example = examples[idx] if idx < len(examples) else None
        if value_range is None and not dtype.is_float and dtype.short != "bool" and isinstance(example, torch.Tensor) \
                and example.numel():
            value_range = (int(example.min()), int(example.max()))
        specs.append(TensorSpec(name, dtype, tuple(shape), value_range))
    return tuple(specs)


def tensor_outputs(result: Any, key: str | None = None) -> tuple[list[tuple[str | None, Any]], list[str]]:
    """A forward() result as (key, tensor) pairs, and the values left out because they are not tensors (a cache, None).

    A tensor, a tuple or list, a dict (a Hugging Face ModelOutput is one) or a namedtuple, nested any way.
    """
    import torch

    if isinstance(result, torch.Tensor):
        return [(key, result)], []
    if hasattr(result, "_fields"):  # namedtuple
        result = result._asdict()
    pairs: list[tuple[str | None, Any]] = []
    skipped: list[str] = []
    if isinstance(result, Mapping):
        items = [(str(k) if key is None else f"{key}_{k}", v) for k, v in result.items()]
    elif isinstance(result, (tuple, list)):
        items = [(None if key is None else f"{key}_{i}", v) for i, v in enumerate(result)]
    else:
        return [], [f"'{key}' ({type(result).__name__})" if key else type(result).__name__]
    for k, v in items:
        p, s = tensor_outputs(v, k)
        pairs += p
        skipped += s
    return pairs, skipped


class BoundModel:
    """The model called the way it takes its inputs: by name where it has names, by position otherwise.

    Called with tensors in the order of `input_names`, it returns the model's tensor outputs only, in order. A failure
    inside the model is one line naming the shapes it failed at, and the batch size it last ran at.
    """

    def __init__(self, module: Any, inputs: ModelInputs, input_names: Sequence[str], batched: bool) -> None:
        self.module = module
        self.by_name = inputs.keywords
        self.input_names = list(input_names)
        self.batched = batched
        self.ran_at: int | None = None  # a batch size the model ran at, for the message when another one fails

    def call(self, tensors: Sequence[Any]) -> Any:
        """forward()'s result as it is (not filtered)."""
        import torch

        try:
            with torch.no_grad():
                if self.by_name:
                    result = self.module(**dict(zip(self.input_names, tensors, strict=True)))
                else:
                    result = self.module(*tensors)
        except Exception as exc:
            stop_if_interrupted(exc)
            raise self._failure(tensors, exc) from exc
        if self.ran_at is None and tensors:
            self.ran_at = int(tensors[0].shape[0]) if self.batched and tensors[0].dim() else 0
        return result

    def __call__(self, *tensors: Any) -> tuple[Any, ...]:
        pairs, _ = tensor_outputs(self.call(tensors))
        return tuple(t for _, t in pairs)

    def _failure(self, tensors: Sequence[Any], exc: Exception) -> TritongenError:
        shapes = ", ".join(f"{n} {list(t.shape)} {dtype_from_torch(t.dtype).short}"
                           for n, t in zip(self.input_names, tensors, strict=False))
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        cause = f"{type(exc).__name__}: {first}"
        if self.ran_at is None:
            return TritongenError(f"the model fails on example inputs ({shapes}): {cause}",
                                  "check --input shapes and dtypes (shape is per item, without the batch axis)")
        batch = f"batch {tensors[0].shape[0]}: " if self.batched and tensors and tensors[0].dim() else ""
        ran = f" at batch {self.ran_at}" if self.batched else ""
        return TritongenError(
            f"the model runs{ran} but fails at another batch size or axis length ({batch}{shapes}): {cause}",
            "the model's code fixes a size (e.g. x.reshape(2, -1)): make it shape-generic (x.reshape(x.shape[0], "
            "-1)), or pass a --max-batch-size it runs at (0 for a model that cannot batch)")


def outputs_of(model: BoundModel, spec: ModelSpec, names: Sequence[str], note: Note | None = None
               ) -> tuple[TensorSpec, ...]:
    """Run the model at two batch sizes / axis lengths; name its tensor outputs and find which of their dims vary."""
    import torch

    from tritongen.export.onnx import example_batch, example_lengths

    runs = []
    for batch, which, seed in ((example_batch(spec), 0, 0), (3 if spec.batched else None, 1, 1)):
        feeds = random_inputs(spec, batch, example_lengths(spec, which), np.random.default_rng(seed))
        result = model.call([torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in spec.inputs])
        runs.append((batch, *tensor_outputs(result)))
    (b0, first, skipped), (b1, second, _) = runs
    if not first:
        raise TritongenError(f"forward() returns no tensors (it returns {', '.join(skipped)})",
                             "make forward() return a tensor, a tuple of tensors or a dict of tensors")
    if [k for k, _ in first] != [k for k, _ in second]:
        raise TritongenError("forward() returns different outputs for different inputs",
                             "return the same tensors (or dict keys) for every input")
    if skipped and note:
        note(f"forward() also returns values that are not tensors, left out of the outputs: {', '.join(skipped)}")
    keys = [k for k, _ in first]
    if names:
        if len(names) != len(first):
            raise TritongenError(f"{len(names)} --output name(s) given but the model returns {len(first)} tensor(s)",
                                 "pass one --output per returned tensor, in order")
        out_names = list(names)
    elif all(k is not None for k in keys):
        out_names = [str(k) for k in keys]
    else:
        out_names = ["output"] if len(first) == 1 else [f"output_{i}" for i in range(len(first))]
    specs = []
    for out_name, (_, a), (_, b) in zip(out_names, first, second, strict=True):
        shape_a, shape_b = tuple(a.shape), tuple(b.shape)
        if spec.batched:
            if not shape_a or shape_a[0] != b0 or shape_b[0] != b1:
                raise TritongenError(
                    f"output '{out_name}' does not have the batch as its first axis (shape {list(shape_a)} for a "
                    f"batch of {b0})", "return per-item results stacked along dim 0, or pass --max-batch-size 0")
            shape_a, shape_b = shape_a[1:], shape_b[1:]
        if len(shape_a) != len(shape_b):
            raise TritongenError(f"output '{out_name}' changes rank with the input shape", "return fixed-rank tensors")
        dims = tuple(x if x == y else _axis_matching(spec, x, y) or f"{out_name}_dim{i + 1}"
                     for i, (x, y) in enumerate(zip(shape_a, shape_b, strict=True)))
        specs.append(TensorSpec(out_name, dtype_from_torch(a.dtype), dims))
    return tuple(specs)


def outputs_of_module(module: Any, spec: ModelSpec, names: Sequence[str] = (), note: Note | None = None
                      ) -> tuple[TensorSpec, ...]:
    """`outputs_of` for a plain module whose forward() takes `spec`'s inputs by name."""
    return outputs_of(bound_model(module, spec), spec, names, note)


def bound_model(module: Any, spec: ModelSpec, exported_program: Any = None) -> BoundModel:
    inputs = inputs_of_program(exported_program) if exported_program is not None else inputs_of_module(module)
    return BoundModel(module, inputs, [t.name for t in spec.inputs], spec.batched)


def _axis_matching(spec: ModelSpec, short: int, long: int) -> str | None:
    """The input axis an output dim follows, when its sizes in the two runs are that axis's two lengths."""
    return next((a for a in spec.dynamic_axes if spec.lengths(a)[:2] == (short, long)), None)
