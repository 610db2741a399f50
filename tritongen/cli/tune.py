"""`tritongen tune`: argument handling and printing around tritongen.tune.tune_model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tritongen import defaults
from tritongen.cli import main
from tritongen.cli.bench import wide_console
from tritongen.cli.common import common_options, emit_json, progress_line, stderr_console, stdout_console


@main.command("tune")
@click.argument("model")
@click.option("--repository", type=click.Path(path_type=Path), default=Path("model_repository"), show_default=True,
              help="Model repository written by `tritongen build`; the best config is written back into it.")
@click.option("--server", default="embedded", show_default=True, metavar="embedded|docker",
              help="The server tritongen starts to tune on: the embedded tritonserver or a Docker container.")
@click.option("--image", metavar="IMAGE", help="With --server docker: slim, nvidia or an image reference "
                                               "(default: the one the generated compose file uses).")
@click.option("--url", metavar="URL",
              help="Tune on a Triton already running at this HTTP address instead, started with "
                   "--model-control-mode=explicit and serving the same repository.")
@click.option("--latency-budget-ms", type=click.FloatRange(min=0, min_open=True), metavar="MS",
              help="Highest p99 latency allowed (default: none, maximise throughput).")
@click.option("--max-trials", type=click.IntRange(min=1), default=defaults.TUNE_MAX_TRIALS, show_default=True,
              help="Configs to measure, the starting one included (three confirmation rounds come on top).")
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=1), default=defaults.TUNE_TIME_LIMIT_S,
              show_default=True,
              metavar="SECONDS", help="Stop searching in time to confirm and write within this limit.")
@click.option("--concurrency", default=",".join(map(str, defaults.TUNE_CONCURRENCIES)), show_default=True, metavar="N,N,...",
              help="Load levels each config is measured at; the best one within the budget counts.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0.1), default=defaults.TUNE_DURATION_S,
              show_default=True,
              metavar="SECONDS", help="Measurement window per level.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Items per request.")
@click.option("--length", "lengths", multiple=True, metavar="AXIS=N", help="Length of a dynamic axis in the inputs.")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
@click.option("--generator", type=click.Choice(["auto", "h2load", "python"]), default="auto", show_default=True,
              help="Load generator (see `tritongen bench --help`): auto uses h2load when it is installed.")
@click.option("--instances", metavar="N,N,...", help="Instance counts to consider (default: 1-4 and the CPU count).")
@click.option("--threads", metavar="N,N,...",
              help="ONNX Runtime threads per instance to consider (default: powers of two up to the CPU count).")
@click.option("--dry-run", is_flag=True, help="Search and report, but leave config.pbtxt as it is.")
@click.option("--no-validate", is_flag=True, help="Do not run `tritongen validate` on the written config.")
@click.option("--tritonserver", type=click.Path(path_type=Path), metavar="PATH",
              help="tritonserver binary for the embedded server (default: nvidia-pytriton's, else PATH).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), metavar="SECONDS",
              help="How long to wait for the server to be ready (default: 120 s embedded, 10 s for a URL).")
@common_options
def tune_command(model: str, repository: Path, server: str, image: str | None, url: str | None,
                 latency_budget_ms: float | None, max_trials: int,
                 time_limit_s: float, concurrency: str, duration_s: float, batch_size: int, lengths: tuple[str, ...],
                 protocol: str, generator: str, instances: str | None, threads: str | None, dry_run: bool, no_validate: bool,
                 tritonserver: Path | None, timeout_s: float | None, as_json: bool) -> None:
    """Search instances, threads, queue delay, preferred and max batch size of MODEL on a real server; write the best
    config back to MODEL/config.pbtxt (the previous one kept as config.pbtxt.bak-TIMESTAMP) and validate it."""
    from tritongen.bench import LoadSettings, parse_concurrencies, parse_lengths
    from tritongen.errors import TritongenError
    from tritongen.server import starts_server
    from tritongen.tune import tune_model

    if not starts_server(server):
        raise TritongenError(f"--server {server}: tune starts the embedded server or Docker",
                             "pass --url URL to tune on a Triton already running")
    if url and server != "embedded":
        raise TritongenError(f"--url and --server {server} were both given", "pass one of them")
    err = stderr_console()
    report = tune_model(
        repository, model, server=url or server, latency_budget_ms=latency_budget_ms, max_trials=max_trials,
        time_limit_s=time_limit_s, concurrencies=parse_concurrencies(concurrency),
        settings=LoadSettings(protocol=protocol, duration_s=duration_s, generator=generator), batch_size=batch_size,
        lengths=parse_lengths(lengths), instances=parse_concurrencies(instances, "--instances") if instances else None,
        threads=parse_concurrencies(threads, "--threads") if threads else None,
        write=not dry_run, validate=not no_validate, tritonserver=tritonserver, image=image, timeout_s=timeout_s,
        on_trial=lambda t: err.print(trial_line(t), markup=False, highlight=False),
        on_progress=progress_line)
    if as_json:
        emit_json(report.to_dict())
    else:
        print_tune(report)


def trial_line(t: Any) -> str:
    if t.error:
        outcome = f"failed: {t.error}"
    elif t.feasible:
        outcome = f"{t.throughput:,.1f} inf/s at concurrency {t.concurrency}, p99 {t.p99_ms:.1f} ms"
    else:
        outcome = f"over the latency budget (lowest p99 {t.p99_ms:.1f} ms)"
    return f"#{t.index:<3} {t.role:<13} {t.config.describe():<58} {outcome}  ({t.seconds:.0f} s)"


def print_tune(report: Any) -> None:
    from rich.table import Table

    out = stdout_console()
    budget = f"p99 <= {report.latency_budget_ms:g} ms" if report.latency_budget_ms else "no latency budget"
    out.print(f"[bold]{report.model}[/] on {report.server}; {budget}; concurrency "
              f"{', '.join(map(str, report.concurrencies))}", highlight=False)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, justify in (("#", "right"), ("role", "left"), ("instances", "right"), ("threads", "right"),
                            ("max batch", "right"),
                            ("delay µs", "right"), ("preferred", "left"), ("inf/s", "right"),
                            ("at conc.", "right"), ("p99 ms", "right"), ("", "left")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for t in report.trials:
        c = t.config
        mark = "best" if c == report.best and t.role in ("search", "start", "confirm-best") and report.improved else ""
        table.add_row(str(t.index), t.role, str(c.instances), str(c.intra_op_threads or "default"),
                      str(c.max_batch_size),
                      "off" if c.max_queue_delay_us is None else str(c.max_queue_delay_us),
                      ",".join(map(str, c.preferred_batch_sizes)) or "-",
                      f"{t.throughput:,.1f}" if t.throughput is not None else ("error" if t.error else "over budget"),
                      str(t.concurrency or "-"), f"{t.p99_ms:.1f}" if t.p99_ms is not None else "-", mark)
    wide_console(out).print(table)
    out.print(f"stopped: {report.stopped_because} ({report.seconds:.0f} s)", markup=False, highlight=False)
    if report.improved and report.gain:
        out.print(f"[green]best[/]: {report.best.describe()}: {report.best_throughput:,.1f} inf/s, "
                  f"{report.gain:.2f}x the starting config ({report.start_throughput:,.1f} inf/s), "
                  "measured again alternately", highlight=False)
    elif report.improved:
        out.print(f"[green]best[/]: {report.best.describe()}: {report.best_throughput:,.1f} inf/s within the "
                  "latency budget, which the starting config did not meet", highlight=False)
    else:
        out.print(f"no change: the starting config ({report.start.describe()}) stays", highlight=False)
    if report.config_path:
        out.print(f"wrote {report.config_path} (previous config: {report.backup_path})", markup=False,
                  highlight=False)
        if report.validated:
            out.print("[green]✓[/] `tritongen validate` passed on it", highlight=False)
    for note in report.notes:
        out.print(f"note: {note}", markup=False, highlight=False)
