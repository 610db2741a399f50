"""`tune`: search instance count and batching settings on the real server, and write the best config back.

Each trial reloads the model in place with a config override (explicit model control), so the server is started
once. The search is coordinate-wise hill climbing: from the current config, walk one setting at a time in the
direction that improves the objective (highest throughput with p99 within the latency budget), then the next
setting, and repeat until a whole pass changes nothing or the trial/time budget runs out. The winner is measured
again in alternation with the starting config (medians of three rounds each, in the order start-best, best-start,
start-best so that drift favours neither) before anything is written, so noise alone cannot rewrite a config.
Settings that mean the same to the server (an explicit thread count equal to the one the runner picks itself) are
one config: measured once, and never a "gain".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tritongen.bench import (
    LoadPoint,
    LoadSettings,
    Workload,
    check_settings,
    json_safe,
    make_workload,
    measure_point,
    model_spec,
)
from tritongen.errors import CheckFailed, TritongenError

DEFAULT_CONCURRENCIES = (4, 16, 32)
DEFAULT_DURATION_S = 2.0
DEFAULT_MAX_TRIALS = 20
DEFAULT_TIME_LIMIT_S = 600.0
# A move must beat the best so far by this much: smaller differences are within run-to-run noise on a busy machine.
MIN_GAIN = 0.03
# The winner and the start are measured again alternately this many times each before anything is written.
CONFIRM_ROUNDS = 3
QUEUE_DELAYS_US = (0, 100, 250, 500, 1000, 2000, 5000, 10000)
AXES = ("instances", "intra_op_threads", "max_queue_delay_us", "max_batch_size", "preferred_batch_sizes")
CATEGORICAL = ("intra_op_threads", "preferred_batch_sizes")  # tried value by value, not walked along an order
# Threads per instance: tritongen's python runner (model.py) reads the first key, Triton's onnxruntime backend the
# second. An ONNX config gets both, so the setting means the same on the embedded server and on a full Triton.
THREAD_KEYS = ("intra_op_num_threads", "intra_op_thread_count")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrialConfig:
    """The settings tune searches; everything else in the config stays as the user wrote it."""

    instances: int
    max_batch_size: int
    max_queue_delay_us: int | None  # None: no dynamic batching
    preferred_batch_sizes: tuple[int, ...] = ()
    intra_op_threads: int | None = None  # ONNX Runtime threads per instance; None: the server's default

    @staticmethod
    def threads_of(config: Any) -> int | None:
        for key in THREAD_KEYS:
            value = config.parameters[key].string_value.strip() if key in config.parameters else ""
            if value.isdigit() and int(value) > 0:
                return int(value)
        return None

    @staticmethod
    def of(config: Any) -> TrialConfig:
        batching = config.dynamic_batching if config.HasField("dynamic_batching") else None
        # Triton's count is per group (one group per GPU, say); tune sets every group's count alike.
        instances = max(1, config.instance_group[0].count) if config.instance_group else 1
        return TrialConfig(instances, int(config.max_batch_size),
                           int(batching.max_queue_delay_microseconds) if batching is not None else None,
                           tuple(batching.preferred_batch_size) if batching is not None else (),
                           TrialConfig.threads_of(config))

    def apply(self, config: Any) -> Any:
        """A copy of `config` with these settings."""
        from tritonclient.grpc import model_config_pb2

        new = model_config_pb2.ModelConfig()
        new.CopyFrom(config)
        new.max_batch_size = self.max_batch_size
        if not new.instance_group:
            new.instance_group.add()
        for group in new.instance_group:
            group.count = self.instances
        if self.max_queue_delay_us is None:
            new.ClearField("dynamic_batching")
        else:
            new.dynamic_batching.max_queue_delay_microseconds = self.max_queue_delay_us
            del new.dynamic_batching.preferred_batch_size[:]
            new.dynamic_batching.preferred_batch_size.extend(self.preferred_batch_sizes)
        keys = THREAD_KEYS[:1] if new.backend == "python" else THREAD_KEYS
        for key in THREAD_KEYS:
            if key in new.parameters and (self.intra_op_threads is None or key not in keys):
                del new.parameters[key]
        if self.intra_op_threads is not None:
            for key in keys:
                new.parameters[key].string_value = str(self.intra_op_threads)
        for warmup in new.model_warmup:  # a warmup batch above the new max would fail the load
            if self.max_batch_size > 0 and warmup.batch_size > self.max_batch_size:
                warmup.batch_size = self.max_batch_size
        return new

    def same_as_default_threads(self, default_threads: Callable[[int], int] | None) -> TrialConfig:
        """This config, with an explicit thread count that equals the runner's own choice turned into None (default)."""
        if default_threads is None or self.intra_op_threads is None:
            return self
        if self.intra_op_threads != default_threads(self.instances):
            return self
        return replace(self, intra_op_threads=None)

    def describe(self) -> str:
        delay = "no dynamic batching" if self.max_queue_delay_us is None else f"delay {self.max_queue_delay_us} µs"
        preferred = ",".join(map(str, self.preferred_batch_sizes)) or "none"
        threads = f"{self.intra_op_threads} thr" if self.intra_op_threads else "default thr"
        return f"{self.instances} inst · {threads} · max batch {self.max_batch_size} · {delay} · preferred {preferred}"


@dataclass(frozen=True)
class Trial:
    index: int
    role: str  # start | search | confirm-start | confirm-best
    config: TrialConfig
    points: tuple[LoadPoint, ...]
    feasible: bool  # some concurrency level met the latency budget without errors
    throughput: float | None  # the best inferences/s among feasible levels
    concurrency: int | None  # where that was
    p99_ms: float | None  # at that level; for an infeasible trial, the lowest p99 seen
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class TuneReport:
    model: str
    server: str
    served_by: str
    latency_budget_ms: float | None
    concurrencies: tuple[int, ...]
    batch_size: int
    trials: tuple[Trial, ...]
    start: TrialConfig
    best: TrialConfig
    start_throughput: float | None  # from the back-to-back confirmation when there was one
    best_throughput: float | None
    improved: bool  # the best beat the start by more than MIN_GAIN, confirmed
    stopped_because: str
    seconds: float
    config_path: str | None = None  # written, or None
    backup_path: str | None = None
    validated: bool | None = None  # None: not run
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gain(self) -> float | None:
        if not self.start_throughput or self.best_throughput is None:
            return None
        return self.best_throughput / self.start_throughput

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"ok": True, **asdict(self), "gain": self.gain})


# ---------------------------------------------------------------------------------------------------- search space
def search_axes(start: TrialConfig, built_max: int, cpus: int,
                instances: Sequence[int] | None = None, threads: Sequence[int] | None = None) -> dict[str, list[Any]]:
    """Ordered values per setting; batching settings only for models that batch, never above the built max."""
    counts = sorted(set(instances or (1, 2, 3, 4, max(1, cpus // 2), cpus)) | {start.instances})
    if not instances:
        counts = [c for c in counts if c <= max(4, cpus, start.instances)]
    axes: dict[str, list[Any]] = {"instances": counts}
    # Powers of two up to the CPU count: on a small machine one thread often beats several that spin-wait
    # against the server's and the client's own threads.
    axes["intra_op_threads"] = sorted(set(threads or ({1 << i for i in range(0, 8) if (1 << i) <= cpus} | {cpus})))
    if built_max > 0:
        sizes = {1 << i for i in range(1, 16) if (1 << i) <= built_max} | {built_max, start.max_batch_size}
        axes["max_batch_size"] = sorted(s for s in sizes if 1 <= s <= built_max)
        delays: list[Any] = sorted(set(QUEUE_DELAYS_US) | ({start.max_queue_delay_us} - {None}))
        axes["max_queue_delay_us"] = ([None] if start.max_queue_delay_us is None else []) + delays
        axes["preferred_batch_sizes"] = []  # depends on max_batch_size: see _preferred_choices
    return axes


def _preferred_choices(cfg: TrialConfig, start: TrialConfig) -> list[tuple[int, ...]]:
    # No preferred size means [max_batch_size] to Triton (it fills that in when it loads the config): not a choice.
    mbs = cfg.max_batch_size
    choices = [()] + ([(mbs // 2, mbs)] if mbs >= 4 else []) + ([(mbs // 4, mbs // 2, mbs)] if mbs >= 8 else [])
    if start.preferred_batch_sizes and max(start.preferred_batch_sizes) <= mbs and start.preferred_batch_sizes not in choices:
        choices.append(start.preferred_batch_sizes)
    return choices


def _with(cfg: TrialConfig, axis: str, value: Any) -> TrialConfig:
    if axis != "max_batch_size":
        return replace(cfg, **{axis: value})
    # Preferred sizes follow the max batch size: fractions of the old max (max/2, max) become the same fractions of
    # the new one; other sizes stay where they fit.
    old, preferred = cfg.max_batch_size, cfg.preferred_batch_sizes
    if preferred and all(old % p == 0 for p in preferred) and all(value * p % old == 0 for p in preferred):
        preferred = tuple(sorted({value * p // old for p in preferred}))
    else:
        preferred = tuple(p for p in preferred if p <= value)
    return replace(cfg, max_batch_size=value, preferred_batch_sizes=preferred)


def _better(a: Trial, b: Trial, min_gain: float = MIN_GAIN) -> bool:
    """Whether trial `a` beats `b` by more than noise: feasible first, then throughput (or, unfeasible, lower p99)."""
    if a.error or not a.points:
        return False
    if b.error or not b.points:
        return True
    if a.feasible != b.feasible:
        return a.feasible
    if a.feasible:
        return (a.throughput or 0.0) > (b.throughput or 0.0) * (1 + min_gain)
    return (a.p99_ms or math.inf) < (b.p99_ms or math.inf) * (1 - min_gain)


def _combined(trials: Sequence[Trial]) -> Trial:
    """Several measurements of one config as one: medians, so one round disturbed by other work does not decide."""
    first = trials[0]
    feasible = sum(t.feasible for t in trials) * 2 > len(trials)
    throughputs = [t.throughput for t in trials if t.throughput is not None]
    p99s = [t.p99_ms for t in trials if t.p99_ms is not None]
    errors = [t.error for t in trials if t.error]
    return replace(first, points=tuple(p for t in trials for p in t.points), feasible=feasible,
                   throughput=statistics.median(throughputs) if feasible and throughputs else None,
                   p99_ms=statistics.median(p99s) if p99s else None, seconds=sum(t.seconds for t in trials),
                   error=errors[0] if len(errors) * 2 > len(trials) else None)


# ------------------------------------------------------------------------------------------------------- the tuner
class _Tuner:
    """Runs trials on one server; remembers each config's result so a setting is never measured twice."""

    def __init__(self, grpc_url: str, url: str, model: str, base_config: Any, workload: Workload,
                 settings: LoadSettings, concurrencies: tuple[int, ...], budget_ms: float | None,
                 on_trial: Callable[[Trial], None], progress: Progress,
                 default_threads: Callable[[int], int] | None = None) -> None:
        import tritonclient.grpc as grpcclient

        self.control = grpcclient.InferenceServerClient(grpc_url)
        self.url = url
        self.model = model
        self.base = base_config
        self.workload = workload
        self.settings = settings
        self.concurrencies = concurrencies
        self.budget_ms = budget_ms
        self.on_trial = on_trial
        self.progress = progress
        self.default_threads = default_threads  # instances -> the threads the runner picks when none are set
        self.trials: list[Trial] = []
        self.cache: dict[TrialConfig, Trial] = {}  # keyed by what the server runs, see TrialConfig.same_as_default_threads

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.control.close()

    @property
    def search_trials(self) -> int:
        return sum(1 for t in self.trials if t.role in ("start", "search"))

    def key(self, cfg: TrialConfig) -> TrialConfig:
        return cfg.same_as_default_threads(self.default_threads)

    def trial_of(self, cfg: TrialConfig) -> Trial | None:
        return self.cache.get(self.key(cfg))

    def evaluate(self, cfg: TrialConfig, role: str = "search") -> Trial:
        key = self.key(cfg)
        if role in ("start", "search") and key in self.cache:
            return self.cache[key]  # the same config for the server: its trial, not a new one
        started = time.perf_counter()
        index = len(self.trials) + 1
        self.progress(f"trial {index}: {cfg.describe()}")
        try:
            self.load(cfg)
            points = self.measure()
        except TritongenError as exc:
            trial = Trial(index, role, cfg, (), False, None, None, None, time.perf_counter() - started, exc.message)
        else:
            trial = self._judge(index, role, cfg, points, time.perf_counter() - started)
        self.trials.append(trial)
        if role in ("start", "search"):
            self.cache[key] = trial
        self.on_trial(trial)
        return trial

    def load(self, cfg: TrialConfig) -> None:
        from google.protobuf import json_format
        from tritonclient.utils import InferenceServerException

        config = cfg.apply(self.base)
        try:
            self.control.load_model(self.model, config=json_format.MessageToJson(config))
        except InferenceServerException as exc:
            text = str(exc.message() or exc)
            if "explicit" in text.lower() or "not allowed" in text.lower() or "polling" in text.lower():
                raise TritongenError(f"the server refuses to reload '{self.model}': {text}",
                                     "tune needs a server started with --model-control-mode=explicit; "
                                     "leave out --url to let tritongen start one") from exc
            raise TritongenError(f"the server could not load '{self.model}' with {cfg.describe()}: {text}",
                                 "this setting is skipped") from exc
        if not self.control.is_model_ready(self.model):
            raise TritongenError(f"'{self.model}' is not ready after loading {cfg.describe()}", "see the server log")

    def measure(self) -> tuple[LoadPoint, ...]:
        # A short burst first: the reloaded instances allocate their buffers on the first real batches.
        measure_point(self.url, self.workload, max(self.concurrencies),
                      replace(self.settings, duration_s=0.5, requests=None, settle_s=0.0))
        points = []
        for c in self.concurrencies:
            point = measure_point(self.url, self.workload, c, self.settings)
            points.append(point)
            if self.budget_ms is not None and not point.latency.p99 <= self.budget_ms:
                break  # more requests in flight only wait longer
        return tuple(points)

    def _judge(self, index: int, role: str, cfg: TrialConfig, points: tuple[LoadPoint, ...],
               seconds: float) -> Trial:
        ok = [p for p in points if p.requests > 0 and p.errors == 0
              and (self.budget_ms is None or p.latency.p99 <= self.budget_ms)]
        if ok:
            best = max(ok, key=lambda p: p.throughput)
            return Trial(index, role, cfg, points, True, best.throughput, best.concurrency, best.latency.p99, seconds)
        p99s = [p.latency.p99 for p in points if p.requests > 0]
        errors = next((p.first_error for p in points if p.first_error), None)
        return Trial(index, role, cfg, points, False, None, None, min(p99s) if p99s else None, seconds,
                     error=None if p99s else errors or "no request succeeded")


def tune_model(repository: str | Path, model: str, *, server: str = "embedded", latency_budget_ms: float | None = None,
               max_trials: int = DEFAULT_MAX_TRIALS, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
               concurrencies: Sequence[int] = DEFAULT_CONCURRENCIES, settings: LoadSettings | None = None,
               batch_size: int = 1, lengths: Mapping[str, int] | None = None,
               instances: Sequence[int] | None = None, threads: Sequence[int] | None = None, write: bool = True,
               validate: bool = True, tritonserver: str | Path | None = None, image: str | None = None,
               timeout_s: float | None = None,
               on_trial: Callable[[Trial], None] | None = None, on_progress: Progress | None = None) -> TuneReport:
    """Search the config of `model` on a real server; write the best back to `<model>/config.pbtxt` (see module doc)."""
    from tritongen.server.stage import read_config, select_models

    settings = settings or LoadSettings(duration_s=DEFAULT_DURATION_S)
    concurrencies = tuple(sorted(set(concurrencies)))
    check_settings(settings, concurrencies)
    if max_trials < 1:
        raise TritongenError(f"--max-trials {max_trials} must be at least 1", "e.g. --max-trials 20")
    if latency_budget_ms is not None and latency_budget_ms <= 0:
        raise TritongenError(f"--latency-budget-ms {latency_budget_ms} must be positive", "e.g. --latency-budget-ms 50")
    repository = Path(repository)
    select_models(repository, [model])
    model_dir = repository / model
    local_config = read_config(model_dir)
    progress = on_progress or (lambda _msg: None)
    notes: list[str] = []
    started = time.perf_counter()
    with _tuning_server(repository, model, server, tritonserver, image, timeout_s, progress) as (handle, served_by, base):
        spec = model_spec(model_dir, base)
        workload = make_workload(model, spec, batch_size, lengths)
        url = handle.grpc_url if settings.protocol == "grpc" else handle.http_url
        tuner = _Tuner(handle.grpc_url, url, model, base, workload, settings, concurrencies, latency_budget_ms,
                       on_trial or (lambda _t: None), progress, _runner_default_threads(server, base))
        try:
            # The user's file, not the served config: Triton fills in defaults (preferred sizes) when it loads one.
            start = TrialConfig.of(local_config)
            best_cfg, stopped = _search(tuner, start, int(local_config.max_batch_size), max_trials, time_limit_s,
                                        started, instances, threads)
            start_trial = tuner.trial_of(start)
            assert start_trial is not None  # _search measured it first
            best_trial = tuner.trial_of(best_cfg) or start_trial
            improved = False
            start_thr, best_thr = start_trial.throughput, best_trial.throughput
            if best_trial is not start_trial:
                # Alternating, same conditions: the gain that decides whether to write is this one.
                again: dict[str, list[Trial]] = {"confirm-start": [], "confirm-best": []}
                pair = [("confirm-start", start), ("confirm-best", best_cfg)]
                for round_ in range(CONFIRM_ROUNDS):
                    for role, cfg in pair if round_ % 2 == 0 else pair[::-1]:
                        again[role].append(tuner.evaluate(cfg, role))
                again_start, again_best = _combined(again["confirm-start"]), _combined(again["confirm-best"])
                improved = _better(again_best, again_start)
                start_thr, best_thr = again_start.throughput, again_best.throughput
                if not improved:
                    notes.append(f"the best trial ({best_cfg.describe()}) did not beat the starting config by more "
                                 f"than {MIN_GAIN:.0%} when measured again alternately with it: the config is left as it is")
            if latency_budget_ms is None:
                notes.append("no --latency-budget-ms: throughput was maximised whatever the latency")
            if not start_trial.feasible and start_trial.error is None:
                notes.append(f"the starting config misses the {latency_budget_ms} ms p99 budget at every concurrency "
                             "level tried")
        finally:
            tuner.close()
    from tritongen.server.stage import PYTHON_RUNNER

    if served_by == PYTHON_RUNNER:
        notes.append("measured on the embedded Triton, which serves ONNX models through the python backend: a Triton "
                     "with the onnxruntime backend has less per-request overhead, so the best settings there can "
                     "differ (run `tritongen tune --url` against it)")
    report = TuneReport(model=model, server=handle.description or handle.http_url, served_by=served_by,
                        latency_budget_ms=latency_budget_ms, concurrencies=concurrencies, batch_size=batch_size,
                        trials=tuple(tuner.trials), start=start, best=best_cfg if improved else start,
                        start_throughput=start_thr, best_throughput=best_thr if improved else start_thr,
                        improved=improved, stopped_because=stopped, seconds=time.perf_counter() - started,
                        notes=tuple(notes))
    if not (improved and write):
        return report
    progress("writing the tuned config")
    gain = f"{report.gain:.2f}x the previous config's throughput" if report.gain else "highest throughput found"
    budget = f" with p99 <= {latency_budget_ms:g} ms" if latency_budget_ms else ""
    path, backup = write_tuned_config(model_dir, best_cfg, note=f"{gain}{budget} at concurrency "
                                      f"{', '.join(map(str, concurrencies))}")
    report = replace(report, config_path=str(path), backup_path=str(backup))
    if validate:
        report = replace(report, validated=_validate_written(repository, model, server, tritonserver, image,
                                                             timeout_s, path, backup, progress))
    return report


def _search(tuner: _Tuner, start: TrialConfig, built_max: int, max_trials: int, time_limit_s: float,
            started: float, instances: Sequence[int] | None,
            threads: Sequence[int] | None) -> tuple[TrialConfig, str]:
    """Coordinate-wise hill climbing from `start`; returns the best config and why the search stopped."""
    best = tuner.evaluate(start, "start")
    if best.error:
        raise TritongenError(f"the starting config of '{tuner.model}' could not be measured: {best.error}",
                             "check it with `tritongen validate` first")
    current = start
    axes = search_axes(start, built_max, os.cpu_count() or 1, instances, threads)
    order = [a for a in AXES if a in axes]

    def budget_left() -> str | None:
        if tuner.search_trials >= max_trials:
            return f"reached --max-trials {max_trials}"
        per_trial = (time.perf_counter() - started) / max(1, len(tuner.trials))
        # Keep room for the confirmation trials at the end.
        if time.perf_counter() - started + (2 * CONFIRM_ROUNDS + 1) * per_trial > time_limit_s:
            return f"time limit of {time_limit_s:.0f} s"
        return None

    while True:
        moved_in_pass = False
        for axis in order:
            values = _preferred_choices(current, start) if axis == "preferred_batch_sizes" else axes[axis]
            here = getattr(current, axis)
            if axis in CATEGORICAL:
                # Unordered choices: try each, keep the best.
                for value in values:
                    if value == here:
                        continue
                    if (why := budget_left()) is not None:
                        return current, why
                    trial = tuner.evaluate(_with(current, axis, value))
                    if _better(trial, best):
                        current, best, moved_in_pass = trial.config, trial, True
                continue
            if here not in values:
                values = sorted(set(values) | {here}, key=lambda v: -1 if v is None else v)
            index = values.index(here)
            for direction in (+1, -1):
                moved = False
                i = index + direction
                while 0 <= i < len(values):
                    if (why := budget_left()) is not None:
                        return current, why
                    trial = tuner.evaluate(_with(current, axis, values[i]))
                    if not _better(trial, best):
                        break
                    current, best, moved, moved_in_pass = trial.config, trial, True, True
                    i += direction
                if moved:
                    break  # improving upwards: no need to look downwards
        if not moved_in_pass:
            return current, "no single change improved the best config (a local optimum)"


def _runner_default_threads(server: str, config: Any) -> Callable[[int], int] | None:
    """instances -> threads per instance that tritongen's python runner picks itself (templates/model.py.j2).

    Known only for a python-backend model on the embedded server, which runs on this machine's CPUs. Triton's
    onnxruntime backend leaves the choice to ONNX Runtime, which does not divide the CPUs among instances.
    """
    if server != "embedded" or config.backend != "python":
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return lambda instances: max(1, cpus // max(1, instances))


@contextlib.contextmanager
def _tuning_server(repository: Path, model: str, server: str, tritonserver: str | Path | None, image: str | None,
                   timeout_s: float | None, progress: Progress) -> Iterator[tuple[Any, str, Any]]:
    """Yield (handle, served by, the config the server runs) for a server that reloads models on request."""
    from tritongen.server import NothingToServe, ServerFlags, serve, served_config, starts_server

    # A server someone else runs must have been started with explicit model control: its flags are its own.
    flags = ServerFlags(model_control="explicit", load=(model,)) if starts_server(server) else None
    with contextlib.ExitStack() as stack:
        try:
            served = stack.enter_context(serve(repository, server, models=[model], flags=flags,
                                               tritonserver=tritonserver, image=image, timeout_s=timeout_s,
                                               on_progress=progress, on_warning=progress))
        except NothingToServe as exc:
            raise TritongenError(f"the {server} server cannot serve '{model}': {exc.models[0].skipped_reason}",
                                 "tune it on a full Triton started with --model-control-mode=explicit (--url)") from exc
        yield served.handle, served.model(model).served_by, served_config(served.handle.grpc_url, model)


# ------------------------------------------------------------------------------------------------------ write-back
def write_tuned_config(model_dir: Path, tuned: TrialConfig, note: str = "") -> tuple[Path, Path]:
    """Replace `<model>/config.pbtxt` with the tuned settings, atomically, keeping the previous file as a backup.

    Only the tuned fields change. The text is rendered through the same template as `build` when the config is
    one `build` could have written, else written by protobuf; either way it parses with Triton's schema and is
    checked against the ONNX graph before anything is touched.
    """
    from tritongen.config import parse_config
    from tritongen.repository import CONFIG, backup_path, write_text_atomic

    path = model_dir / CONFIG
    previous_text = path.read_text()
    current = parse_config(previous_text)
    expected = tuned.apply(current)
    backup = backup_path(path)
    header = (f"# Tuned by `tritongen tune` on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}: {tuned.describe()}"
              + (f" ({note})" if note else "") + f".\n# The previous config is kept next to this file as {backup.name}.\n")
    text = header + _config_text(model_dir, expected)
    proto = parse_config(text)
    if proto != expected:  # a rendering bug must not change what the user serves
        raise TritongenError("internal error: the tuned config does not parse back to the intended settings",
                             "please report this; nothing was written")
    onnx = _onnx_of(model_dir, proto)
    if onnx is not None:
        from tritongen.config import check_config_against_onnx

        check_config_against_onnx(proto, onnx)
    shutil.copy2(path, backup)  # first the backup, so a crash in between loses nothing
    write_text_atomic(path, text)
    return path, backup


def _config_text(model_dir: Path, expected: Any) -> str:
    """The template's rendering when it reproduces `expected` exactly (comments and layout of `build`), else protobuf's."""
    from google.protobuf import text_format

    from tritongen.config import KINDS, ModelConfig, parse_config, render_config
    from tritongen.repository import read_manifest, versions_of

    with contextlib.suppress(TritongenError, KeyError, ValueError, TypeError, IndexError):
        versions = versions_of(model_dir)
        manifest = read_manifest(model_dir / str(versions[-1]))
        spec = replace(model_spec(model_dir, expected), max_batch_size=int(expected.max_batch_size))
        kinds = {v: k for k, v in KINDS.items()}
        from tritonclient.grpc import model_config_pb2

        kind_name = model_config_pb2.ModelInstanceGroup.Kind.Name(expected.instance_group[0].kind)
        batching = expected.dynamic_batching
        intent = ModelConfig(
            name=expected.name, spec=spec, format=str(manifest.get("format", "onnx")),
            instance_count=sum(max(1, g.count) for g in expected.instance_group), kind=kinds[kind_name],
            max_queue_delay_us=int(batching.max_queue_delay_microseconds),
            preferred_batch_sizes=tuple(batching.preferred_batch_size), warmup=bool(expected.model_warmup),
            parameters={k: v.string_value for k, v in expected.parameters.items()},
            source=Path(str((manifest.get("checkpoint") or {}).get("path", "a PyTorch checkpoint"))).name)
        rendered = render_config(intent)
        if parse_config(rendered) == expected:
            return rendered
    return text_format.MessageToString(expected)


def _onnx_of(model_dir: Path, config: Any) -> Path | None:
    from tritongen.repository import versions_of

    versions = versions_of(model_dir)
    if not versions:
        return None
    path = model_dir / str(versions[-1]) / (config.default_model_filename or "model.onnx")
    return path if path.is_file() else None


def _free_path(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}-{n}")
        n += 1
    return candidate


def _validate_written(repository: Path, model: str, server: str, tritonserver: str | Path | None, image: str | None,
                      timeout_s: float | None, path: Path, backup: Path, progress: Progress) -> bool | None:
    """Run `tritongen validate` on the new config; on failure put the previous one back and keep the tuned one aside."""
    try:
        from tritongen.validate import validate_repository
    except ImportError:
        return None
    from tritongen.repository import write_text_atomic
    from tritongen.server import starts_server

    if not starts_server(server):
        _reload_from_disk(server, model)
    progress("validating the tuned config")
    report = validate_repository(repository, models=[model], server=server, tritonserver=tritonserver, image=image,
                                 timeout_s=timeout_s, on_progress=lambda msg: progress(f"validate: {msg}"))
    if report.passed:
        return True
    failures = "; ".join(f for m in report.models for f in m.failures()) or "see `tritongen validate`"
    kept = _free_path(path.with_name(f"{path.name}.tuned-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"))
    shutil.copy2(path, kept)
    write_text_atomic(path, backup.read_text())
    raise CheckFailed(f"the tuned config of '{model}' failed validation ({failures}); the previous config was put "
                      f"back, the tuned one is kept as {kept.name}", "run `tritongen validate` on it to see why")


def _reload_from_disk(url: str, model: str) -> None:
    """A server we did not start runs the last trial's config: make it read the written file."""
    import tritonclient.grpc as grpcclient

    from tritongen.server import handle_from_url

    handle = handle_from_url(url)
    client = grpcclient.InferenceServerClient(handle.grpc_url)
    try:
        client.load_model(model)
    finally:
        client.close()
