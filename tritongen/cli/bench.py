"""`tritongen bench`: argument handling and printing around tritongen.bench.bench_model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from tritongen import defaults
from tritongen.cli import main
from tritongen.cli.common import common_options, emit_json, progress_line, stdout_console


@main.command("bench")
@click.argument("model")
@click.option("--repository", type=click.Path(path_type=Path), default=Path("model_repository"), show_default=True,
              help="Model repository written by `tritongen build`.")
@click.option("--url", metavar="URL",
              help="Benchmark a Triton already running at this HTTP address (gRPC assumed on the next port) instead "
                   "of starting the embedded server. --repository is then optional (spec and ceiling come from it).")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
@click.option("--generator", type=click.Choice(["auto", "h2load", "python"]), default="auto", show_default=True,
              help="Load generator: h2load (Debian's nghttp2-client; native, a few µs of CPU per request), the Python "
                   "one (tritonclient's asyncio clients), or auto: h2load when it is installed.")
@click.option("--concurrency", "concurrency", default=",".join(map(str, defaults.BENCH_CONCURRENCIES)),
              show_default=True, metavar="N,N,...",
              help="Requests kept in flight, one level after another.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help=f"Measurement window per concurrency level (default {defaults.BENCH_DURATION_S:g}).")
@click.option("--requests", type=click.IntRange(min=1), metavar="N",
              help="Instead of --duration: stop each level after N answered requests.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Items per request.")
@click.option("--length", "lengths", multiple=True, metavar="AXIS=N",
              help="Length of a dynamic axis in the generated inputs (default: the first length it was built with).")
@click.option("--warmup", "warmup_s", type=click.FloatRange(min=0), default=defaults.BENCH_WARMUP_S, show_default=True,
              metavar="SECONDS",
              help="Load before the first level, not measured.")
@click.option("--no-ceiling", is_flag=True, help="Skip the in-process ONNX Runtime ceiling.")
@click.option("--no-generator-check", is_flag=True, help="Skip the no-op model run that bounds the client's speed.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Folder for report.md, report.json and bench.png (default: bench_reports/MODEL-TIMESTAMP).")
@click.option("--no-report", is_flag=True, help="Write no report folder.")
@click.option("--tritonserver", type=click.Path(path_type=Path), metavar="PATH",
              help="tritonserver binary for the embedded server (default: nvidia-pytriton's, else PATH).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), metavar="SECONDS",
              help="How long to wait for the server to be ready (default: 120 s embedded, 10 s for a URL).")
@common_options
def bench_command(model: str, repository: Path, url: str | None, protocol: str, generator: str, concurrency: str,
                  duration_s: float | None, requests: int | None, batch_size: int, lengths: tuple[str, ...],
                  warmup_s: float, no_ceiling: bool, no_generator_check: bool, report_dir: Path | None,
                  no_report: bool, tritonserver: Path | None, timeout_s: float | None, as_json: bool) -> None:
    """Measure MODEL as served: throughput and latency at each concurrency, batching from Triton's statistics, the
    in-process ONNX Runtime ceiling, and a check that the load generator is not the bottleneck."""
    from tritongen.bench import (
        DEFAULT_DURATION_S,
        LoadSettings,
        bench_model,
        default_report_dir,
        parse_concurrencies,
        parse_lengths,
        write_report,
    )
    from tritongen.errors import TritongenError

    if duration_s is not None and requests is not None:
        raise TritongenError("--duration and --requests were both given", "pass one of them")
    if url and not repository.is_dir():
        repository = None  # type: ignore[assignment]
    settings = LoadSettings(protocol=protocol, duration_s=None if requests else (duration_s or DEFAULT_DURATION_S),
                            requests=requests, generator=generator)
    report = bench_model(repository, model, server=url or "embedded", concurrencies=parse_concurrencies(concurrency),
                         settings=settings, batch_size=batch_size, lengths=parse_lengths(lengths), warmup_s=warmup_s,
                         ceiling=not no_ceiling, generator_check=not no_generator_check, tritonserver=tritonserver,
                         timeout_s=timeout_s, on_progress=progress_line)
    files: list[Path] = []
    if not no_report:
        files = write_report(report, report_dir or default_report_dir(model))
    if as_json:
        emit_json({**report.to_dict(), "report_files": [str(f) for f in files]})
    else:
        print_bench(report, files)


def print_bench(report: Any, files: list[Path]) -> None:
    from rich.table import Table

    out = stdout_console()
    out.print(f"[bold]{report.model}[/] v{report.version} on {report.server}", highlight=False)
    out.print(f"served by {report.served_by}; {report.protocol.upper()}, {report.batch_size} item(s) per request"
              + (f", lengths {report.lengths}" if report.lengths else ""), markup=False, highlight=False)
    # Compact: p90/p95 are in report.md and --json; the rest fits 100 columns.
    table = Table(box=None, pad_edge=False, header_style="bold", caption="latency in ms (client); batch, queue and "
                  "compute from Triton's statistics", caption_justify="left")
    for column in ("conc.", "inf/s", "p50", "p99", "mean", "errors", "avg batch", "queue", "compute", "client CPU"):
        table.add_column(column, justify="right", no_wrap=True)
    best = report.best
    for p in report.points:
        s = p.server
        row = [str(p.concurrency), _n(p.throughput, 1), _n(p.latency.p50, 2), _n(p.latency.p99, 2),
               _n(p.latency.mean, 2), str(p.errors), _n(s.avg_batch, 2) if s else "-", _n(s.queue_ms, 2) if s else "-",
               _n(s.compute_ms, 2) if s else "-", f"{100 * p.client_cpu_share:.0f} %"]
        table.add_row(*row, style="bold" if p is best else None)
    wide_console(out).print(table)
    if best is not None and best.steps:
        wide_console(out).print(_steps_table(best, report.model))
    if report.ceiling:
        c = report.ceiling
        fraction = report.fraction_of_ceiling
        out.print(f"ceiling: ONNX Runtime in-process, {c.sessions} session(s) x {c.intra_op_threads} thread(s), "
                  f"batch {c.batch_size}: {c.throughput:,.1f} inf/s"
                  + (f"; served best is {100 * fraction:.0f} % of it" if fraction is not None else ""), highlight=False)
    g = report.generator
    if g:
        line = (f"load generator: {report.load_generator}; {g.cpu_us_per_request:,.0f} µs CPU per request, "
                f"{100 * g.client_cpu_share:.0f} % of the machine at the best point")
        if g.noop_throughput:
            line += f"; a no-op model with the same inputs reached {g.noop_throughput:,.1f} inf/s"
        out.print(line, markup=False, highlight=False)
        if g.headroom_gain:
            out.print(f"generator headroom on the no-op model: {g.generator} {g.noop_requests_per_cpu_s:,.0f} requests "
                      f"per client CPU-second, the Python generator {g.python_requests_per_cpu_s:,.0f} "
                      f"({g.headroom_gain:.1f}x)", markup=False, highlight=False)
    for note in report.notes:
        out.print(f"note: {note}", markup=False, highlight=False)
    for f in files[:1]:
        out.print(f"report: {f}" + (f" (+ {', '.join(x.name for x in files[1:])})" if len(files) > 1 else ""),
                  markup=False, highlight=False)


def _steps_table(point: Any, model: str) -> Any:
    """A pipeline's time per request, step by step, at one load level (Triton's statistics of each step model)."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold", caption_justify="left",
                  caption=f"pipeline steps at concurrency {point.concurrency}: ms per request, from Triton's statistics")
    for column in ("step", "queue", "compute", "in server", "avg batch"):
        table.add_column(column, justify="left" if column == "step" else "right", no_wrap=True)
    for name, s in point.steps.items():
        table.add_row(name, _n(s.queue_ms, 2), _n(s.compute_ms, 2), _n(s.server_ms, 2), _n(s.avg_batch, 2))
    if point.server is not None:
        table.add_row(f"{model} (all steps)", "", "", _n(point.server.server_ms, 2), "", style="bold")
    return table


def wide_console(out: Console) -> Console:
    """`out`, or where it is not a terminal (a log, a pipe), the same stream 120 columns wide: tables stay readable."""
    if out.is_terminal or out.width >= 120:
        return out
    return Console(width=120, highlight=False, soft_wrap=True)


def _n(value: float | None, digits: int) -> str:
    import math

    return "-" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"
