"""The embedded server: a `tritonserver` subprocess that always stops, with its log kept for error messages."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path

from tritongen.deploy.command import metrics_args
from tritongen.errors import TritongenError
from tritongen.server.base import ServerFlags, ServerHandle
from tritongen.server.install import TritonInstall, find_tritonserver, prepare_backends, server_environment
from tritongen.server.logs import relevant_log_lines, start_failure_reason, tail
from tritongen.server.processes import (
    SERVER_WORKDIR,
    SHM,
    SHM_PREFIX,
    Watchdog,
    child_setup,
    owned_name,
    sweep_leftovers,
    uninterrupted,
    watchdog,
)
from tritongen.server.url import open_url

__all__ = ["LocalServer", "find_tritonserver", "free_ports", "launch_local", "relevant_log_lines", "sweep_leftovers"]

DEFAULT_START_TIMEOUT_S = 120.0
# Graceful shutdown waits for in-flight requests and unloads models (about 2 s for the python backend); a server
# still running after this long is killed, with its stubs.
STOP_GRACE_S = 15.0
KILL_WAIT_S = 5.0
# Appended to the log once the process has exited, so that error messages built from the log say how it ended.
EXIT_NOTE = "[tritongen] tritonserver exited"
Note = Callable[[str], None]


class LocalServer:
    """One tritonserver process group; `stop()` is idempotent, bounded, and leaves no process or shared memory."""

    def __init__(self, install: TritonInstall, repository: Path, workdir: Path, *, host: str,
                 ports: tuple[int, int, int], flags: ServerFlags | None = None, guard: Watchdog | None = None,
                 note: Note | None = None, stop_grace_s: float = STOP_GRACE_S) -> None:
        self.install = install
        self.repository = repository
        self.host = host
        self.http_port, self.grpc_port, self.metrics_port = ports
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "tritonserver.log"
        # Named after tritongen's pid, so that shared memory left by a killed run can be found and removed.
        self.shm_prefix = f"{SHM_PREFIX}{os.getpid()}_{self.http_port}_"
        backends = prepare_backends(install, workdir / "backends")
        self.command = [
            str(install.binary),
            f"--model-repository={repository}",
            "--disable-auto-complete-config",  # serve exactly the config we wrote
            f"--http-address={host}", f"--http-port={self.http_port}",
            f"--grpc-address={host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={host}", f"--metrics-port={self.metrics_port}",
            "--exit-timeout-secs=10",
            *([f"--backend-directory={backends}"] if backends else []),
            *([f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}"]
              if "python" in install.backend_names else []),
            # The latency summaries a deployment exports, and where nvidia-pytriton keeps the response cache.
            *metrics_args(), *([f"--cache-directory={install.caches}"] if install.caches else []),
            *(flags or ServerFlags()).args(),
        ]
        self._env = server_environment(install)
        self._guard = guard
        self._note = note or (lambda _msg: None)
        self._stop_grace_s = stop_grace_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file = None
        self._final_log: str | None = None
        if guard is not None:
            guard.guard_shm(self.shm_prefix)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        with uninterrupted():  # an interrupt now would leave a server we know nothing about
            self._process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
                env=self._env,
                # Own process group: Ctrl-C in the terminal reaches tritongen only, which then stops the whole group
                # (server and python backend stubs) in order.
                start_new_session=True, preexec_fn=functools.partial(child_setup, os.getpid()),
            )
            if self._guard is not None:
                self._guard.guard_group(self._process.pid)

    def exit_code(self) -> int | None:
        return self._process.poll() if self._process else None

    def exit_status(self) -> str | None:
        code = self.exit_code()
        return None if code is None else f"exited with {describe_exit(code)}"

    def log(self) -> str:
        if self._final_log is not None:
            return self._final_log
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        code = self.exit_code()
        if code is not None:
            text += f"\n{EXIT_NOTE} with {describe_exit(code)}\n"
        return text

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every model is ready; raise with the log's explanation if the server exits or times out."""
        deadline = time.monotonic() + timeout_s
        url = f"http://{connect_host(self.host)}:{self.http_port}/v2/health/ready"
        while True:
            code = self.exit_code()
            if code is not None:
                raise self._start_error(f"tritonserver exited during startup ({describe_exit(code)})")
            if _http_ok(url):
                return
            if time.monotonic() > deadline:
                raise self._start_error(f"tritonserver was not ready after {timeout_s:.0f} s")
            time.sleep(0.1)

    def version(self) -> str:
        try:
            with open_url(f"http://{connect_host(self.host)}:{self.http_port}/v2", 2) as r:
                return str(json.loads(r.read()).get("version", "?"))
        except (OSError, ValueError):
            return "?"

    def port_conflict(self) -> bool:
        text = self.log()
        return "Address already in use" in text or ("failed to start" in text.lower() and "Service" in text)

    def stop(self) -> None:
        """SIGTERM (models unload, their finalize() runs), then after the grace period SIGKILL of the whole group."""
        if self._final_log is not None:
            return
        process = self._process
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                if not self._wait_models_unloaded(self._stop_grace_s):
                    self._note(f"tritonserver (pid {process.pid}) did not stop within {self._stop_grace_s:.0f} s of "
                               "SIGTERM: killing it and its python backend stubs (SIGKILL)")
        finally:
            # Whatever is left in the group (a hung server, stubs of a killed one) goes now.
            for pgid in [process.pid] if process is not None else self._untracked_servers():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            if process is not None:
                try:
                    process.wait(timeout=KILL_WAIT_S)
                except subprocess.TimeoutExpired:
                    self._note(f"tritonserver (pid {process.pid}) is still not gone {KILL_WAIT_S:.0f} s after SIGKILL "
                               "(stuck in the kernel); leaving it")
                if self._guard is not None:
                    self._guard.forget_group(process.pid)
            self._final_log = self.log()
            if self._log_file:
                self._log_file.close()
            self._remove_shared_memory()

    def _wait_models_unloaded(self, timeout_s: float) -> bool:
        """Wait until the server has exited or unloaded every model it loaded; False when it did not in time."""
        # Once every loaded model is unloaded nothing graceful is left to wait for; tritonserver itself would
        # only notice at its next once-a-second check, so this saves about 1.5 s per stop.
        deadline = time.monotonic() + timeout_s
        while self.exit_code() is None:
            if time.monotonic() >= deadline:
                return False
            text = self.log()
            if text.count("successfully unloaded '") >= text.count("successfully loaded '"):
                return True
            time.sleep(0.05)
        return True

    def _untracked_servers(self) -> list[int]:
        """A server whose start was cut short between fork and Popen's return: our child with this server's
        unique shared-memory prefix in its command line."""
        found = []
        marker = self.shm_prefix.encode()
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        return found

    def _remove_shared_memory(self) -> None:
        if SHM.is_dir():
            for region in SHM.glob(f"{self.shm_prefix}*"):
                with contextlib.suppress(OSError):
                    region.unlink()

    def _start_error(self, what: str) -> TritongenError:
        log = self.log()
        lines = relevant_log_lines(log)
        reason, names_model = start_failure_reason(lines)
        details = "server log (relevant lines):\n  " + "\n  ".join(lines) if lines else tail(log)
        # The work directory goes away with the server; keep the full log where the user can read it.
        kept = Path(tempfile.gettempdir()) / f"tritongen-tritonserver-{os.getpid()}-{self.http_port}.log"
        with contextlib.suppress(OSError):
            kept.write_text(log)
        hint = "fix the model the error names" if names_model else "see the server log"
        return TritongenError(f"{what}: {reason}", f"{hint}; full log: {kept}", details=details)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports that were free a moment ago (the server may still lose a race for one; launch retries)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _http_ok(url: str) -> bool:
    try:
        with open_url(url, 1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextlib.contextmanager
def launch_local(repository: str | Path, *, tritonserver: str | Path | None = None, timeout_s: float | None = None,
                 host: str = "127.0.0.1", ports: tuple[int | None, int | None, int | None] | None = None,
                 flags: ServerFlags | None = None, install: TritonInstall | None = None,
                 guard: Watchdog | None = None, on_progress: Note | None = None,
                 stop_grace_s: float | None = None) -> Iterator[ServerHandle]:
    """Run tritonserver on `repository` until the block ends; stop it on success, error and Ctrl-C alike.

    `ports` (HTTP, gRPC, metrics): None, or any of them None, for free ports.
    `guard`: the watchdog that cleans up if tritongen is killed (one is made when not given).
    `on_progress` hears about a stop that had to be forced.
    """
    repository = Path(repository).resolve()
    if not repository.is_dir():
        raise TritongenError(f"model repository '{repository}' does not exist", "run `tritongen build` first")
    install = install or find_tritonserver(tritonserver)
    timeout_s = DEFAULT_START_TIMEOUT_S if timeout_s is None else timeout_s
    wanted = tuple(ports or (None, None, None))
    attempts = 1 if all(wanted) else 3  # a free port can be taken between choosing and binding it
    sweep_leftovers()
    with watchdog(guard) as dog, tempfile.TemporaryDirectory(prefix=owned_name(SERVER_WORKDIR)) as workdir:
        dog.guard_path(Path(workdir))
        for attempt in range(attempts):
            spare = iter(free_ports(3, connect_host(host)))
            chosen = tuple(port or next(spare) for port in wanted)
            server = LocalServer(install, repository, Path(workdir) / str(attempt), host=host, ports=chosen,
                                 flags=flags, guard=dog, note=on_progress,
                                 stop_grace_s=STOP_GRACE_S if stop_grace_s is None else stop_grace_s)
            try:
                server.start()
                try:
                    server.wait_ready(timeout_s)
                except TritongenError:
                    if attempt + 1 < attempts and server.port_conflict():
                        continue
                    raise
                connect = connect_host(host)
                yield ServerHandle(
                    kind="embedded",
                    http_url=f"{connect}:{server.http_port}",
                    grpc_url=f"{connect}:{server.grpc_port}",
                    metrics_url=f"{connect}:{server.metrics_port}",
                    log=server.log,
                    description=f"embedded tritonserver {server.version()} ({install.binary})",
                    exit_status=server.exit_status,
                )
                return
            finally:
                server.stop()
