"""`bench_model`: serve a model, sweep the concurrency levels, measure the ceiling and the load generator's check."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tritongen.bench.ceiling import batch_sizes_to_try, instance_count, intra_op_threads, onnx_ceiling
from tritongen.bench.load import PYTHON_GENERATOR, describe_generator, measure_point
from tritongen.bench.noop import write_noop_model
from tritongen.bench.report import BenchReport, Ceiling, GeneratorCheck
from tritongen.bench.settings import DEFAULT_CONCURRENCIES, DEFAULT_WARMUP_S, LoadSettings, check_settings
from tritongen.bench.workload import Workload, make_workload, model_spec, pipeline_workload
from tritongen.errors import TritongenError

Progress = Callable[[str], None]


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
    from tritongen.repository import read_model_dir
    from tritongen.server.stage import PYTHON_RUNNER, select_models

    settings = settings or LoadSettings()
    progress = on_progress or (lambda _msg: None)
    concurrencies = tuple(sorted(set(concurrencies)))
    check_settings(settings, concurrencies)
    load_generator = describe_generator(settings)  # before anything starts: --generator h2load may not be installed
    if repository is not None:
        select_models(Path(repository), [model])  # raises the clear "not in the repository" error
    elif server == "embedded":
        raise TritongenError("bench needs --repository to start the embedded server", "pass --repository DIR or --url URL")
    local = read_model_dir(Path(repository) / model) if repository is not None else None
    notes: list[str] = []
    load_average = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    cpus = os.cpu_count() or 1
    if load_average[0] > 0.5 * cpus:
        notes.append(f"the machine was already busy before the run (load average {load_average[0]:.1f} on {cpus} "
                     "CPUs): other work competes with the server and the client, so every number is lower than on "
                     "an idle machine")
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    workload: Workload | None = None
    ceiling_result: Ceiling | None = None
    pipeline = local is not None and local.config.platform == "ensemble"
    if pipeline:
        if lengths:
            raise TritongenError(f"--length does not apply to pipeline '{model}': it is sent the raw inputs its build "
                                 "saved", "leave out --length")
        workload = pipeline_workload(model, local.path, local.config, batch_size)
        notes.append(f"a pipeline: each request carries {batch_size} of the raw inputs its build saved (the one of "
                     "median size); the time of each step is Triton's statistics of its model in the same window")
        if ceiling:
            notes.append("no ceiling: a pipeline is several models (its steps run Python code), not one ONNX file; "
                         f"bench the network among its steps ({', '.join(workload.steps)}) alone for that")
    elif local is not None:
        # Before any server starts: input mistakes fail fast, and the ceiling runs on an otherwise idle machine.
        workload = make_workload(model, model_spec(local.path, local.config), batch_size, lengths)
        if ceiling:
            ceiling_result = _ceiling_for(local, workload, settings, ceiling_seconds_per_size, notes, progress)
    elif ceiling:
        notes.append("no ceiling: it needs the model's ONNX file in a local repository (pass --repository)")
    with _serve(repository, model, server, generator_check, tritonserver, timeout_s, progress) as served:
        config, handle, served_by, noop = served
        if workload is None:
            if config.platform == "ensemble":
                raise TritongenError(f"'{model}' is a pipeline: bench needs its repository for the raw inputs to send",
                                     "pass --repository DIR")
            workload = make_workload(model, model_spec(None, config), batch_size, lengths)
        if config.response_cache.enable:
            notes.append("response_cache is on for this model and every request of a run is the same: after the "
                         "first, Triton answers from its cache, so these numbers are cache hits, not the model's "
                         "speed (tune turns the cache off for its trials)")
        url = handle.grpc_url if settings.protocol == "grpc" else handle.http_url
        if warmup_s > 0:
            progress(f"warming up for {warmup_s:g} s at concurrency {max(concurrencies)}")
            measure_point(url, workload, max(concurrencies),
                          replace(settings, duration_s=warmup_s, requests=None, settle_s=0.0))
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
                                   1e6 / best.client_cpu_us_per_request if best.client_cpu_us_per_request > 0 else 0.0,
                                   generator=best.generator)
        if generator_check:
            if noop is None:
                generator = replace(generator, noop_note="no no-op model: a server tritongen did not start cannot be "
                                                         "given one")
            else:
                generator = _noop_check(url, workload, best.concurrency, settings, noop, generator, progress)
    if served_by == PYTHON_RUNNER:
        notes.append("served through the python backend (the embedded Triton has no onnxruntime backend): each "
                     "request also pays the python backend's shared-memory hand-off, which a Triton with the "
                     "onnxruntime backend does not; the no-op model's throughput bounds what this path can do")
    return BenchReport(
        model=model, version=str(local.latest) if local is not None and local.latest is not None else "latest",
        server=handle.description or handle.http_url, served_by=served_by, protocol=settings.protocol,
        batch_size=workload.batch_size, lengths=workload.lengths, duration_s=settings.duration_s,
        requests_per_point=settings.requests, config=config_summary(config), points=tuple(points),
        ceiling=ceiling_result, generator=generator, cpus=cpus,
        load_average=tuple(round(x, 2) for x in load_average), started=started, notes=tuple(notes),  # type: ignore[arg-type]
        load_generator=load_generator)


def _noop_check(url: str, workload: Workload, concurrency: int, settings: LoadSettings, noop: str,
                generator: GeneratorCheck, progress: Progress) -> GeneratorCheck:
    """The no-op model under the same load: how fast the client and the serving path go without the model's work,
    and the generator's requests per CPU-second there; for h2load also the Python generator's, side by side."""
    progress(f"generator check: no-op model at concurrency {concurrency}")
    point = measure_point(url, workload, concurrency, settings, model=noop)
    generator = replace(generator, noop_model=noop, noop_concurrency=concurrency, noop_throughput=point.throughput,
                        noop_note=point.first_error if point.errors else None,
                        noop_requests_per_cpu_s=point.requests_per_cpu_s)
    if point.generator == PYTHON_GENERATOR:
        return generator
    progress(f"generator check: the Python generator on the no-op model at concurrency {concurrency}, for comparison")
    python = measure_point(url, workload, concurrency, replace(settings, generator=PYTHON_GENERATOR), model=noop)
    return replace(generator, python_noop_throughput=python.throughput,
                   python_requests_per_cpu_s=python.requests_per_cpu_s)


def _ceiling_for(local: Any, workload: Workload, settings: LoadSettings, seconds_per_size: float | None,
                 notes: list[str], progress: Progress) -> Ceiling | None:
    """The ceiling of a local model folder (`ModelDir`), or None with a note saying why there is none."""
    onnx_path = local.artifact_path()
    if onnx_path is None or onnx_path.suffix != ".onnx":
        notes.append("no ceiling: the model has no ONNX file in its latest version directory")
        return None
    if seconds_per_size is None:  # in proportion to the load measurement, within reason
        seconds_per_size = min(1.0, max(0.2, (settings.duration_s or 5.0) / 5))
    sessions, threads = instance_count(local.config), intra_op_threads(local.config)
    progress(f"measuring the in-process ONNX Runtime ceiling ({onnx_path.name}, {sessions} session(s) x {threads} "
             "thread(s))")
    return onnx_ceiling(onnx_path, model_spec(local.path, local.config), workload.lengths, sessions=sessions,
                        intra_op_threads=threads, batch_sizes=batch_sizes_to_try(local.config.max_batch_size),
                        seconds_per_size=seconds_per_size)


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
