"""`tritongen serve`: the embedded tritonserver in the foreground until Ctrl-C."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import click

from tritongen.cli import main
from tritongen.cli.common import common_options, emit_json, progress, stderr_console, stdout_console


@main.command("serve")
@click.argument("repository", type=click.Path(path_type=Path), default=Path("model_repository"), required=False)
@click.option("--model", "models", multiple=True, metavar="NAME", help="Serve only this model (repeatable).")
@click.option("--tritonserver", type=click.Path(path_type=Path), metavar="PATH",
              help="tritonserver binary (default: nvidia-pytriton's, else PATH).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--http-port", type=click.IntRange(1, 65535), help="Default: a free port.")
@click.option("--grpc-port", type=click.IntRange(1, 65535), help="Default: a free port.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Default: a free port.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), metavar="SECONDS",
              help="How long to wait for the server to be ready (default 120).")
@click.option("--rollouts", is_flag=True,
              help="Explicit model control with every version available, so `tritongen rollout` can switch versions; "
                   "loading and unloading need the admin key.")
@click.option("--admin-key", metavar="KEY", help="With --rollouts: the key (default: $TRITON_ADMIN_KEY, else TRITON_ADMIN_KEY "
                                                  "in deploy/.env beside the repository, else a new one, printed).")
@common_options
def serve_command(repository: Path, models: tuple[str, ...], tritonserver: Path | None, host: str,
                  http_port: int | None, grpc_port: int | None, metrics_port: int | None, timeout_s: float | None,
                  rollouts: bool, admin_key: str | None, as_json: bool) -> None:
    """Serve REPOSITORY on the embedded tritonserver until Ctrl-C; ONNX models run through the python runner."""
    from tritongen.server import serve, server_alive

    err = stderr_console()
    ports = (http_port, grpc_port, metrics_port)  # None: a free port
    flags, key = None, None
    if rollouts:
        import secrets

        from tritongen.rollout import admin_key as resolve_key
        from tritongen.rollout import rollout_flags

        key = resolve_key(repository, admin_key) or secrets.token_urlsafe(24)
        flags = rollout_flags(key)
    with contextlib.ExitStack() as stack:
        with progress("starting the embedded tritonserver", enabled=not as_json):
            served = stack.enter_context(serve(
                repository, "embedded", models=models or None, tritonserver=tritonserver, timeout_s=timeout_s,
                host=host, ports=ports, flags=flags, every_version=rollouts,
                on_warning=lambda msg: err.print(f"warning: {msg}", markup=False)))
        handle = served.handle
        try:  # from here on Ctrl-C is the way to stop, not an interruption
            _print_serving(repository, served, as_json, key)
            while server_alive(handle):
                time.sleep(1.0)
        except KeyboardInterrupt:
            if not as_json:
                stdout_console().print("stopping the server", highlight=False)
            return
        raise handle.failure("while serving", "see the server log below")


def _print_serving(repository: Path, served: Any, as_json: bool, key: str | None = None) -> None:
    handle = served.handle
    models_info = [{"name": m.name, "served_by": m.served_by, "skipped_reason": m.skipped_reason}
                   for m in served.models]
    if as_json:
        emit_json({"ok": True, "server": handle.description, "http_url": handle.http_url,
                   "grpc_url": handle.grpc_url, "metrics_url": handle.metrics_url, "models": models_info,
                   "repository_problems": list(served.repository_problems), "rollouts": key is not None,
                   "admin_key": key})
        return
    for problem in served.repository_problems:  # served fine from the staged copy, but a deployment would not start
        stderr_console().print(f"warning: {problem}", markup=False, highlight=False)
    out = stdout_console()
    out.print(f"Serving {repository} on {handle.description}", markup=False, highlight=False)
    out.print(f"  HTTP     http://{handle.http_url}   (e.g. curl {handle.http_url}/v2/health/ready)",
              markup=False, highlight=False)
    out.print(f"  gRPC     {handle.grpc_url}", markup=False, highlight=False)
    out.print(f"  metrics  http://{handle.metrics_url}/metrics", markup=False, highlight=False)
    for m in served.models:
        how = f"served by {m.served_by}" if m.served_by else f"NOT served: {m.skipped_reason}"
        out.print(f"  model {m.name}: {how}", markup=False, highlight=False)
    if key is not None:
        out.print(f"  rollouts: tritongen rollout MODEL --version N --url {handle.http_url} --admin-key {key}",
                  markup=False, highlight=False)
    out.print("Press Ctrl-C to stop.", highlight=False)
