"""`tune_model`: the search on a real server, the confirmation of its winner, and the write-back.

Each trial reloads the model in place with a config override (explicit model control), so the server is started
once. The winner is measured again in alternation with the starting config before anything is written (`confirm.py`),
so noise alone cannot rewrite a config.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tritongen import defaults
from tritongen.bench import LoadPoint, LoadSettings, Workload, check_settings, json_safe, make_workload, measure_point
from tritongen.errors import TritongenError
from tritongen.tune.confirm import CONFIRM_ROUNDS, confirm
from tritongen.tune.search import Trial, Trials, search, search_axes
from tritongen.tune.trial import TrialConfig
from tritongen.tune.writeback import validate_written, write_tuned_config

DEFAULT_CONCURRENCIES = defaults.TUNE_CONCURRENCIES
DEFAULT_DURATION_S = defaults.TUNE_DURATION_S
DEFAULT_MAX_TRIALS = defaults.TUNE_MAX_TRIALS
DEFAULT_TIME_LIMIT_S = defaults.TUNE_TIME_LIMIT_S
Progress = Callable[[str], None]


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


class ServerMeasure:
    """Measures a config on a running server: reload the model with it (explicit model control), then load it."""

    def __init__(self, grpc_url: str, url: str, model: str, base_config: Any, workload: Workload,
                 settings: LoadSettings, concurrencies: tuple[int, ...], budget_ms: float | None) -> None:
        import tritonclient.grpc as grpcclient

        self.control = grpcclient.InferenceServerClient(grpc_url)
        self.url = url
        self.model = model
        self.base = base_config
        self.workload = workload
        self.settings = settings
        self.concurrencies = concurrencies
        self.budget_ms = budget_ms

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.control.close()

    def __call__(self, cfg: TrialConfig) -> tuple[LoadPoint, ...]:
        self.load(cfg)
        return self.measure()

    def load(self, cfg: TrialConfig) -> None:
        from google.protobuf import json_format
        from tritonclient.utils import InferenceServerException

        config = self.config_for(cfg)
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

    def config_for(self, cfg: TrialConfig) -> Any:
        """The config a trial loads: the served one with `cfg`'s settings, and no response cache (every request of a
        trial is the same: with the cache on, a trial would measure cache hits, not the setting)."""
        config = cfg.apply(self.base)
        config.ClearField("response_cache")
        return config

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


def tune_model(repository: str | Path, model: str, *, server: str = "embedded", latency_budget_ms: float | None = None,
               max_trials: int = DEFAULT_MAX_TRIALS, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
               concurrencies: Sequence[int] = DEFAULT_CONCURRENCIES, settings: LoadSettings | None = None,
               batch_size: int = 1, lengths: Mapping[str, int] | None = None,
               instances: Sequence[int] | None = None, threads: Sequence[int] | None = None, write: bool = True,
               validate: bool = True, tritonserver: str | Path | None = None, image: str | None = None,
               timeout_s: float | None = None,
               on_trial: Callable[[Trial], None] | None = None, on_progress: Progress | None = None) -> TuneReport:
    """Search the config of `model` on a real server; write the best back to `<model>/config.pbtxt` (see module doc)."""
    from tritongen.bench import model_spec
    from tritongen.repository import read_model_dir
    from tritongen.server.stage import PYTHON_RUNNER, select_models

    settings = settings or LoadSettings(duration_s=DEFAULT_DURATION_S)
    concurrencies = tuple(sorted(set(concurrencies)))
    check_settings(settings, concurrencies)
    if max_trials < 1:
        raise TritongenError(f"--max-trials {max_trials} must be at least 1", "e.g. --max-trials 20")
    if latency_budget_ms is not None and latency_budget_ms <= 0:
        raise TritongenError(f"--latency-budget-ms {latency_budget_ms} must be positive", "e.g. --latency-budget-ms 50")
    repository = Path(repository)
    select_models(repository, [model])
    local = read_model_dir(repository / model)
    progress = on_progress or (lambda _msg: None)
    notes: list[str] = []
    started = time.perf_counter()
    with _tuning_server(repository, model, server, tritonserver, image, timeout_s, progress) as (handle, served_by, base):
        workload = make_workload(model, model_spec(local.path, base), batch_size, lengths)
        url = handle.grpc_url if settings.protocol == "grpc" else handle.http_url
        measure = ServerMeasure(handle.grpc_url, url, model, base, workload, settings, concurrencies, latency_budget_ms)
        trials = Trials(measure, latency_budget_ms, runner_default_threads(server, base), on_trial, progress)
        try:
            # The user's file, not the served config: Triton fills in defaults (preferred sizes) when it loads one.
            start = TrialConfig.of(local.config)
            first = trials.evaluate(start, "start")
            if first.error:
                raise TritongenError(f"the starting config of '{model}' could not be measured: {first.error}",
                                     "check it with `tritongen validate` first")
            axes = search_axes(start, int(local.config.max_batch_size), os.cpu_count() or 1, instances, threads)
            best_cfg, stopped = search(trials, start, axes, _budget(trials, max_trials, time_limit_s, started))
            start_trial = first
            best_trial = trials.trial_of(best_cfg) or start_trial
            improved = False
            start_thr, best_thr = start_trial.throughput, best_trial.throughput
            if best_trial is not start_trial:
                # Alternating, same conditions: the gain that decides whether to write is this one.
                verdict = confirm(trials, start, best_cfg)
                improved = verdict.improved
                start_thr, best_thr = verdict.start.throughput, verdict.best.throughput
                if verdict.note:
                    notes.append(verdict.note)
            if base.response_cache.enable:
                notes.append("response_cache is on: the trials ran with it off (every request of a trial is the "
                             "same, so they would have measured cache hits); the written config keeps it")
            if latency_budget_ms is None:
                notes.append("no --latency-budget-ms: throughput was maximised whatever the latency")
            if not start_trial.feasible and start_trial.error is None:
                notes.append(f"the starting config misses the {latency_budget_ms} ms p99 budget at every concurrency "
                             "level tried")
        finally:
            measure.close()
    if served_by == PYTHON_RUNNER:
        notes.append("measured on the embedded Triton, which serves ONNX models through the python backend: a Triton "
                     "with the onnxruntime backend has less per-request overhead, so the best settings there can "
                     "differ (run `tritongen tune --url` against it)")
    report = TuneReport(model=model, server=handle.description or handle.http_url, served_by=served_by,
                        latency_budget_ms=latency_budget_ms, concurrencies=concurrencies, batch_size=batch_size,
                        trials=tuple(trials.trials), start=start, best=best_cfg if improved else start,
                        start_throughput=start_thr, best_throughput=best_thr if improved else start_thr,
                        improved=improved, stopped_because=stopped, seconds=time.perf_counter() - started,
                        notes=tuple(notes))
    if not (improved and write):
        return report
    progress("writing the tuned config")
    gain = f"{report.gain:.2f}x the previous config's throughput" if report.gain else "highest throughput found"
    budget = f" with p99 <= {latency_budget_ms:g} ms" if latency_budget_ms else ""
    path, backup = write_tuned_config(local.path, best_cfg, note=f"{gain}{budget} at concurrency "
                                      f"{', '.join(map(str, concurrencies))}")
    report = replace(report, config_path=str(path), backup_path=str(backup))
    if validate:
        report = replace(report, validated=validate_written(repository, model, server, tritonserver, image,
                                                            timeout_s, path, backup, progress))
    return report


def _budget(trials: Trials, max_trials: int, time_limit_s: float, started: float) -> Callable[[], str | None]:
    """Why the search must stop now (trials or time spent, keeping room for the confirmation), or None."""
    def budget_left() -> str | None:
        if trials.search_trials >= max_trials:
            return f"reached --max-trials {max_trials}"
        per_trial = (time.perf_counter() - started) / max(1, len(trials.trials))
        if time.perf_counter() - started + (2 * CONFIRM_ROUNDS + 1) * per_trial > time_limit_s:
            return f"time limit of {time_limit_s:.0f} s"
        return None
    return budget_left


def runner_default_threads(server: str, config: Any) -> Callable[[int], int] | None:
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
