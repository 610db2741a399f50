"""`tritongen validate`: argument handling and printing around tritongen.validate.validate_repository."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tritongen.cli import main
from tritongen.cli.common import EXIT_FAILED, common_options, emit_json, stderr_console, stdout_console


@main.command("validate")
@click.argument("repository", type=click.Path(path_type=Path), default=Path("model_repository"), required=False)
@click.option("--model", "models", multiple=True, metavar="NAME", help="Validate only this model (repeatable).")
@click.option("--server", default="embedded", show_default=True, metavar="embedded|docker|URL",
              help="Where to serve: the embedded tritonserver, a Docker container, or the HTTP address of a running "
                   "Triton (gRPC assumed on the next port).")
@click.option("--protocol", type=click.Choice(["http", "grpc", "both"]), default="both", show_default=True,
              help="Protocols to run inference over.")
@click.option("--tritonserver", type=click.Path(path_type=Path), metavar="PATH",
              help="tritonserver binary for the embedded server (default: nvidia-pytriton's, else PATH).")
@click.option("--image", metavar="IMAGE", help="With --server docker: slim, nvidia or an image reference "
                                               "(default: the one the generated compose file uses).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), metavar="SECONDS",
              help="How long to wait for the server to be ready (default: 120 s embedded, 10 s for a URL).")
@common_options
def validate_command(repository: Path, models: tuple[str, ...], server: str, protocol: str, tritonserver: Path | None,
                     image: str | None, timeout_s: float | None, as_json: bool) -> None:
    """Serve REPOSITORY on a real Triton and check every model: READY, config, HTTP/gRPC parity with PyTorch,
    dynamic batching, bad requests. Exit code 0 only when every model passed."""
    from tritongen.validate import validate_repository

    err = stderr_console()
    report = validate_repository(
        repository, models=models or None, server=server,
        protocols=("http", "grpc") if protocol == "both" else (protocol,), tritonserver=tritonserver, image=image,
        timeout_s=timeout_s, on_progress=lambda msg: err.print(f"… {msg}", markup=False, highlight=False))
    if as_json:
        emit_json(report.to_dict())
    else:
        print_report(report)
    if not report.passed:
        sys.exit(EXIT_FAILED)


def print_report(report: object) -> None:
    from tritongen.validate import ValidationReport

    assert isinstance(report, ValidationReport)
    out = stdout_console()
    out.print(f"Validated on {report.server}", highlight=False, markup=False)
    for problem in report.repository_problems:
        out.print("[red]✗[/] [bold]repository[/]  ", end="", highlight=False)
        out.print(problem, markup=False, highlight=False)
    for m in report.models:
        mark = "[green]✓[/]" if m.passed else "[red]✗[/]"
        version = f" v{m.version}" if m.version is not None else ""
        served = f"  served by {m.served_by}" if m.served_by else ""
        out.print(f"{mark} [bold]{m.name}[/]{version}  {m.state}{served}", highlight=False)
        if m.skipped_reason:
            out.print(f"    skipped: {m.skipped_reason}", markup=False, highlight=False)
        if m.problem:
            out.print(f"    {m.problem}", markup=False, highlight=False)
        if m.config:
            out.print(f"    config        {_ok(m.config.passed)} " + (
                "as written" if m.config.passed else "; ".join(m.config.differences)), highlight=False)
        for check in (m.http, m.grpc):
            if check is None:
                continue
            detail = check.error or ", ".join(_output_detail(o) for o in check.outputs)
            # Server messages may contain [brackets]: print them without markup.
            out.print(f"    {check.protocol:<13} {_ok(check.passed)} ", end="", highlight=False)
            out.print(detail, markup=False, highlight=False)
        if m.batching:
            out.print(f"    batching      {_ok(m.batching.passed)} ", end="", highlight=False)
            out.print(m.batching.note or "", markup=False, highlight=False)
        if m.bad_requests:
            refused = sum(b.passed for b in m.bad_requests)
            ready = "server READY afterwards" if m.ready_after_bad_requests else "server NOT ready afterwards"
            out.print(f"    bad requests  {_ok(refused == len(m.bad_requests) and bool(m.ready_after_bad_requests))} "
                      f"{refused}/{len(m.bad_requests)} refused, {ready}", highlight=False)
            for b in m.bad_requests:
                if not b.passed:
                    out.print(f"      accepted: {b.case} over {b.protocol}", markup=False, highlight=False)
    failed = [m for m in report.models if not m.passed]
    if report.passed:
        out.print(f"[bold green]PASSED[/]: {len(report.models)} model(s)", highlight=False)
    elif failed:
        out.print(f"[bold red]FAILED[/]: {len(failed)} of {len(report.models)} model(s) did not pass", highlight=False)
    else:
        out.print("[bold red]FAILED[/]: every model passed, but a real tritonserver would not start on this "
                  "repository (see above)", highlight=False)


def _ok(passed: bool) -> str:
    return "[green]✓[/]" if passed else "[red]✗[/]"


def _output_detail(o) -> str:
    """One output's comparison: "label equal" for strings, else the largest error (and what went wrong)."""
    if o.exact:
        return f"{o.name} {o.problem or 'equal'}"
    return f"{o.name} max abs err {o.max_abs_err:.2g}" + (f" ({o.problem})" if o.problem else "")
