"""The model called the way it takes its inputs, and its outputs: tensors named by their keys, others left out.

A forward() result may be a tensor, a tuple, a dict (a Hugging Face `ModelOutput` is one), a namedtuple, nested any
way; its tensors are the outputs, named by their keys. Values that are not tensors (a cache object, None) are left
out with a note. `--output NAME` selects outputs by key where the model names them, and names them in order where
it does not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritongen.errors import TritongenError, stop_if_interrupted
from tritongen.introspect.inputs import ModelInputs, inputs_of_module, inputs_of_program
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_torch, random_inputs

Note = Callable[[str], None]


class ModelFailed(TritongenError):
    """The model itself raised on example inputs (not a mistake tritongen found before running it)."""


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


@dataclass(frozen=True)
class OutputSelection:
    """Which of the model's tensor outputs are served (indices into `tensor_outputs`), and their names."""

    chosen: tuple[int, ...]
    names: tuple[str, ...]
    whole: bool  # every tensor output, and nothing else returned: the model can be exported as it is


class BoundModel:
    """The model called the way it takes its inputs: by name where it has names, by position otherwise.

    Called with tensors in the order of `input_names`, it returns the model's tensor outputs only, in order (the
    selected ones, once `selecting` chose some). A failure inside the model is one line naming the shapes it failed
    at, and the batch size it last ran at.
    """

    def __init__(self, module: Any, inputs: ModelInputs, input_names: Sequence[str], batched: bool,
                 selection: OutputSelection | None = None) -> None:
        self.module = module
        self.inputs = inputs
        self.input_names = list(input_names)
        self.batched = batched
        self.selection = selection
        self.ran_at: int | None = None  # a batch size the model ran at, for the message when another one fails

    def selecting(self, selection: OutputSelection) -> BoundModel:
        model = BoundModel(self.module, self.inputs, self.input_names, self.batched, selection)
        model.ran_at = self.ran_at
        return model

    def call(self, tensors: Sequence[Any]) -> Any:
        """forward()'s result as it is (not filtered)."""
        import torch

        args, kwargs = self.inputs.call_arguments(self.input_names, list(tensors))
        try:
            with torch.no_grad():
                result = self.module(*args, **kwargs)
        except Exception as exc:
            stop_if_interrupted(exc)
            raise self._failure(tensors, exc) from exc
        if self.ran_at is None and tensors:
            self.ran_at = int(tensors[0].shape[0]) if self.batched and tensors[0].dim() else 0
        return result

    def __call__(self, *tensors: Any) -> tuple[Any, ...]:
        pairs, _ = tensor_outputs(self.call(tensors))
        if self.selection is None:
            return tuple(t for _, t in pairs)
        return tuple(pairs[i][1] for i in self.selection.chosen)

    def _failure(self, tensors: Sequence[Any], exc: Exception) -> TritongenError:
        shapes = ", ".join(f"{n} {list(t.shape)} {dtype_from_torch(t.dtype).short}"
                           for n, t in zip(self.input_names, tensors, strict=False))
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        cause = f"{type(exc).__name__}: {first}"
        if self.ran_at is None:
            return ModelFailed(f"the model fails on example inputs ({shapes}): {cause}",
                               "check --input shapes and dtypes (shape is per item, without the batch axis)")
        batch = f"batch {tensors[0].shape[0]}: " if self.batched and tensors and tensors[0].dim() else ""
        ran = f" at batch {self.ran_at}" if self.batched else ""
        return ModelFailed(
            f"the model runs{ran} but fails at another batch size or axis length ({batch}{shapes}): {cause}",
            "the model's code fixes a size (e.g. x.reshape(2, -1)): make it shape-generic (x.reshape(x.shape[0], "
            "-1)), or pass a --max-batch-size it runs at (0 for a model that cannot batch)")


@functools.cache
def _selected_module_class() -> type:
    import torch

    class SelectedOutputs(torch.nn.Module):
        """The model with only its selected tensor outputs, as a tuple; inputs positionally, in the spec's order.

        What is exported when the model returns more than is served (a cache object, outputs not selected)."""

        def __init__(self, model: BoundModel) -> None:
            super().__init__()
            self.model = model.module
            self.inputs = model.inputs
            self.input_names = list(model.input_names)
            self.chosen = model.selection.chosen if model.selection else None

        def forward(self, *tensors: Any) -> tuple[Any, ...]:
            args, kwargs = self.inputs.call_arguments(self.input_names, list(tensors))
            pairs, _ = tensor_outputs(self.model(*args, **kwargs))
            return tuple(pairs[i][1] for i in self.chosen) if self.chosen is not None else tuple(t for _, t in pairs)

    return SelectedOutputs


def selected_outputs(model: BoundModel) -> Any:
    """A torch module returning only `model`'s selected outputs, called positionally (torch is imported lazily, so
    the class is made on first use)."""
    return _selected_module_class()(model)


def outputs_of(model: BoundModel, spec: ModelSpec, names: Sequence[str], note: Note | None = None,
               preferred: Sequence[str] = ()) -> tuple[TensorSpec, ...]:
    """The specs of the outputs `select_outputs` chooses."""
    return select_outputs(model, spec, names, note, preferred)[0]


def select_outputs(model: BoundModel, spec: ModelSpec, names: Sequence[str], note: Note | None = None,
                   preferred: Sequence[str] = ()) -> tuple[tuple[TensorSpec, ...], OutputSelection]:
    """Run the model at two batch sizes / axis lengths; name its tensor outputs, find which of their dims vary, and
    choose the served ones: `names` (--output) by key, else the `preferred` keys it has (a task's outputs), else all.
    """
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
    keys = [k for k, _ in first]
    chosen, out_names = _choose(keys, names, preferred)
    left_out = [k for i, k in enumerate(keys) if i not in chosen and k is not None]
    if note and skipped:
        note(f"forward() also returns values that are not tensors, left out of the outputs: {', '.join(skipped)}")
    if note and left_out and not names:
        note(f"the model also returns {', '.join(left_out)}, not served (choose outputs with --output NAME)")
    specs = []
    for out_name, i in zip(out_names, chosen, strict=True):
        a, b = first[i][1], second[i][1]
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
    whole = len(chosen) == len(keys) and all(s.endswith("(NoneType)") or s == "NoneType" for s in skipped)
    return tuple(specs), OutputSelection(tuple(chosen), tuple(out_names), whole)


def _choose(keys: list[str | None], names: Sequence[str], preferred: Sequence[str]) -> tuple[list[int], list[str]]:
    """(indices of the served outputs, their names)."""
    named = all(k is not None for k in keys)
    if names and named:
        unknown = [n for n in names if n not in keys]
        if unknown:
            raise TritongenError(f"--output '{unknown[0]}' is not an output of the model (it returns "
                                 f"{', '.join(str(k) for k in keys)})", "name outputs by the keys the model returns")
        return [i for i, k in enumerate(keys) if k in names], [str(k) for k in keys if k in names]
    if names:
        if len(names) != len(keys):
            raise TritongenError(f"{len(names)} --output name(s) given but the model returns {len(keys)} tensor(s)",
                                 "pass one --output per returned tensor, in order")
        return list(range(len(keys))), list(names)
    wanted = [i for i, k in enumerate(keys) if k in preferred]
    if named and wanted:
        return wanted, [str(keys[i]) for i in wanted]
    if named:
        return list(range(len(keys))), [str(k) for k in keys]
    return list(range(len(keys))), ["output"] if len(keys) == 1 else [f"output_{i}" for i in range(len(keys))]


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
