"""What every command shares: error printing, --json output, --debug, signals, progress on stderr.

Exit codes: 0 done; 1 a check ran and failed; 2 bad input (a TritongenError); 3 an unexpected error (a bug);
130 interrupted (Ctrl-C, or SIGTERM, which unwinds the same way so servers and scratch folders are cleaned up).
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from tritongen.errors import TritongenError

F = TypeVar("F", bound=Callable[..., Any])

# Progress and human output go to stderr so that --json leaves stdout holding only the JSON object.
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)
_stdout = Console(highlight=False, soft_wrap=True)

EXIT_FAILED = 1  # the command ran but a check failed (parity, validation)
EXIT_USAGE = 2  # bad input: a TritongenError
EXIT_BUG = 3  # an exception tritongen did not expect
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
BUG_HINT = "rerun with --debug for the traceback; this is a bug in tritongen if the input was valid"

# Keys in the click context's `meta`, which lives as long as one command invocation.
_STEP = "tritongen.step"  # the progress step running now (left in place when it fails)
_INTERRUPTED = "tritongen.interrupted"  # set by the signal handler


def stderr_console() -> Console:
    return _stderr


def stdout_console() -> Console:
    return _stdout


def common_options(fn: F) -> F:
    """Add --json and --debug; turn errors into one line and an exit code; make SIGTERM and SIGINT unwind."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the human summary.")
    @click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool, debug: bool, **kwargs: Any) -> Any:
        meta = _meta()
        try:
            with _interrupts_unwind(meta):
                try:
                    return fn(*args, as_json=as_json, **kwargs)
                except (click.ClickException, click.exceptions.Exit, click.Abort):
                    raise
                except Exception as exc:
                    if meta.get(_INTERRUPTED):  # torch has turned an interrupt into another error before
                        raise KeyboardInterrupt from exc
                    if debug:
                        raise
                    if isinstance(exc, TritongenError):
                        fail(exc, as_json, getattr(exc, "exit_code", EXIT_USAGE))
                    fail_unexpected(exc, meta.get(_STEP) or f"`{_command_name()}`", as_json)
        except KeyboardInterrupt:
            if as_json:
                click.echo(json.dumps({"ok": False, "error": "interrupted", "hint": None, "details": None}))
            _stderr.print("[red]error:[/] interrupted")
            sys.exit(EXIT_INTERRUPTED)

    return wrapper  # type: ignore[return-value]


def fail(exc: TritongenError, as_json: bool, code: int = EXIT_USAGE) -> None:
    """Print the error as one line (plus details, if any) and exit."""
    if as_json:
        payload = {"ok": False, "error": exc.message, "hint": exc.hint, "details": exc.details}
        click.echo(json.dumps(payload))
    # The message is the user's data (paths, names, log lines): escaped, so "[/x]" in it prints as written.
    _stderr.print(f"[red]error:[/] {escape(exc.one_line())}", soft_wrap=True, markup=True, emoji=False, highlight=False)
    if exc.details:
        _stderr.print(exc.details, markup=False, soft_wrap=True)
    sys.exit(code)


def fail_unexpected(exc: Exception, step: str, as_json: bool) -> None:
    """An exception tritongen did not expect, as one line naming the step it happened in; exit 3."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    message = f"{step} failed: {type(exc).__name__}" + (f": {first}" if first else "")
    if as_json:
        click.echo(json.dumps({"ok": False, "error": message, "hint": BUG_HINT, "details": None, "step": step,
                               "exception": type(exc).__name__}))
    _stderr.print(f"[red]error:[/] {escape(message)}; {BUG_HINT}", markup=True, soft_wrap=True, emoji=False, highlight=False)
    sys.exit(EXIT_BUG)


def emit_json(payload: dict[str, Any]) -> None:
    """One JSON object on stdout: valid JSON whatever the report holds (NaN and infinities as null)."""
    from tritongen.jsonsafe import json_safe

    click.echo(json.dumps(json_safe(payload), indent=2, default=str))


@contextmanager
def progress(description: str, enabled: bool = True) -> Iterator[None]:
    """Show a spinner on stderr while a long step runs, then a check mark with the time it took.

    The step is remembered while it runs, so an unexpected error names it. An interrupt that arrived during the
    step stops the command when the step ends, even if something inside swallowed it.
    """
    meta = _meta()
    previous = meta.get(_STEP)
    meta[_STEP] = description
    start = time.perf_counter()
    if not enabled or not _stderr.is_terminal:
        yield  # no spinner in logs: the line with the time below says the step ran
    else:
        with _stderr.status(description):
            yield
    meta[_STEP] = previous
    if meta.get(_INTERRUPTED):
        raise KeyboardInterrupt
    if enabled:
        _stderr.print(f"[green]✓[/] {description} [dim]({time.perf_counter() - start:.1f}s)[/]", highlight=False)


def progress_line(message: str) -> None:
    """A progress message (`… message` on stderr) for commands that report as they go; it names the current step."""
    _meta()[_STEP] = message
    _stderr.print(f"… {message}", markup=False, highlight=False)


@contextmanager
def _interrupts_unwind(meta: dict[str, Any]) -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt and are remembered in `meta`; the previous handlers come back after.

    Installed even where SIGINT was inherited as ignored (a shell starts background jobs that way, and CI runners and
    nohup do too): Ctrl-C must stop every command, `serve` above all, whose only way to stop is a signal."""

    def interrupt(_signum: int, _frame: Any) -> None:
        meta[_INTERRUPTED] = True
        raise KeyboardInterrupt

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _meta() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    return ctx.meta if ctx is not None else {}


def _command_name() -> str:
    ctx = click.get_current_context(silent=True)
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["tritongen", *reversed(names)])
