"""`tritongen rollout` and `tritongen rollback`: argument handling and printing around tritongen.rollout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from tritongen import defaults
from tritongen.cli import main
from tritongen.cli.common import EXIT_FAILED, common_options, emit_json, stderr_console, stdout_console

_URL_HELP = "HTTP address of the running Triton (gRPC assumed on the next port), e.g. localhost:8000."
_KEY_HELP = ("Key of the server's restricted model-repository API (default: $TRITON_ADMIN_KEY, else TRITON_ADMIN_KEY "
             "in deploy/.env beside the repository).")


@main.command("rollout")
@click.argument("model")
@click.option("--version", "version", type=click.IntRange(min=1), required=True, help="Version to switch to.")
@click.option("--url", required=True, metavar="URL", help=_URL_HELP)
@click.option("--repository", type=click.Path(path_type=Path), default=defaults.REPOSITORY, show_default=True,
              help="The repository the server serves (its versions' files and reference data).")
@click.option("--admin-key", metavar="KEY", help=_KEY_HELP)
@click.option("--protocol", type=click.Choice(["http", "grpc", "both"]), default="both", show_default=True,
              help="Protocols the new version is validated over.")
@common_options
def rollout_command(model: str, version: int, url: str, repository: Path, admin_key: str | None, protocol: str,
                    as_json: bool) -> None:
    """Switch MODEL on a running Triton (explicit model control) to --version: loaded beside the serving version,
    validated on the live server against its saved reference, then switched. On any failure the serving version
    stays. Exit code 1 when the switch did not happen."""
    from tritongen.rollout import admin_key as resolve_key
    from tritongen.rollout import rollout

    report = rollout(repository, model, version, url, key=resolve_key(repository, admin_key),
                     protocols=_protocols(protocol), on_progress=_progress(as_json))
    _finish(report, as_json)


@main.command("rollback")
@click.argument("model")
@click.option("--url", required=True, metavar="URL", help=_URL_HELP)
@click.option("--to", "to", type=click.IntRange(min=1), help="Version to go back to (default: the one the last "
                                                                "rollout replaced).")
@click.option("--repository", type=click.Path(path_type=Path), default=defaults.REPOSITORY, show_default=True,
              help="The repository the server serves.")
@click.option("--admin-key", metavar="KEY", help=_KEY_HELP)
@click.option("--protocol", type=click.Choice(["http", "grpc", "both"]), default="both", show_default=True,
              help="Protocols the version is validated over before the switch.")
@common_options
def rollback_command(model: str, url: str, to: int | None, repository: Path, admin_key: str | None, protocol: str,
                     as_json: bool) -> None:
    """Switch MODEL back to the version the last `tritongen rollout` replaced (or --to), the same safe way."""
    from tritongen.rollout import admin_key as resolve_key
    from tritongen.rollout import rollback

    report = rollback(repository, model, url, to=to, key=resolve_key(repository, admin_key),
                      protocols=_protocols(protocol), on_progress=_progress(as_json))
    _finish(report, as_json)


def _protocols(protocol: str) -> tuple[str, ...]:
    return ("http", "grpc") if protocol == "both" else (protocol,)


def _progress(as_json: bool) -> Any:
    err = stderr_console()
    return lambda msg: err.print(f"… {msg}", markup=False, highlight=False)


def _finish(report: Any, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_dict())
    else:
        _print(report)
    if not report.switched:
        sys.exit(EXIT_FAILED)


def _print(report: Any) -> None:
    out = stdout_console()
    if report.switched:
        out.print(f"[green]✓[/] {report.kind}: '{report.model}' now serves version {report.to_version} (was "
                  f"{report.from_version}), in {report.seconds:.1f} s", highlight=False)
    else:
        out.print(f"[red]✗[/] {report.kind} of '{report.model}' to version {report.to_version} did not happen:",
                  highlight=False)
        out.print(f"  {report.problem}", markup=False, highlight=False)
    for check in report.checks:
        state = "matches its reference" if check.passed else f"does not match ({check.error or 'outputs differ'})"
        out.print(f"  version {report.to_version} over {check.protocol.upper()}: {state}", markup=False,
                  highlight=False)
    for name, diff in report.differences.items():
        out.print(f"  {name}: differs from version {report.from_version} by up to {diff:.3g}", markup=False,
                  highlight=False)
    for note in report.notes:
        stderr_console().print(f"warning: {note}", markup=False, highlight=False)
