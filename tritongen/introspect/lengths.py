"""Axis lengths the model runs at: the defaults are short (8 and 16), and some models reject them (an audio model's
convolutions need hundreds of samples, a model with 8 positions takes no 16)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from typing import TypeVar

from tritongen.errors import TritongenError
from tritongen.introspect.outputs import ModelFailed
from tritongen.spec import ModelSpec, check_example_size

T = TypeVar("T")
# Tried in order for the axes the user gave no --axis-length, after the defaults fail.
LADDER: tuple[tuple[int, int], ...] = ((64, 128), (512, 1024), (4096, 8192), (2, 4))


def at_workable_lengths(run: Callable[[ModelSpec], T], spec: ModelSpec, given: Collection[str],
                        note: Callable[[str], None] | None = None) -> tuple[ModelSpec, T]:
    """`run(spec)` at the spec's lengths; if the model fails there, at longer (then shorter) lengths of the axes not
    in `given`, with a note naming the lengths used. Returns the spec that ran and what `run` returned."""
    try:
        return spec, run(spec)
    except ModelFailed as first:
        free = [a for a in spec.dynamic_axes if a not in given]
        if not free:
            if spec.dynamic_axes:
                raise ModelFailed(first.message, first.hint + "; or pass --axis-length AXIS=SHORT,LONG with lengths "
                                  "the model takes") from first
            raise
        tried = [",".join(map(str, spec.lengths(free[0])))]
        for lengths in LADDER:
            candidate = replace(spec, axis_lengths={**spec.axis_lengths, **{a: lengths for a in free}})
            try:
                check_example_size(candidate)
            except TritongenError:
                continue
            try:
                result = run(candidate)
            except ModelFailed:
                tried.append(",".join(map(str, lengths)))
                continue
            if note:
                axes = ", ".join(f"'{a}'" for a in free)
                note(f"the model fails at the default lengths of {axes} ({tried[0]}): checked at "
                     f"{lengths[0]},{lengths[1]} instead; pass --axis-length {free[0]}=SHORT,LONG to choose")
            return candidate, result
        axes = ", ".join(f"'{a}'" for a in free)
        raise TritongenError(
            f"{first.message}; it also fails with {axes} at {'; '.join(tried[1:])}",
            f"pass --axis-length {free[0]}=SHORT,LONG with lengths the model takes (audio models take hundreds of "
            "samples or more)") from first
