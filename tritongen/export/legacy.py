"""The legacy (TorchScript-based) ONNX exporter in a child process whose output is discarded.

When an export fails, its C++ side prints the whole graph to the process's stdout (torch 2.13 turns its ONNX log on
and never off), which would land in the user's terminal and in `--json` output. The export runs in a forked child
instead: it has the loaded model already (no second load), points its own stdout and stderr at /dev/null, and
reports back through a pipe. The child runs torch single-threaded: OpenMP's thread pool does not survive a fork.
Where there is no fork (Windows), the export runs in this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from tritongen.spec import ModelSpec


class LegacyExportError(Exception):
    """The child's export failed; `summary` is its one-line account of why."""

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


def export_in_child(module: Any, spec: ModelSpec, path: Path, opset: int | None) -> None:
    """`export_legacy` in a forked child; raises LegacyExportError with the child's one-line summary."""
    from tritongen.export.onnx import export_legacy

    if not hasattr(os, "fork"):
        export_legacy(module, spec, path, opset)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        _child(module, spec, path, opset, read_end, write_end)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            report = pipe.read()
        _, status = os.waitpid(pid, 0)
    except BaseException:  # an interrupt: the child goes too
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    if not report:
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        raise LegacyExportError(f"the legacy exporter's process stopped ({how}) without a result")
    outcome = json.loads(report)
    if outcome.get("interrupted"):
        raise KeyboardInterrupt
    if outcome.get("error"):
        raise LegacyExportError(outcome["error"])


def _child(module: Any, spec: ModelSpec, path: Path, opset: int | None, read_end: int, write_end: int) -> None:
    try:
        import torch

        from tritongen.errors import TritongenError
        from tritongen.export.onnx import export_legacy, summarise_export_error

        os.close(read_end)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # this child's own descriptors: the parent's are untouched
        os.dup2(devnull, 2)
        torch.set_num_threads(1)
        report: dict[str, Any] = {"error": None}
        try:
            export_legacy(module, spec, path, opset)
        except KeyboardInterrupt:
            report["interrupted"] = True
        except TritongenError as exc:
            report["error"] = exc.one_line()
        except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent, which decides
            report["error"] = summarise_export_error(exc)
        os.write(write_end, json.dumps(report).encode())
    finally:
        os._exit(0)
