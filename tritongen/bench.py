"""`bench`: drive a served model with closed-loop load, and compare it with what ONNX Runtime does in-process.

The load generator is one asyncio event loop with `concurrency` coroutines, each sending its next request as soon
as the previous one answers (tritonclient's aio clients: gRPC by default, HTTP with aiohttp). One loop in one thread
costs the least CPU per request in Python, which matters on a small machine where the client and the server share
the same cores: the report says how much CPU the client used, and how fast a no-op model with the same inputs goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import TritongenError
from tritongen.runners import sessions as ort_sessions
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_triton, random_inputs, spec_from_dict

DEFAULT_CONCURRENCIES = (1, 2, 4, 8, 16, 32)
DEFAULT_DURATION_S = 5.0
DEFAULT_WARMUP_S = 2.0
PROTOCOLS = ("grpc", "http")
REQUEST_TIMEOUT_S = 60.0
NOOP_PREFIX = "tritongen_noop_"
Progress = Callable[[str], None]


# ----------------------------------------------------------------------------------------------------------- reports
@dataclass(frozen=True)
class LatencyStats:
    """Client-side latency of successful requests, in milliseconds (send to answer, as a user sees it)."""

    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    max: float

    @staticmethod
    def of(seconds: Sequence[float]) -> LatencyStats:
        if not seconds:
            nan = float("nan")
            return LatencyStats(nan, nan, nan, nan, nan, nan)
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        return LatencyStats(float(p50), float(p90), float(p95), float(p99), float(ms.mean()), float(ms.max()))


@dataclass(frozen=True)
class ServerStats:
    """What Triton's statistics say happened during the measurement window (differences of two snapshots)."""

    inferences: int  # items run (a request of batch 4 counts 4)
    executions: int  # model executions: fewer than inferences means the server batched requests together
    requests: int
    avg_batch: float  # inferences / executions: the batch size the model actually ran at
    queue_ms: float  # mean per request: waiting for the dynamic batcher or a free instance
    compute_ms: float  # mean per request: input copy + model execution + output copy of the batch it ran in
    server_ms: float  # mean per request: everything from arrival to response inside the server
    batch_sizes: dict[int, int] = field(default_factory=dict)  # executed batch size -> executions


@dataclass(frozen=True)
class LoadPoint:
    """One concurrency level: `concurrency` requests always in flight for the measurement window."""

    concurrency: int
    batch_size: int  # items per request
    seconds: float  # length of the measurement window: from its first request sent to its last answer
    requests: int  # successful requests sent within the window (each one answered before it closed)
    errors: int
    throughput: float  # inferences (items) per second
    latency: LatencyStats
    server: ServerStats | None
    client_cpu_us_per_request: float  # CPU time of this process (all its threads) per request
    client_cpu_share: float  # the client's CPU time as a fraction of all the machine's CPUs
    machine_busy: float | None  # fraction of all CPUs busy (everything: server, client, others), from /proc/stat
    first_error: str | None = None


@dataclass(frozen=True)
class Ceiling:
    """In-process ONNX Runtime throughput of the same ONNX file: what the served model can at best approach."""

    onnx: str
    sessions: int  # parallel sessions, as many as the config's instances
    intra_op_threads: int  # per session, as the served model.py sets them
    batch_size: int  # the best one
    throughput: float  # items/s at that batch size
    by_batch: dict[int, float]  # batch size -> items/s
    latency_ms: dict[int, float]  # batch size -> mean ms per run (one session alone)


@dataclass(frozen=True)
class GeneratorCheck:
    """Evidence that the load generator is not what limits throughput."""

    cpu_us_per_request: float  # at the best point
    client_cpu_share: float  # at the best point
    requests_per_core_s: float  # requests/s the client could send with a whole core to itself
    noop_model: str | None = None
    noop_concurrency: int | None = None
    noop_throughput: float | None = None  # items/s of a model that does nothing, same inputs, same config
    noop_note: str | None = None


@dataclass(frozen=True)
class BenchReport:
    model: str
    version: str
    server: str
    served_by: str
    protocol: str
    batch_size: int
    lengths: dict[str, int]
    duration_s: float | None
    requests_per_point: int | None
    config: dict[str, Any]  # instances, max_batch_size, max_queue_delay_us, preferred_batch_sizes
    points: tuple[LoadPoint, ...]
    ceiling: Ceiling | None
    generator: GeneratorCheck | None
    cpus: int
    load_average: tuple[float, float, float]  # before the run: other work on the machine skews every number
    started: str
    notes: tuple[str, ...] = ()

    @property
    def best(self) -> LoadPoint | None:
        ok = [p for p in self.points if p.requests > 0]
        return max(ok, key=lambda p: p.throughput) if ok else None

    @property
    def fraction_of_ceiling(self) -> float | None:
        best = self.best
        if best is None or self.ceiling is None or self.ceiling.throughput <= 0:
            return None
        return best.throughput / self.ceiling.throughput

    def point(self, concurrency: int) -> LoadPoint | None:
        return next((p for p in self.points if p.concurrency == concurrency), None)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return json_safe({"ok": True, **asdict(self), "best_concurrency": best.concurrency if best else None,
                          "best_throughput": best.throughput if best else None,
                          "fraction_of_ceiling": self.fraction_of_ceiling})


# ---------------------------------------------------------------------------------------------------------- workload
@dataclass(frozen=True)
class Workload:
    """What every request carries: the inputs (batch included when the model batches) and the outputs asked for."""

    model: str
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...]
    batch_size: int
    lengths: dict[str, int]


def spec_from_manifest(manifest: Mapping[str, Any]) -> ModelSpec:
    """The ModelSpec `build` recorded in a version's manifest.json."""
    return spec_from_dict(manifest.get("spec") or {})


def spec_from_config(config: Any) -> ModelSpec:
    """A ModelSpec from a Triton config alone (a model tritongen did not build): every -1 dim is an axis of its own."""
    from tritonclient.grpc import model_config_pb2

    def tensor(entry: Any) -> TensorSpec:
        dtype = dtype_from_triton(model_config_pb2.DataType.Name(entry.data_type))
        dims = list(entry.reshape.shape) if entry.HasField("reshape") else list(entry.dims)
        shape = tuple(d if d != -1 else f"{entry.name}_dim{i + 1}" for i, d in enumerate(dims))
        return TensorSpec(entry.name, dtype, shape)

    return ModelSpec(tuple(tensor(t) for t in config.input), tuple(tensor(t) for t in config.output),
                     int(config.max_batch_size))


def model_spec(model_dir: Path | None, config: Any) -> ModelSpec:
    """The manifest's spec when the model was built by tritongen (named axes, integer ranges), else the config's."""
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


# ------------------------------------------------------------------------------------------------------ measurement
@dataclass(frozen=True)
class LoadSettings:
    """How each concurrency level is measured."""

    protocol: str = "grpc"
    duration_s: float | None = DEFAULT_DURATION_S  # measurement window; None: use `requests`
    requests: int | None = None  # or: stop after this many answered requests
    settle_s: float | None = None  # load before the window opens (fills the batcher's pipeline); None: auto

    def settle(self) -> float:
        if self.settle_s is not None:
            return self.settle_s
        return min(1.0, 0.2 * self.duration_s) if self.duration_s else 0.5


def check_settings(settings: LoadSettings, concurrencies: Sequence[int]) -> None:
    if settings.protocol not in PROTOCOLS:
        raise TritongenError(f"unknown protocol '{settings.protocol}'", "use --protocol grpc or http")
    if settings.duration_s is None and not settings.requests:
        raise TritongenError("neither a duration nor a request count was given", "pass --duration S or --requests N")
    if settings.duration_s is not None and settings.duration_s <= 0:
        raise TritongenError(f"--duration {settings.duration_s} must be positive", "e.g. --duration 5")
    if settings.requests is not None and settings.requests < 1:
        raise TritongenError(f"--requests {settings.requests} must be at least 1", "e.g. --requests 1000")
    if not concurrencies or min(concurrencies) < 1:
        raise TritongenError(f"concurrency levels must be 1 or more (got {list(concurrencies)})",
                             "e.g. --concurrency 1,2,4,8,16,32")


def parse_concurrencies(text: str, option: str = "--concurrency") -> tuple[int, ...]:
    """`--concurrency 1,2,4,8` (and other lists of positive integers): sorted, without repeats."""
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise TritongenError(f"malformed {option} '{text}'", "give positive integers separated by commas, e.g. 1,4,16")
    return tuple(sorted(set(values)))


def measure_point(url: str, workload: Workload, concurrency: int, settings: LoadSettings,
                  model: str | None = None) -> LoadPoint:
    """Keep `concurrency` requests in flight against `url`; measure one window. `model` overrides the workload's."""
    return asyncio.run(_measure(url, model or workload.model, workload, concurrency, settings))


class _Clients:
    """The protocol's aio client and request objects, built once: each request then costs only its send."""

    def __init__(self, protocol: str, url: str, workload: Workload, concurrency: int) -> None:
        self.protocol = protocol
        if protocol == "grpc":
            import tritonclient.grpc as module
            from tritonclient.grpc.aio import InferenceServerClient

            self.client = InferenceServerClient(url)
            self.inputs = [self._input(module, name, array, binary=None) for name, array in workload.inputs.items()]
            self.outputs = [module.InferRequestedOutput(n) for n in workload.outputs] or None
        else:
            import tritonclient.http as module
            from tritonclient.http.aio import InferenceServerClient

            # One connection per in-flight request, as real concurrent clients have.
            self.client = InferenceServerClient(url, conn_limit=max(100, concurrency), conn_timeout=REQUEST_TIMEOUT_S)
            self.inputs = [self._input(module, name, array, binary=True) for name, array in workload.inputs.items()]
            self.outputs = [module.InferRequestedOutput(n, binary_data=True) for n in workload.outputs] or None

    @staticmethod
    def _input(module: Any, name: str, array: np.ndarray, binary: bool | None) -> Any:
        from tritonclient.utils import np_to_triton_dtype

        array = np.ascontiguousarray(array)
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        if binary is None:
            tensor.set_data_from_numpy(array)
        else:
            tensor.set_data_from_numpy(array, binary_data=binary)  # binary: FP16 needs it, and it is cheaper
        return tensor

    async def infer(self, model: str) -> None:
        if self.protocol == "grpc":
            await self.client.infer(model, self.inputs, outputs=self.outputs, client_timeout=REQUEST_TIMEOUT_S)
        else:
            await self.client.infer(model, self.inputs, outputs=self.outputs)

    async def statistics(self, model: str) -> dict[str, Any] | None:
        try:
            if self.protocol == "grpc":
                return await self.client.get_inference_statistics(model, as_json=True)
            return await self.client.get_inference_statistics(model)
        except Exception:  # a server without the statistics extension: the point simply has no server stats
            return None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()


async def _measure(url: str, model: str, workload: Workload, concurrency: int, settings: LoadSettings) -> LoadPoint:
    """Settle, then measure one window that opens and closes with no request in flight.

    Triton's statistics are only consistent between snapshots taken while nothing is in flight (a request being run
    is counted in some of them and not yet in others), so the window is: pause the settling load and let it drain,
    snapshot, send for the window's length, let the requests sent in it finish, snapshot again. The server's numbers
    then describe exactly the requests the client counted.
    """
    clients = _Clients(settings.protocol, url, workload, concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    state: dict[str, Any] = {"phase": "settle", "fatal": None, "in_flight": 0}
    resume, enough, idle = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def worker() -> None:
        while True:
            phase = state["phase"]
            if phase == "stop":
                return
            if phase == "pause":
                await resume.wait()
                continue
            counted = phase == "measure"  # a request belongs to the window it was sent in
            state["in_flight"] += 1
            idle.clear()
            sent = time.perf_counter()
            try:
                await clients.infer(model)
                if counted:
                    latencies.append(time.perf_counter() - sent)
            except Exception as exc:  # tritonclient, grpc, aiohttp and socket errors alike: counted, not raised
                text = _error_text(exc)
                if _unreachable(text):
                    state["fatal"], state["phase"] = text, "stop"
                    resume.set()
                    enough.set()
                elif counted:
                    errors.append(text)
            finally:
                if counted and settings.requests and len(latencies) + len(errors) >= settings.requests:
                    enough.set()
                state["in_flight"] -= 1
                if state["in_flight"] == 0:
                    idle.set()

    async def drained(phase: str) -> None:
        """Stop sending (`phase` pause or stop) and wait until every request in flight has its answer."""
        if state["phase"] != "stop":
            state["phase"] = phase
        if state["in_flight"]:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(idle.wait(), timeout=REQUEST_TIMEOUT_S + 5)
        if state["in_flight"]:
            state["fatal"] = state["fatal"] or (f"{state['in_flight']} requests got no answer within "
                                                f"{REQUEST_TIMEOUT_S:.0f} s")

    tasks: list[asyncio.Task[None]] = []
    try:
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(settings.settle())
        await drained("pause")
        before = await clients.statistics(model) if not state["fatal"] else None
        cpu0, busy0, t0 = time.process_time(), _cpu_times(), time.perf_counter()
        if state["phase"] != "stop":
            state["phase"] = "measure"
        resume.set()
        if settings.duration_s is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(enough.wait(), timeout=settings.duration_s)
        else:
            await enough.wait()
        await drained("stop")
        t1, cpu1, busy1 = time.perf_counter(), time.process_time(), _cpu_times()
        after = await _statistics_after(clients, model, before, len(latencies) + len(errors)) \
            if not state["fatal"] else None
    finally:
        state["phase"] = "stop"
        resume.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await clients.close()
    if state["fatal"]:
        raise TritongenError(f"the server at {url} stopped answering while benchmarking '{model}': {state['fatal']}",
                             "check that the server is running; see its log")
    seconds = t1 - t0
    n = len(latencies)
    cpus = os.cpu_count() or 1
    cpu = cpu1 - cpu0
    return LoadPoint(
        concurrency=concurrency, batch_size=workload.batch_size, seconds=seconds, requests=n, errors=len(errors),
        throughput=n * workload.batch_size / seconds if seconds > 0 else 0.0, latency=LatencyStats.of(latencies),
        server=server_stats(before, after, model), client_cpu_us_per_request=cpu / n * 1e6 if n else float("nan"),
        client_cpu_share=cpu / (seconds * cpus) if seconds > 0 else 0.0, machine_busy=_busy_fraction(busy0, busy1),
        first_error=errors[0] if errors else None)


async def _statistics_after(clients: _Clients, model: str, before: Mapping[str, Any] | None, sent: int,
                            wait_s: float = 2.0) -> dict[str, Any] | None:
    """The snapshot after the window, once the server has recorded all `sent` requests.

    Triton updates its statistics just after it sends a response, so the last answers can arrive before they are
    counted. Another client of the same server can make the count never match: then give up after `wait_s`.
    """
    deadline = time.perf_counter() + wait_s
    a = (_stat_totals(before, model) or {}) if before is not None else {}
    while True:
        after = await clients.statistics(model)
        if before is None or after is None:
            return after
        b = _stat_totals(after, model) or {}
        recorded = sum(b.get(k, 0) - a.get(k, 0) for k in ("success.count", "fail.count"))
        if recorded >= sent or time.perf_counter() >= deadline:
            return after
        await asyncio.sleep(0.02)


def _error_text(exc: BaseException) -> str:
    """One line: the server's status (gRPC code) and message."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status, message = exc.status(), exc.message()
        text = f"[{status}] {message}" if status else str(message)
    else:
        text = f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _unreachable(text: str) -> bool:
    return any(s in text for s in ("failed to connect", "Connection refused", "Socket closed", "UNAVAILABLE",
                                   "Cannot connect", "Connect call failed", "Server disconnected"))


def server_stats(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, model: str) -> ServerStats | None:
    """Differences of two statistics snapshots of `model` (all versions together)."""
    if before is None or after is None:
        return None
    a, b = _stat_totals(before, model), _stat_totals(after, model)
    if b is None:
        return None
    a = a or {k: 0 for k in b}

    def d(key: str) -> int:
        return int(b.get(key, 0)) - int(a.get(key, 0))

    executions, inferences = d("execution_count"), d("inference_count")
    per_request = max(1, d("queue.count"))
    compute_ns = d("compute_input.ns") + d("compute_infer.ns") + d("compute_output.ns")
    sizes = {}
    for key, value in b.items():
        m = re.fullmatch(r"batch\.(\d+)", key)
        if m and value - int(a.get(key, 0)) > 0:
            sizes[int(m.group(1))] = value - int(a.get(key, 0))
    return ServerStats(
        inferences=inferences, executions=executions, requests=d("success.count"),
        avg_batch=inferences / executions if executions > 0 else float("nan"),
        queue_ms=d("queue.ns") / per_request / 1e6, compute_ms=compute_ns / max(1, d("compute_infer.count")) / 1e6,
        server_ms=d("success.ns") / max(1, d("success.count")) / 1e6, batch_sizes=dict(sorted(sizes.items())))


def _stat_totals(snapshot: Mapping[str, Any], model: str) -> dict[str, int] | None:
    totals: dict[str, int] = {}
    found = False
    for entry in snapshot.get("model_stats", []):
        if entry.get("name") != model:
            continue
        found = True
        for key in ("inference_count", "execution_count"):
            totals[key] = totals.get(key, 0) + int(entry.get(key, 0) or 0)
        for stat, value in (entry.get("inference_stats") or {}).items():
            for part in ("count", "ns"):
                k = f"{stat}.{part}"
                totals[k] = totals.get(k, 0) + int((value or {}).get(part, 0) or 0)
        for batch in entry.get("batch_stats") or []:
            k = f"batch.{int(batch.get('batch_size', 0))}"
            totals[k] = totals.get(k, 0) + int((batch.get("compute_infer") or {}).get("count", 0) or 0)
    return totals if found else None


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def _busy_fraction(a: tuple[int, int] | None, b: tuple[int, int] | None) -> float | None:
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])


# ---------------------------------------------------------------------------------------------------------- ceiling
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


# ------------------------------------------------------------------------------------------------------ no-op model
NOOP_MODEL_PY = '''"""Written by tritongen bench: answers zeros of the right shape without computing anything.

Its throughput is what the client, the network path and the python backend can do with this model's inputs.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.first_input = config["input"][0]["name"]
        self.outputs = []
        for output in config["output"]:
            dims = output.get("reshape", {}).get("shape", output["dims"]) if "reshape" in output else output["dims"]
            shape = [max(1, int(d)) for d in dims]
            self.outputs.append((output["name"], pb_utils.triton_string_to_numpy(output["data_type"]), shape))

    def execute(self, requests):
        responses = []
        for request in requests:
            batch = []
            if self.batched:
                batch = [pb_utils.get_input_tensor_by_name(request, self.first_input).shape()[0]]
            tensors = [pb_utils.Tensor(name, np.zeros(batch + shape, dtype)) for name, dtype, shape in self.outputs]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
'''


def write_noop_model(repository: Path, config: Any) -> str:
    """Add to a (staged) repository a python-backend model with `config`'s tensors and batching that does nothing."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    name = NOOP_PREFIX + config.name
    noop = model_config_pb2.ModelConfig()
    noop.CopyFrom(config)
    noop.name = name
    noop.platform = ""
    noop.backend = "python"
    noop.ClearField("default_model_filename")
    noop.ClearField("model_warmup")
    noop.ClearField("parameters")
    (repository / name / "1").mkdir(parents=True, exist_ok=True)
    (repository / name / "1" / "model.py").write_text(NOOP_MODEL_PY)
    (repository / name / "config.pbtxt").write_text(text_format.MessageToString(noop))
    return name


# -------------------------------------------------------------------------------------------------------- the bench
def bench_model(repository: str | Path | None, model: str, *, server: str = "embedded",
                concurrencies: Sequence[int] = DEFAULT_CONCURRENCIES, settings: LoadSettings | None = None,
                batch_size: int = 1, lengths: Mapping[str, int] | None = None, warmup_s: float = DEFAULT_WARMUP_S,
                ceiling: bool = True, ceiling_seconds_per_size: float | None = None, generator_check: bool = True,
                tritonserver: str | Path | None = None, timeout_s: float | None = None,
                on_progress: Progress | None = None) -> BenchReport:
    """Serve `model` from `repository` (or use the server at URL `server`), sweep the concurrencies, report.

    With `server="embedded"`, ONNX models are served by the python-backend runner (the embedded Triton has no
    onnxruntime backend); the report says so, and the no-op model shows what that path costs.
    """
    from tritongen.server.stage import read_config

    settings = settings or LoadSettings()
    progress = on_progress or (lambda _msg: None)
    concurrencies = tuple(sorted(set(concurrencies)))
    check_settings(settings, concurrencies)
    model_dir = Path(repository) / model if repository is not None else None
    if model_dir is not None and not (model_dir / "config.pbtxt").is_file():
        from tritongen.server.stage import select_models

        select_models(Path(repository), [model])  # raises the clear "not in the repository" error
    if server == "embedded" and model_dir is None:
        raise TritongenError("bench needs --repository to start the embedded server", "pass --repository DIR or --url URL")
    notes: list[str] = []
    load_average = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    cpus = os.cpu_count() or 1
    if load_average[0] > 0.5 * cpus:
        notes.append(f"the machine was already busy before the run (load average {load_average[0]:.1f} on {cpus} "
                     "CPUs): other work competes with the server and the client, so every number is lower than on "
                     "an idle machine")
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    local_config = read_config(model_dir) if model_dir is not None else None

    workload: Workload | None = None
    ceiling_result: Ceiling | None = None
    if local_config is not None:
        # Before any server starts: input mistakes fail fast, and the ceiling runs on an otherwise idle machine.
        workload = make_workload(model, model_spec(model_dir, local_config), batch_size, lengths)
        if ceiling:
            ceiling_result = _ceiling_for(model_dir, local_config, workload, settings, ceiling_seconds_per_size,
                                          notes, progress)
    elif ceiling:
        notes.append("no ceiling: it needs the model's ONNX file in a local repository (pass --repository)")
    with _serve(repository, model, server, generator_check, tritonserver, timeout_s, progress) as served:
        config, handle, served_by, noop = served
        if workload is None:
            workload = make_workload(model, model_spec(None, config), batch_size, lengths)
        url = handle.grpc_url if settings.protocol == "grpc" else handle.http_url
        if warmup_s > 0:
            progress(f"warming up for {warmup_s:g} s at concurrency {max(concurrencies)}")
            measure_point(url, workload, max(concurrencies),
                          LoadSettings(settings.protocol, duration_s=warmup_s, settle_s=0.0))
        points = []
        for c in concurrencies:
            progress(f"concurrency {c}: " + (f"{settings.duration_s:g} s" if settings.duration_s
                                               else f"{settings.requests} requests"))
            point = measure_point(url, workload, c, settings)
            points.append(point)
            if point.requests == 0 and point.errors:
                raise TritongenError(f"every request to '{model}' failed at concurrency {c}: {point.first_error}",
                                     "check the inputs with `tritongen validate`; pass --length for dynamic axes")
        best = max(points, key=lambda p: p.throughput)
        generator = GeneratorCheck(best.client_cpu_us_per_request, best.client_cpu_share,
                                   1e6 / best.client_cpu_us_per_request if best.client_cpu_us_per_request > 0 else 0.0)
        if generator_check:
            if noop is None:
                generator = replace(generator, noop_note="no no-op model: a server tritongen did not start cannot be "
                                                         "given one")
            else:
                progress(f"generator check: no-op model at concurrency {best.concurrency}")
                noop_point = measure_point(url, workload, best.concurrency, settings, model=noop)
                generator = replace(generator, noop_model=noop, noop_concurrency=best.concurrency,
                                    noop_throughput=noop_point.throughput,
                                    noop_note=noop_point.first_error if noop_point.errors else None)
    from tritongen.server.stage import PYTHON_RUNNER

    if served_by == PYTHON_RUNNER:
        notes.append("served through the python backend (the embedded Triton has no onnxruntime backend): each "
                     "request also pays the python backend's shared-memory hand-off, which a Triton with the "
                     "onnxruntime backend does not; the no-op model's throughput bounds what this path can do")
    return BenchReport(
        model=model, version=_served_version(model_dir), server=handle.description or handle.http_url,
        served_by=served_by, protocol=settings.protocol, batch_size=workload.batch_size, lengths=workload.lengths,
        duration_s=settings.duration_s, requests_per_point=settings.requests, config=config_summary(config),
        points=tuple(points), ceiling=ceiling_result, generator=generator, cpus=cpus,
        load_average=tuple(round(x, 2) for x in load_average), started=started, notes=tuple(notes))  # type: ignore[arg-type]


def _ceiling_for(model_dir: Path | None, config: Any, workload: Workload, settings: LoadSettings,
                 seconds_per_size: float | None, notes: list[str], progress: Progress) -> Ceiling | None:
    onnx_path = _onnx_file(model_dir, config)
    if onnx_path is None:
        notes.append("no ceiling: the model has no ONNX file in its latest version directory")
        return None
    if seconds_per_size is None:  # in proportion to the load measurement, within reason
        seconds_per_size = min(1.0, max(0.2, (settings.duration_s or 5.0) / 5))
    sessions, threads = instance_count(config), intra_op_threads(config)
    progress(f"measuring the in-process ONNX Runtime ceiling ({onnx_path.name}, {sessions} session(s) x {threads} "
             "thread(s))")
    spec = model_spec(model_dir, config)
    return onnx_ceiling(onnx_path, spec, workload.lengths, sessions=sessions, intra_op_threads=threads,
                        batch_sizes=batch_sizes_to_try(config.max_batch_size), seconds_per_size=seconds_per_size)


def config_summary(config: Any) -> dict[str, Any]:
    """The settings that decide throughput, as served."""
    batching = config.dynamic_batching if config.HasField("dynamic_batching") else None
    return {
        "instances": instance_count(config),
        "max_batch_size": int(config.max_batch_size),
        "dynamic_batching": batching is not None,
        "max_queue_delay_us": int(batching.max_queue_delay_microseconds) if batching is not None else None,
        "preferred_batch_sizes": list(batching.preferred_batch_size) if batching is not None else [],
        "intra_op_threads": intra_op_threads(config),
    }


@contextlib.contextmanager
def _serve(repository: str | Path | None, model: str, server: str, with_noop: bool,
           tritonserver: str | Path | None, timeout_s: float | None,
           progress: Progress) -> Iterator[tuple[Any, Any, str, str | None]]:
    """Yield (served config, server handle, how it is served, no-op model name or None)."""
    from tritongen.server import NothingToServe, serve

    noop: list[str] = []

    def add_noop(staged: Any) -> None:  # only a server tritongen starts can be given one
        noop.append(write_noop_model(staged.path, staged.model(model).config))

    with contextlib.ExitStack() as stack:
        try:
            served = stack.enter_context(serve(repository, server, models=[model], tritonserver=tritonserver,
                                               timeout_s=timeout_s, before_start=add_noop if with_noop else None,
                                               on_progress=progress, on_warning=progress))
        except NothingToServe as exc:
            raise TritongenError(f"the {server} server cannot serve '{model}': {exc.models[0].skipped_reason}",
                                 "benchmark it on a full Triton with --url") from exc
        entry = served.model(model)
        yield entry.config, served.handle, entry.served_by, noop[0] if noop else None


def _onnx_file(model_dir: Path | None, config: Any) -> Path | None:
    from tritongen.repository import versions_of

    if model_dir is None or config is None:
        return None
    versions = versions_of(model_dir)
    if not versions:
        return None
    path = model_dir / str(versions[-1]) / (config.default_model_filename or "model.onnx")
    return path if path.is_file() else None


def _served_version(model_dir: Path | None) -> str:
    from tritongen.repository import versions_of

    versions = versions_of(model_dir) if model_dir is not None and model_dir.is_dir() else []
    return str(versions[-1]) if versions else "latest"


# ----------------------------------------------------------------------------------------------------- report files
def write_report(report: BenchReport, folder: Path) -> list[Path]:
    """report.md, report.json and (with matplotlib) bench.png in `folder`; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    written.append(json_path)
    plot = plot_report(report, folder / "bench.png")
    if plot is not None:
        written.append(plot)
    md = folder / "report.md"
    md.write_text(render_markdown(report, plot.name if plot else None))
    written.insert(0, md)
    return written


def render_markdown(report: BenchReport, plot_name: str | None) -> str:
    import jinja2

    from tritongen import __version__

    templates = Path(__file__).resolve().parent / "templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["num"] = _num
    return env.get_template("bench_report.md.j2").render(r=report, best=report.best, plot=plot_name,
                                                         fraction=report.fraction_of_ceiling,
                                                         tritongen_version=__version__)


def plot_report(report: BenchReport, path: Path) -> Path | None:
    """Throughput and p99 latency against concurrency; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: render to a file only
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from matplotlib.ticker import StrMethodFormatter

    xs = [p.concurrency for p in report.points]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    served = [p.throughput for p in report.points]
    ax.plot(xs, served, "o-", color="tab:blue", label="served throughput")
    top = max(served, default=0.0)
    if report.generator and report.generator.noop_throughput:
        ax.axhline(report.generator.noop_throughput, color="tab:gray", linestyle=":", alpha=0.8,
                   label="no-op model (client + serving path)")
        top = max(top, report.generator.noop_throughput)
    ceiling = report.ceiling
    if ceiling is not None and ceiling.throughput <= 3 * top:
        ax.axhline(ceiling.throughput, color="tab:blue", linestyle="--", alpha=0.6,
                   label=f"ONNX Runtime in-process (batch {ceiling.batch_size})")
        top = max(top, ceiling.throughput)
    elif ceiling is not None:
        # Far above: drawn to scale it would flatten every served point against the axis.
        ax.annotate(f"ONNX Runtime in-process: {ceiling.throughput:,.0f} inf/s at batch {ceiling.batch_size} "
                    f"({ceiling.throughput / max(top, 1e-9):.0f}x, off this scale)", xy=(0.01, 0.97),
                    xycoords="axes fraction", va="top", fontsize=8, color="tab:blue")
    ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrency (requests in flight)")
    ax.set_ylabel("inferences / s", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(xs, [p.latency.p99 for p in report.points], "s-", color="tab:red", label="p99 latency")
    ax2.plot(xs, [p.latency.p50 for p in report.points], "s--", color="tab:red", alpha=0.4, label="p50 latency")
    ax2.set_ylabel("latency (ms)", color="tab:red")
    ax2.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    # Below the axes: inside, the legend would hide the lines it explains.
    fig.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower center", ncol=3, fontsize=8, frameon=False)
    ax.set_title(f"{report.model} over {report.protocol.upper()}, batch {report.batch_size} per request", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def default_report_dir(model: str) -> Path:
    return Path("bench_reports") / f"{model}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has neither; dict keys become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value

