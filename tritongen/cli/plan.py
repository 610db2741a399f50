"""`tritongen plan`: argument handling and printing around tritongen.kube.plan_capacity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tritongen.cli import main
from tritongen.cli.common import common_options, emit_json, stdout_console

if TYPE_CHECKING:
    from tritongen.kube import CapacityPlan


@main.command("plan")
@click.argument("model")
@click.option("--rate", type=float, required=True, metavar="REQUESTS_PER_S",
              help="Requests per second to serve (each of the size the bench sent).")
@click.option("--p99-ms", type=float, required=True, metavar="MS", help="Latency budget for the 99th percentile.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), metavar="PATH",
              help="report.json from `tritongen bench`, or its folder (default: the newest bench_reports/MODEL-*).")
@click.option("--headroom", type=float, metavar="FRACTION",
              help="Share of one replica's measured capacity kept free for bursts (default 0.25).")
@click.option("--min-replicas", type=click.IntRange(min=1), metavar="N", help="HPA minimum (default: the replicas "
                                                                              "planned).")
@click.option("--max-replicas", type=click.IntRange(min=1), metavar="N", help="HPA maximum (default: twice that).")
@click.option("--repository", type=click.Path(path_type=Path), default=Path("model_repository"), show_default=True,
              help="Model repository whose deployment gets the numbers.")
@click.option("--target", "targets", multiple=True, type=click.Choice(["kubernetes", "kserve"]),
              help="Deployments to write the plan into (default: those already in deploy/, else kubernetes).")
@click.option("--no-write", is_flag=True, help="Print the plan only; change no file.")
@common_options
def plan_command(model: str, rate: float, p99_ms: float, report_path: Path | None, headroom: float | None,
                 min_replicas: int | None, max_replicas: int | None, repository: Path, targets: tuple[str, ...],
                 no_write: bool, as_json: bool) -> None:
    """How many replicas, and what autoscaling target, serve --rate requests/s within --p99-ms, from MODEL's bench
    report; writes those numbers into the Kubernetes (and KServe) deployment. It extrapolates one replica's
    measurements."""
    from tritongen.kube import find_report, plan_capacity, read_report
    from tritongen.kube.write import write_plan

    report = read_report(report_path or find_report(model))
    if str(report.get("model")) != model:
        from tritongen.errors import TritongenError

        raise TritongenError(f"the bench report {report['_path']} is for '{report.get('model')}', not '{model}'",
                             f"pass the report of a `tritongen bench {model}` run with --report")
    plan = plan_capacity(report, rate, p99_ms, headroom=headroom, min_replicas=min_replicas, max_replicas=max_replicas)
    results = [] if no_write else write_plan(repository, plan, targets)
    if as_json:
        emit_json({"ok": True, **plan.to_dict(), "written": [str(r.folder) for r in results]})
        return
    print_plan(plan)
    for r in results:
        stdout_console().print(f"wrote the plan into {r.folder}", markup=False, highlight=False)


def print_plan(plan: CapacityPlan) -> None:
    out = stdout_console()
    lines = [
        f"{plan.model}: {plan.rate:g} requests/s within p99 {plan.p99_ms:g} ms",
        f"  one replica (bench, {plan.measured}): {plan.replica_capacity:,.1f} requests/s at concurrency "
        f"{plan.concurrency}, p99 {plan.replica_p99_ms:.2f} ms",
        f"  headroom {100 * plan.headroom:.0f} %: {plan.replica_rate:,.1f} requests/s planned per replica",
        f"  replicas: {plan.replicas} (autoscaling {plan.min_replicas} to {plan.max_replicas}), {plan.cpus} CPU(s) each "
        "as measured",
        f"  HPA target: {plan.queue_target_us:,.0f} µs mean queue time per request (nv_inference_queue_duration_us per "
        "request)",
    ]
    for line in lines:
        out.print(line, markup=False, highlight=False)
    for note in plan.notes:
        out.print(f"note: {note}", markup=False, highlight=False)
