"""Optimization profiles from the ModelSpec: `--dynamic-range`, parsed once, and the shapes an engine accepts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tritongen.errors import TritongenError
from tritongen.spec import BATCH_AXIS, ModelSpec


@dataclass(frozen=True)
class DynamicRange:
    """`--dynamic-range AXIS:MIN:OPT:MAX`: the sizes an engine accepts on one named axis, and the one it tunes for."""

    axis: str
    min: int
    opt: int
    max: int


def parse_dynamic_range(text: str) -> DynamicRange:
    """One `--dynamic-range AXIS:MIN:OPT:MAX`, checked."""
    parts = text.split(":")
    example = "use AXIS:MIN:OPT:MAX, e.g. --dynamic-range seq:1:128:512 (or batch:1:8:32)"
    if len(parts) != 4 or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", parts[0]):
        raise TritongenError(f"malformed --dynamic-range '{text}'", example)
    try:
        low, opt, high = (int(p) for p in parts[1:])
    except ValueError:
        raise TritongenError(f"malformed --dynamic-range '{text}': sizes must be integers", example) from None
    if not 1 <= low <= opt <= high:
        raise TritongenError(f"--dynamic-range '{text}' needs 1 <= MIN <= OPT <= MAX", example)
    return DynamicRange(parts[0], low, opt, high)


def parse_dynamic_ranges(items: Sequence[str]) -> dict[str, DynamicRange]:
    """Every `--dynamic-range`, by axis: the one parser (the build parses once; everything else takes the result)."""
    ranges: dict[str, DynamicRange] = {}
    for item in items:
        r = parse_dynamic_range(item)
        if r.axis in ranges:
            raise TritongenError(f"--dynamic-range gives axis '{r.axis}' twice", "give each axis one range")
        ranges[r.axis] = r
    return ranges


@dataclass(frozen=True)
class ShapeRange:
    """Full shapes (batch first where batched) of one input in an optimization profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def axis_ranges(spec: ModelSpec, ranges: Mapping[str, DynamicRange], preferred_batch_sizes: Sequence[int] = (),
                *, require_all: bool = True) -> dict[str, DynamicRange]:
    """A range for the batch axis and every named axis: the user's, or batch 1 / largest preferred / max batch size.

    Named axes have no safe default maximum (too small rejects requests, too large wastes memory), so each needs
    --dynamic-range; with `require_all` False the ones without are left out.
    """
    unknown = [a for a in ranges if a != BATCH_AXIS and a not in spec.dynamic_axes]
    if unknown:
        raise TritongenError(f"--dynamic-range names axis '{unknown[0]}', which no input has",
                             f"dynamic axes are: {', '.join([BATCH_AXIS] * spec.batched + spec.dynamic_axes)}")
    out: dict[str, DynamicRange] = {}
    if spec.batched:
        mbs = spec.max_batch_size
        batch = ranges.get(BATCH_AXIS) or DynamicRange(BATCH_AXIS, 1, max([b for b in preferred_batch_sizes
                                                                          if b <= mbs], default=mbs), mbs)
        out[BATCH_AXIS] = batch
    elif BATCH_AXIS in ranges:
        raise TritongenError("--dynamic-range batch:... given but --max-batch-size is 0 (no batch axis)",
                             "drop it, or set --max-batch-size")
    missing = [a for a in spec.dynamic_axes if a not in ranges]
    if missing and require_all:
        lengths = spec.lengths(missing[0])
        raise TritongenError(
            f"axis '{missing[0]}' is dynamic, and a TensorRT engine needs the range of sizes it will accept",
            f"pass --dynamic-range {missing[0]}:1:{lengths[-1]}:{max(lengths[-1] * 4, 64)} (MIN:OPT:MAX)"
            + (f"; also for {', '.join(missing[1:])}" if len(missing) > 1 else ""))
    out.update({a: ranges[a] for a in spec.dynamic_axes if a in ranges})
    return out


def profile_from_spec(spec: ModelSpec, ranges: Mapping[str, DynamicRange],
                      preferred_batch_sizes: Sequence[int] = ()) -> dict[str, ShapeRange]:
    """One optimization profile: min/opt/max full shapes for every input, from one description of the axes."""
    resolved = axis_ranges(spec, ranges, preferred_batch_sizes)
    profile = {}
    for t in spec.inputs:
        dims: list[int | str] = ([BATCH_AXIS] if spec.batched else []) + list(t.shape)
        shapes = [tuple(d if isinstance(d, int) else getattr(resolved[d], which) for d in dims)
                  for which in ("min", "opt", "max")]
        profile[t.name] = ShapeRange(*shapes)
    return profile


def ort_profile_shapes(profile: dict[str, ShapeRange]) -> dict[str, str]:
    """The TensorRT execution provider's trt_profile_{min,opt,max}_shapes strings: `name:1x3x224x224,...`."""
    return {which: ",".join(f"{name}:{'x'.join(str(d) for d in getattr(r, which))}" for name, r in profile.items())
            for which in ("min", "opt", "max")}


def check_lengths_in_ranges(spec: ModelSpec, resolved: Mapping[str, DynamicRange]) -> None:
    """The lengths parity runs at must be ones the engine accepts."""
    for axis in spec.dynamic_axes:
        r = resolved.get(axis)
        outside = [n for n in spec.lengths(axis) if r and not r.min <= n <= r.max]
        if outside:
            raise TritongenError(f"axis '{axis}' is checked at length {outside[0]}, outside --dynamic-range "
                                 f"{axis}:{r.min}:{r.opt}:{r.max}", f"pass --axis-length {axis}=A,B within the range")


