"""A runner's parity cases run in a forked child while this process goes on: the PyTorch reference computed during
the ONNX export, which is mostly single-threaded Python and leaves the machine's other cores idle.

The child is a fork of this process, so it has the loaded model already (no second load, no pickling of user code);
it runs torch single-threaded (OpenMP's thread pool does not survive a fork; see export/legacy.py), writes the
outputs to an .npz file and reports through a pipe. Anything unusual (no fork on this platform, the child failing,
crashing or reporting an error, outputs under other names) is answered by running the cases again in this process,
where an error is raised exactly as it would have been without the child.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.runners.base import Runner
from tritongen.verify import CaseOutputs, ParityCase, run_cases


class ForkedCases:
    """`run_cases(runner, cases)` started in a forked child; `result()` waits for it (or runs the cases here)."""

    def __init__(self, runner: Runner, cases: Sequence[ParityCase], folder: Path, *, fork: bool = True) -> None:
        self.runner = runner
        self.cases = tuple(cases)
        self.file = folder / "outputs.npz"
        self.pid: int | None = None
        self.pipe: int | None = None
        self.ran_in_child = False  # for tests and reports: whether the child's outputs were used
        self._outputs: CaseOutputs | None = None
        if fork and hasattr(os, "fork"):
            folder.mkdir(parents=True, exist_ok=True)
            self._start()

    def _start(self) -> None:
        read_end, write_end = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_end)
            _child(self.runner, self.cases, self.file, write_end, parent)
        os.close(write_end)
        self.pid, self.pipe = pid, read_end

    def result(self) -> CaseOutputs:
        """The runner's outputs for every case (computed once)."""
        if self._outputs is None:
            report = self._wait()
            if report.get("ok"):
                try:
                    outputs = _read(self.file, len(self.cases))
                except (OSError, ValueError, KeyError):
                    outputs = None
                if outputs is not None:
                    self.ran_in_child = True
                    self._outputs = CaseOutputs(self.runner.name, self.cases, outputs)
            if self._outputs is None:
                self._outputs = run_cases(self.runner, self.cases)  # here: its errors are raised as they always were
        return self._outputs

    def _wait(self) -> dict[str, Any]:
        if self.pid is None or self.pipe is None:
            return {}
        try:
            with os.fdopen(self.pipe, "rb") as pipe:
                raw = pipe.read()
            os.waitpid(self.pid, 0)
        finally:
            self.pid = self.pipe = None
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def cancel(self) -> None:
        """Stop the child (an interrupt, or a build that failed before it needed the outputs)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.pid = None
        if self.pipe is not None:
            with contextlib.suppress(OSError):
                os.close(self.pipe)
            self.pipe = None
        self.file.unlink(missing_ok=True)


@contextlib.contextmanager
def cases_in_background(runner: Runner, cases: Sequence[ParityCase], folder: Path) -> Iterator[ForkedCases]:
    """Start the cases in a forked child; the child is stopped when the block ends, whatever happened in it."""
    pending = ForkedCases(runner, cases, folder)
    try:
        yield pending
    finally:
        pending.cancel()


def _child(runner: Runner, cases: Sequence[ParityCase], file: Path, write_end: int, parent: int) -> None:
    try:
        import torch

        from tritongen.server.processes import child_setup

        # Dies with its parent, even a killed one: it holds a copy of the build's lock on the repository.
        child_setup(parent)

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # this child's own descriptors: the parent's are untouched
        os.dup2(devnull, 2)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it kills this child on an interrupt
        torch.set_num_threads(1)
        report: dict[str, Any] = {"ok": False}
        try:
            with runner:
                outputs = run_cases(runner, cases).outputs
            arrays = {f"{i}/{name}": value for i, out in enumerate(outputs) for name, value in out.items()}
            np.savez(file, **arrays)
            report["ok"] = True
        except BaseException:  # noqa: BLE001 - the parent runs the cases again and raises what they raise
            pass
        os.write(write_end, json.dumps(report).encode())
    finally:
        os._exit(0)


def _read(file: Path, count: int) -> tuple[dict[str, np.ndarray], ...]:
    outputs: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    with np.load(file, allow_pickle=False) as data:
        for key in data.files:
            index, _, name = key.partition("/")
            outputs[int(index)][name] = data[key]
    return tuple(outputs)
