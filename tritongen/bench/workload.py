"""What every request of a bench run carries: inputs valid for the model, at chosen lengths of its dynamic axes."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec, random_inputs, spec_from_config, spec_from_dict


@dataclass(frozen=True)
class Workload:
    """What every request carries: the inputs (batch included when the model batches) and the outputs asked for."""

    model: str
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...]
    batch_size: int
    lengths: dict[str, int]
    # A pipeline's step models (its ensemble's composing models): their statistics are read with the ensemble's,
    # for the latency split per step.
    steps: tuple[str, ...] = ()


def spec_from_manifest(manifest: Mapping[str, Any]) -> ModelSpec:
    """The ModelSpec `build` recorded in a version's manifest.json."""
    return spec_from_dict(manifest.get("spec") or {})


def model_spec(model_dir: Path | None, config: Any) -> ModelSpec:
    """The manifest's spec when the model was built by tritongen (named axes, integer ranges), else the config's.

    `config` is the config as served: its max batch size wins over the one recorded at build time.
    """
    from tritongen.repository import read_manifest, versions_of

    if model_dir is not None and model_dir.is_dir():
        versions = versions_of(model_dir)
        if versions:
            with contextlib.suppress(TritongenError, KeyError, ValueError, TypeError):
                spec = spec_from_manifest(read_manifest(model_dir / str(versions[-1])))
                if spec.inputs:
                    return replace(spec, max_batch_size=int(config.max_batch_size))
    return spec_from_config(config)


def parse_lengths(items: Sequence[str]) -> dict[str, int]:
    """`--length AXIS=N` options."""
    lengths: dict[str, int] = {}
    for item in items:
        axis, _, value = item.partition("=")
        if not axis or not value.isdigit() or int(value) < 1:
            raise TritongenError(f"malformed --length '{item}'", "use AXIS=N with N >= 1, e.g. --length seq=128")
        lengths[axis] = int(value)
    return lengths


def make_workload(model: str, spec: ModelSpec, batch_size: int, lengths: Mapping[str, int] | None = None,
                  seed: int = 0) -> Workload:
    """Random inputs valid for the model, with every dynamic axis at its chosen length (default: the first built one)."""
    chosen = dict(lengths or {})
    unknown = [a for a in chosen if a not in spec.dynamic_axes]
    if unknown:
        raise TritongenError(f"--length names axis '{unknown[0]}', which no input of '{model}' has",
                             f"dynamic axes are: {', '.join(spec.dynamic_axes) or 'none'}")
    for axis in spec.dynamic_axes:
        chosen.setdefault(axis, spec.lengths(axis)[0])
    if batch_size < 1:
        raise TritongenError(f"--batch-size {batch_size} must be at least 1", "e.g. --batch-size 1")
    if spec.batched and batch_size > spec.max_batch_size:
        raise TritongenError(f"--batch-size {batch_size} is above the model's max_batch_size {spec.max_batch_size}",
                             f"use --batch-size {spec.max_batch_size} or less")
    if not spec.batched and batch_size != 1:
        raise TritongenError(f"model '{model}' does not batch (max_batch_size 0), so --batch-size must be 1",
                             "leave out --batch-size")
    inputs = random_inputs(spec, batch_size if spec.batched else None, chosen, np.random.default_rng(seed))
    return Workload(model, inputs, tuple(t.name for t in spec.outputs), batch_size, chosen)


def pipeline_workload(model: str, model_dir: Path, config: Any, batch_size: int) -> Workload:
    """What every request to a pipeline (an ensemble) carries: raw inputs its build saved (strings or encoded images),
    `batch_size` of them around the one of median size, so a run is neither the empty string nor the longest text."""
    from tritongen.repository import load_reference
    from tritongen.server.checks import served_versions

    versions = served_versions(model_dir, config)  # the version its policy serves, as the server picks it
    inputs = load_reference(model_dir / str(versions[-1]))[0] if versions else {}
    if not inputs:
        raise TritongenError(f"pipeline '{model}' has no saved raw inputs to send", "rebuild it with `tritongen build "
                             "--pipeline`, which saves them")
    if batch_size < 1 or batch_size > max(1, int(config.max_batch_size)):
        raise TritongenError(f"--batch-size {batch_size} is outside 1..{config.max_batch_size} for pipeline '{model}'",
                             f"use --batch-size between 1 and {config.max_batch_size}")
    raw = next(iter(inputs.values()))
    sizes = [len(item) for item in raw.reshape(len(raw), -1)[:, 0]]
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    start = max(0, min(len(order) // 2 - batch_size // 2, len(order) - batch_size))
    chosen = sorted(order[start:start + batch_size])
    if len(chosen) < batch_size:  # fewer saved inputs than the batch: repeat them
        chosen = [chosen[i % len(chosen)] for i in range(batch_size)]
    steps = tuple(dict.fromkeys(step.model_name for step in config.ensemble_scheduling.step))
    return Workload(model, {k: v[chosen] for k, v in inputs.items()}, tuple(o.name for o in config.output), batch_size,
                    {}, steps)
