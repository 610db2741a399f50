"""The embedded server: a `tritonserver` subprocess that always stops, with its log kept for error messages."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tritongen.errors import TritongenError
from tritongen.server import open_url
from tritongen.server.base import ServerHandle

DEFAULT_START_TIMEOUT_S = 120.0
# Graceful shutdown waits for in-flight requests and unloads models (about 2 s for the python backend).
STOP_GRACE_S = 15.0
WORKDIR_PREFIX = "tritongen-server-"  # + the owning tritongen's pid, so leftovers of a killed owner can be found
# Appended to the log once the process has exited, so that error messages built from the log say how it ended.
EXIT_NOTE = "[tritongen] tritonserver exited"
_INSTALL_HINT = "pip install 'tritongen[server]' (nvidia-pytriton==0.7.0), or pass --tritonserver PATH"
# Log lines that are errors in form but harmless on a CPU-only machine.
_NOISE = re.compile(r"CudaDriverHelper|NVML|DCGM|pinned memory|CUDA driver|cuda_memory_manager|GPU metrics", re.I)
_LOG_PREFIX = re.compile(r"^[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ")


@dataclass(frozen=True)
class TritonInstall:
    """Where a tritonserver binary and what it needs at run time live."""

    binary: Path
    # Directory whose subdirectories are backends (python/, onnxruntime/, ...); None: the server's default.
    backends: Path | None
    # The python backend stub built for the running Python (nvidia-pytriton ships one per Python version).
    python_stub: Path | None
    library_dirs: tuple[Path, ...]  # prepended to LD_LIBRARY_PATH

    @property
    def backend_names(self) -> frozenset[str]:
        root = self.backends or Path("/opt/tritonserver/backends")
        if not root.is_dir():
            return frozenset()
        return frozenset(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def find_tritonserver(tritonserver: str | Path | None = None) -> TritonInstall:
    """Locate tritonserver: the given path, else the nvidia-pytriton wheel's, else the one on PATH."""
    if tritonserver is not None:
        binary = Path(tritonserver).expanduser()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise TritongenError(f"--tritonserver '{tritonserver}' is not an executable file",
                                 "give a tritonserver binary, or leave --tritonserver out to use nvidia-pytriton's")
        return _install_from_binary(binary.resolve())
    wheel_binary = _pytriton_binary()
    if wheel_binary is not None:
        return _install_from_binary(wheel_binary)
    on_path = shutil.which("tritonserver")
    if on_path:
        return _install_from_binary(Path(on_path).resolve())
    raise TritongenError("no tritonserver binary found: nvidia-pytriton is not installed and none is on PATH",
                         _INSTALL_HINT)


def _pytriton_binary() -> Path | None:
    import importlib.util

    found = importlib.util.find_spec("pytriton")
    if found is None or not found.submodule_search_locations:
        return None
    binary = Path(next(iter(found.submodule_search_locations))) / "tritonserver" / "bin" / "tritonserver"
    return binary if binary.is_file() else None


def _install_from_binary(binary: Path) -> TritonInstall:
    dist = binary.parent.parent  # .../tritonserver/{bin,backends,python_backend_stubs}
    stubs = dist / "python_backend_stubs"
    if stubs.is_dir():
        # nvidia-pytriton layout: its stub and backend libraries find their shared libraries through an RPATH
        # relative to where the wheel put them, which breaks once copied; LD_LIBRARY_PATH restores it.
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        stub = stubs / version / "triton_python_backend_stub"
        if not stub.is_file():
            have = ", ".join(sorted(p.name for p in stubs.iterdir()))
            raise TritongenError(f"nvidia-pytriton has no python backend stub for Python {version} (it has {have})",
                                 "run tritongen with one of those Python versions")
        libs = dist.parent.parent / "nvidia_pytriton.libs"
        return TritonInstall(binary, dist / "backends", stub, (libs,) if libs.is_dir() else ())
    backends = dist / "backends"
    return TritonInstall(binary, backends if backends.is_dir() else None, None, ())


def prepare_backends(install: TritonInstall, dest: Path) -> Path | None:
    """A backends directory whose python backend has the stub for this Python; None: use the server's own."""
    if install.python_stub is None:
        return install.backends
    dest.mkdir(parents=True, exist_ok=True)
    for backend in install.backends.iterdir() if install.backends else ():
        if backend.is_dir():
            shutil.copytree(backend, dest / backend.name, ignore=shutil.ignore_patterns("__pycache__"))
    python_dir = dest / "python"
    python_dir.mkdir(exist_ok=True)
    shutil.copy2(install.python_stub, python_dir / "triton_python_backend_stub")
    return dest


def server_environment(install: TritonInstall) -> dict[str, str]:
    """The server's environment: with nvidia-pytriton's stub, models' Python code imports this interpreter's packages
    (onnxruntime, numpy); a server installed some other way keeps its own Python set-up."""
    env = dict(os.environ)
    lib_dirs = [str(d) for d in install.library_dirs]
    if install.python_stub is not None:
        # The stub links against libpython3.X.so; prefer the running interpreter's over a system copy, so that
        # the stub's stdlib and compiled modules come from one Python build.
        libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
        if libdir and library and (Path(libdir) / library).exists():
            lib_dirs.insert(0, libdir)
        # The embedded interpreter finds its prefix by looking up `python3` on PATH: this interpreter's bin
        # directory first makes it pick up the virtual environment's pyvenv.cfg and site-packages.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env.pop("PYTHONHOME", None)
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    if lib_dirs:
        env["LD_LIBRARY_PATH"] = ":".join(lib_dirs)
    return env


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


def relevant_log_lines(log: str, limit: int = 12) -> list[str]:
    """The lines of a server log that explain a failure: errors and failed loads, without CPU-only noise."""
    picked: list[str] = []
    for raw in log.splitlines():
        line = raw.strip()
        is_error = line.startswith("E") and _LOG_PREFIX.match(line)
        if not (is_error or "failed to load" in line or line.startswith(("error:", "[tritongen]"))
                or "Failed to initialize Python stub" in line or "Unable to find backend" in line):
            continue
        if _NOISE.search(line):
            continue
        text = _LOG_PREFIX.sub("", line).strip().strip('"')
        # Triton escapes a Python traceback into one quoted line; keep the message, drop the frame list.
        text = text.split("\\n\\nAt:")[0].replace("\\n", " ").strip()
        if text and text not in picked:
            picked.append(text)
    return picked[-limit:]


def _die_with_parent() -> None:
    """Runs in the child before exec: if tritongen dies (even by SIGKILL), the kernel kills the server too."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


class LocalServer:
    """One tritonserver process group; `stop()` is idempotent and leaves no process or shared memory behind."""

    def __init__(self, install: TritonInstall, repository: Path, workdir: Path, *, host: str,
                 ports: tuple[int, int, int], extra_args: Sequence[str] = ()) -> None:
        self.install = install
        self.repository = repository
        self.host = host
        self.http_port, self.grpc_port, self.metrics_port = ports
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "tritonserver.log"
        # Named so that shared memory left by a killed python backend can be found and removed.
        self.shm_prefix = f"tritongen_{os.getpid()}_{self.http_port}_"
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
            *extra_args,
        ]
        self._env = server_environment(install)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file = None
        self._final_log: str | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT, env=self._env,
            # Own process group: Ctrl-C in the terminal reaches tritongen only, which then stops the whole group
            # (server and python backend stubs) in order.
            start_new_session=True, preexec_fn=_die_with_parent,
        )

    def exit_code(self) -> int | None:
        return self._process.poll() if self._process else None

    def log(self) -> str:
        if self._final_log is not None:
            return self._final_log
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        code = self.exit_code()
        if code is not None:
            text += f"\n{EXIT_NOTE} with {_describe_exit(code)}\n"
        return text

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every model is ready; raise with the log's explanation if the server exits or times out."""
        deadline = time.monotonic() + timeout_s
        url = f"http://{_connect_host(self.host)}:{self.http_port}/v2/health/ready"
        while True:
            code = self.exit_code()
            if code is not None:
                raise self._start_error(f"tritonserver exited during startup ({_describe_exit(code)})")
            if _http_ok(url):
                return
            if time.monotonic() > deadline:
                raise self._start_error(f"tritonserver was not ready after {timeout_s:.0f} s")
            time.sleep(0.1)

    def version(self) -> str:
        try:
            with open_url(f"http://{_connect_host(self.host)}:{self.http_port}/v2", 2) as r:
                return str(json.loads(r.read()).get("version", "?"))
        except (OSError, ValueError):
            return "?"

    def port_conflict(self) -> bool:
        text = self.log()
        return "Address already in use" in text or ("failed to start" in text.lower() and "Service" in text)

    def stop(self) -> None:
        process = self._process
        if process is not None and self._final_log is None:
            try:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)  # graceful: unloads models (their finalize() runs)
                    self._wait_models_unloaded(STOP_GRACE_S)
            finally:
                # Whatever is left in the group (a hung server, stubs of a killed one) goes now.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
                self._final_log = self.log()
                if self._log_file:
                    self._log_file.close()
                self._remove_shared_memory()

    def _wait_models_unloaded(self, timeout_s: float) -> None:
        # Once every loaded model is unloaded nothing graceful is left to wait for; tritonserver itself would
        # only notice at its next once-a-second check, so this saves about 1.5 s per stop.
        deadline = time.monotonic() + timeout_s
        while self.exit_code() is None and time.monotonic() < deadline:
            text = self.log()
            if text.count("successfully unloaded '") >= text.count("successfully loaded '"):
                return
            time.sleep(0.05)

    def _remove_shared_memory(self) -> None:
        shm = Path("/dev/shm")
        if shm.is_dir():
            for region in shm.glob(f"{self.shm_prefix}*"):
                with contextlib.suppress(OSError):
                    region.unlink()

    def _start_error(self, what: str) -> TritongenError:
        log = self.log()
        lines = relevant_log_lines(log)
        # Best first: the line that names the model and version, then any load failure, then any error.
        load_errors = ([line for line in lines if re.search(r"failed to load '.+' version", line)]
                       or [line for line in lines if "failed to load" in line or "Failed to" in line])
        reason = (load_errors or lines or ["the log has no error lines"])[0]
        details = "server log (relevant lines):\n  " + "\n  ".join(lines) if lines else _tail(log)
        # The work directory goes away with the server; keep the full log where the user can read it.
        kept = Path(tempfile.gettempdir()) / f"tritongen-tritonserver-{os.getpid()}-{self.http_port}.log"
        with contextlib.suppress(OSError):
            kept.write_text(log)
        hint = "fix the model the error names" if load_errors else "see the server log"
        return TritongenError(f"{what}: {reason}", f"{hint}; full log: {kept}", details=details)


def sweep_leftovers() -> list[Path]:
    """Remove work directories and shared memory of embedded servers whose tritongen process was killed
    (SIGKILL leaves no chance to clean up; the server itself died with it). Returns what was removed."""
    removed: list[Path] = []
    candidates = [(p, p.name.removeprefix(WORKDIR_PREFIX).split("-")[0])
                  for p in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*")]
    shm = Path("/dev/shm")
    if shm.is_dir():
        candidates += [(p, p.name.removeprefix("tritongen_").split("_")[0]) for p in shm.glob("tritongen_*")]
    for path, owner in candidates:
        if owner.isdigit() and not _process_exists(int(owner)):
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(path)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _tail(log: str, lines: int = 20) -> str:
    return "server log (last lines):\n  " + "\n  ".join(log.strip().splitlines()[-lines:])


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _http_ok(url: str) -> bool:
    try:
        with open_url(url, 1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextlib.contextmanager
def launch_local(repository: str | Path, *, tritonserver: str | Path | None = None, timeout_s: float | None = None,
                 host: str = "127.0.0.1", ports: tuple[int, int, int] | None = None,
                 extra_args: Sequence[str] = (), install: TritonInstall | None = None) -> Iterator[ServerHandle]:
    """Run tritonserver on `repository` until the block ends; stop it on success, error and Ctrl-C alike."""
    repository = Path(repository).resolve()
    if not repository.is_dir():
        raise TritongenError(f"model repository '{repository}' does not exist", "run `tritongen build` first")
    install = install or find_tritonserver(tritonserver)
    timeout_s = DEFAULT_START_TIMEOUT_S if timeout_s is None else timeout_s
    attempts = 1 if ports else 3  # a free port can be taken between choosing and binding it
    sweep_leftovers()
    with tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-") as workdir:
        for attempt in range(attempts):
            chosen = ports or tuple(free_ports(3, _connect_host(host)))
            server = LocalServer(install, repository, Path(workdir) / str(attempt), host=host, ports=chosen,
                                 extra_args=extra_args)
            try:
                server.start()
                try:
                    server.wait_ready(timeout_s)
                except TritongenError:
                    if attempt + 1 < attempts and server.port_conflict():
                        continue
                    raise
                connect = _connect_host(host)
                yield ServerHandle(
                    kind="embedded",
                    http_url=f"{connect}:{server.http_port}",
                    grpc_url=f"{connect}:{server.grpc_port}",
                    metrics_url=f"{connect}:{server.metrics_port}",
                    log=server.log,
                    description=f"embedded tritonserver {server.version()} ({install.binary})",
                )
                return
            finally:
                server.stop()
