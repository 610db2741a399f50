"""The native load generator: Debian's `h2load` (apt package nghttp2-client), a C client of nghttp2.

It replays one pre-serialized request (`tritongen.bench.requests`): gRPC over HTTP/2 cleartext (h2c) to Triton's gRPC
endpoint, or HTTP/1.1 (`--h1`) with KServe v2 binary tensors to its HTTP endpoint. `-c C -m 1` keeps exactly C
requests in flight (C connections, one stream each, the next request sent when the previous one is answered), and
`-n N` makes a run end when all N requests are answered, so a run is a quiescent window by construction.

What a run says comes from h2load's own output: `--log-file` has one line per request (start time, HTTP status,
microseconds to the end of the response), from which the window and the latency percentiles are computed, and its
summary counts the bytes of response data. A gRPC error arrives as HTTP 200 with `grpc-status` in the trailers,
which h2load does not read: a successful answer carries the response message (its size known from a probe), an
error none, so the data bytes and Triton's own statistics both count the successes.

The client's CPU time is the kernel's accounting of the h2load process (user + system time of all its threads, as
/proc/<pid>/stat shows them), read when it is reaped with `wait4`: the process ends with the window.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritongen.bench.requests import WireRequest
from tritongen.errors import TritongenError

NAME = "h2load"
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install nghttp2-client), or pass --generator python"


@dataclass(frozen=True)
class H2Load:
    path: str
    version: str

    def describe(self, protocol: str) -> str:
        over = "gRPC over HTTP/2 (h2c)" if protocol == "grpc" else "HTTP/1.1 with binary tensors"
        return f"h2load (nghttp2 {self.version}, {over}, one connection per request in flight)"


def find_h2load() -> H2Load | None:
    """h2load on PATH, with its version; None when it is not installed (or does not run)."""
    path = shutil.which(NAME)
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"nghttp2/(\S+)", out)
    return H2Load(path, match.group(1)) if match else None


@dataclass(frozen=True)
class Run:
    """One h2load run: every request's outcome, the summary's counts, and the CPU time it used."""

    starts_us: np.ndarray  # per request: start, microseconds since the epoch
    durations_us: np.ndarray  # per request: until the end of its response
    statuses: np.ndarray  # per request: HTTP status; -1 for a stream that failed
    requested: int
    done: int
    failed: int  # not completed at all (connection errors, timeouts)
    data_bytes: int  # response data (gRPC messages or HTTP bodies) of all requests together
    cpu_s: float  # user + system time of the h2load process

    @property
    def seconds(self) -> float:
        """From the first request sent to the last answer."""
        if not len(self.starts_us):
            return 0.0
        return float((self.starts_us + self.durations_us).max() - self.starts_us.min()) / 1e6

    @property
    def completed(self) -> np.ndarray:
        """Mask of requests answered with HTTP 200 (for gRPC: the transport's answer, see the module doc)."""
        return self.statuses == 200


def command(h2load: H2Load, request: WireRequest, concurrency: int, requests: int, body: Path, log: Path) -> list[str]:
    """The h2load command line of one run."""
    args = [h2load.path, "-n", str(requests), "-c", str(concurrency), "-m", "1", "-t", "1", "-d", str(body),
            f"--log-file={log}"]
    if request.protocol == "http":
        args.append("--h1")
    for key, value in request.headers:
        args += ["-H", f"{key}: {value}"]
    return [*args, request.url]


def run(h2load: H2Load, request: WireRequest, concurrency: int, requests: int, workdir: Path,
        timeout_s: float) -> Run:
    """Send `requests` requests, `concurrency` in flight; a run that outlasts `timeout_s` is killed and is an error."""
    body, log, out = workdir / "request.bin", workdir / "requests.tsv", workdir / "h2load.out"
    if not body.exists():
        body.write_bytes(request.body)
    log.unlink(missing_ok=True)
    with out.open("w") as stdout:
        process = subprocess.Popen(command(h2load, request, concurrency, requests, body, log), stdout=stdout,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    killed: list[bool] = []
    timer = threading.Timer(timeout_s, _kill, (process.pid, killed))
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)  # reaps it: the rusage of exactly this process
    except BaseException:  # an interrupt: h2load must not outlive the window
        _kill(process.pid, killed)
        os.waitpid(process.pid, 0)
        process.returncode = -1
        raise
    finally:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    text = out.read_text(errors="replace")
    if killed and process.returncode == -signal.SIGKILL:
        raise TritongenError(f"h2load did not finish {requests} requests within {timeout_s:.0f} s",
                             "the server stopped answering; see its log")
    if process.returncode != 0:
        raise TritongenError(f"h2load failed (exit {process.returncode}): {_last_line(text)}", INSTALL_HINT)
    summary = parse_summary(text)
    starts, durations, statuses = parse_log(log.read_text() if log.exists() else "")
    return Run(starts, durations, statuses, summary["total"], summary["done"], summary["failed"],
               summary["data_bytes"], usage.ru_utime + usage.ru_stime)


def _kill(pid: int, killed: list[bool]) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        killed.append(True)
    except ProcessLookupError:
        pass


def parse_log(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """h2load's --log-file: tab-separated start (µs since the epoch), HTTP status (-1: failed), µs to the end."""
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    table = np.array([[int(r[0]), int(r[1]), int(r[2])] for r in rows], dtype=np.int64).reshape(-1, 3)
    return table[:, 0], table[:, 2], table[:, 1]


_REQUESTS = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", re.M)
_TRAFFIC = re.compile(r"^traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers .*?, .*?\((\d+)\) data", re.M)


def parse_summary(text: str) -> dict[str, int]:
    """The counts of h2load's summary: requests total/done/failed and the bytes of response data."""
    requests, traffic = _REQUESTS.search(text), _TRAFFIC.search(text)
    if requests is None or traffic is None:
        raise TritongenError(f"h2load's output was not understood: {_last_line(text)}",
                             "tritongen reads the summary of nghttp2 1.4x/1.5x; pass --generator python")
    return {"total": int(requests.group(1)), "done": int(requests.group(3)), "failed": int(requests.group(5)),
            "data_bytes": int(traffic.group(3))}


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
