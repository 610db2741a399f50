"""The ceiling: in-process ONNX Runtime throughput of the served ONNX file, with the served model's own sessions
(one rule: tritongen.runners.sessions), at each batch size."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.bench.report import Ceiling
from tritongen.errors import TritongenError
from tritongen.runners import sessions as ort_sessions
from tritongen.spec import ModelSpec, random_inputs


def batch_sizes_to_try(max_batch_size: int) -> list[int]:
    """Powers of two up to the max batch size, and the max itself."""
    if max_batch_size <= 0:
        return [1]
    sizes = [1 << i for i in range(0, 16) if (1 << i) <= max_batch_size]
    return sorted(set(sizes) | {max_batch_size})


def intra_op_threads(config: Any, cpus: int | None = None) -> int:
    """Threads per instance as the served model.py sets them (one rule: tritongen.runners.sessions)."""
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    return ort_sessions.intra_op_threads(parameters, instance_count(config), cpus)


def instance_count(config: Any) -> int:
    return sum(max(1, g.count) for g in config.instance_group) or 1


def onnx_ceiling(onnx_path: Path, spec: ModelSpec, lengths: Mapping[str, int], *, sessions: int = 1,
                 intra_op_threads: int | None = None, batch_sizes: Sequence[int] | None = None,
                 seconds_per_size: float = 1.0, min_runs: int = 3) -> Ceiling:
    """Items/s of `sessions` ONNX Runtime sessions running in parallel threads, at each batch size; best one wins.

    The sessions are the served model.py's own (tritongen.runners.sessions: intra-op threads per instance, one
    inter-op thread, no spinning, full graph optimisation), so the ratio served/ceiling measures serving
    overhead, not thread settings.
    """
    threads = intra_op_threads or ort_sessions.intra_op_threads({}, sessions)
    try:
        runs = [ort_sessions.cpu_session(onnx_path, threads) for _ in range(max(1, sessions))]
    except Exception as exc:
        raise TritongenError(f"ONNX Runtime cannot load {onnx_path}: {exc}",
                             "pass --no-ceiling to benchmark without the in-process ceiling") from exc
    outputs = [o.name for o in runs[0].get_outputs()]
    sizes = list(batch_sizes or batch_sizes_to_try(spec.max_batch_size))
    by_batch: dict[int, float] = {}
    latency: dict[int, float] = {}
    for size in sizes:
        feeds = random_inputs(spec, size if spec.batched else None, dict(lengths), np.random.default_rng(size))
        items = size if spec.batched else 1
        start = time.perf_counter()
        runs[0].run(outputs, feeds)  # first run allocates the arena for this shape: not measured
        one_run = time.perf_counter() - start
        deadline = time.perf_counter() + max(seconds_per_size, min_runs * one_run)
        counts = [0] * len(runs)

        def loop(index: int, deadline: float = deadline, feeds: dict[str, np.ndarray] = feeds,
                 counts: list[int] = counts) -> None:
            session = runs[index]
            while True:
                session.run(outputs, feeds)  # ONNX Runtime releases the GIL: sessions run truly in parallel
                counts[index] += 1
                if time.perf_counter() >= deadline and counts[index] >= min_runs:
                    return

        start = time.perf_counter()
        workers = [threading.Thread(target=loop, args=(i,)) for i in range(len(runs))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
        by_batch[size] = sum(counts) * items / elapsed
        latency[size] = elapsed / max(1, counts[0]) * 1000.0
    best = max(by_batch, key=lambda b: by_batch[b])
    return Ceiling(str(onnx_path), len(runs), threads, best, by_batch[best], by_batch, latency)
