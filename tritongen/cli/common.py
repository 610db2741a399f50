"""What every command shares: error printing, --json output, --debug, progress on stderr."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console

from tritongen.errors import TritongenError

F = TypeVar("F", bound=Callable[..., Any])

# Progress and human output go to stderr so that --json leaves stdout holding only the JSON object.
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)
_stdout = Console(highlight=False, soft_wrap=True)

EXIT_USAGE = 2  # bad input: a TritongenError
EXIT_FAILED = 1  # the command ran but a check failed (parity, validation)


def stderr_console() -> Console:
    return _stderr


def stdout_console() -> Console:
    return _stdout


def common_options(fn: F) -> F:
    """Add --json and --debug, and turn TritongenError into one line on stderr and a non-zero exit."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the human summary.")
    @click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool, debug: bool, **kwargs: Any) -> Any:
        try:
            return fn(*args, as_json=as_json, **kwargs)
        except TritongenError as exc:
            if debug:
                raise
            fail(exc, as_json, getattr(exc, "exit_code", EXIT_USAGE))
        except KeyboardInterrupt:
            _stderr.print("[red]error:[/] interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def fail(exc: TritongenError, as_json: bool, code: int = EXIT_USAGE) -> None:
    """Print the error as one line (plus details, if any) and exit."""
    if as_json:
        payload = {"ok": False, "error": exc.message, "hint": exc.hint, "details": exc.details}
        click.echo(json.dumps(payload))
    _stderr.print(f"[red]error:[/] {exc.one_line()}", soft_wrap=True, markup=True, emoji=False, highlight=False)
    if exc.details:
        _stderr.print(exc.details, markup=False, soft_wrap=True)
    sys.exit(code)


def emit_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


@contextmanager
def progress(description: str, enabled: bool = True) -> Iterator[None]:
    """Show a spinner on stderr while a long step runs, then a check mark with the time it took."""
    import time

    start = time.perf_counter()
    if not enabled or not _stderr.is_terminal:
        yield  # no spinner in logs: the line with the time below says the step ran
    else:
        with _stderr.status(description):
            yield
    if enabled:
        _stderr.print(f"[green]✓[/] {description} [dim]({time.perf_counter() - start:.1f}s)[/]", highlight=False)
