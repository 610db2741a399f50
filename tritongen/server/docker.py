"""The Docker launcher: Triton in a container that is always removed, with its log kept for error messages."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import urllib.error
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritongen.errors import TritongenError
from tritongen.server.base import ServerFlags, ServerHandle
from tritongen.server.logs import relevant_log_lines, start_failure_reason
from tritongen.server.logs import tail as log_tail
from tritongen.server.processes import Watchdog, process_exists, watchdog
from tritongen.server.url import open_url

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

DEFAULT_START_TIMEOUT_S = 120.0
CREATE_GRACE_S = 5.0  # how long a create call cut short by Ctrl-C may take to show its container
# Every container tritongen starts carries this label, so that leftovers can be found (and tests can check).
LABEL = "tritongen"
# host:pid of the tritongen process that started a container: one whose owner is gone is removed by the next launch.
OWNER_LABEL = f"{LABEL}.owner"
CONTAINER_REPOSITORY = "/models"
_CONTAINER_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
_DOCKER_HINT = "install Docker and start its engine (`dockerd`), or set DOCKER_HOST to a reachable engine"
_EMBEDDED_HINT = "; or validate without Docker: --server embedded"


def docker_client(*, alternative: str = "") -> docker.DockerClient:
    """A client for the engine that DOCKER_HOST (or the default socket) names, or a TritongenError saying why not.

    `alternative` is appended to the hint: what the user can do without Docker, where there is something.
    """
    try:
        import docker
    except ImportError as exc:
        raise TritongenError(
            "the Docker SDK for Python is not installed", "pip install 'tritongen[docker]' (the `docker` package)"
        ) from exc
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "the default socket /var/run/docker.sock")
        raise TritongenError(f"no Docker engine answers at {where} ({_short(exc)})", _DOCKER_HINT + alternative) from exc
    return client


def require_image(client: docker.DockerClient, image: str, *, hint: str | None = None) -> None:
    """Fail with a fix when `image` is not on this machine: tritongen never pulls multi-GB images silently."""
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound as exc:
        from tritongen.deploy import SLIM_IMAGE

        if hint is None:
            hint = (
                "build it with `tritongen image build`"
                if image == SLIM_IMAGE
                else f"pull it first (`docker pull {image}`), or pass --image with an image on this machine"
            )
        raise TritongenError(f"Docker image '{image}' is not on this machine", hint) from exc
    except docker.errors.APIError as exc:
        raise TritongenError(f"cannot look up Docker image '{image}': {_short(exc)}", _DOCKER_HINT) from exc


# The label `tritongen image build` puts on the images it builds: the backends the image has (the slim image: the
# python backend, and ensembles, which the server core runs).
BACKENDS_LABEL = "tritongen.backends"


def image_backends(image: str) -> frozenset[str] | None:
    """The backends an image built by `tritongen image build` has (under any tag), from its label; None for any other
    image, or one not on this machine (the launcher says so when it starts)."""
    import docker

    try:
        with contextlib.closing(docker_client()) as client:
            labels = client.images.get(image).labels or {}
    except (TritongenError, docker.errors.DockerException):
        return None
    value = labels.get(BACKENDS_LABEL)
    return frozenset(b for b in value.split(",") if b) if value else None


@contextlib.contextmanager
def launch_docker(
    repository: str | Path,
    *,
    image: str | None = None,
    timeout_s: float | None = None,
    shm_size: str | None = None,
    gpus: bool | None = None,
    client: docker.DockerClient | None = None,
    flags: ServerFlags | None = None,
    guard: Watchdog | None = None,
    purpose: str = "serve",
) -> Iterator[ServerHandle]:
    """Serve `repository` from a Triton container for the duration of the block; always remove the container.

    `image`: None (the image the generated compose file would use), "slim", "nvidia", or an image reference.
    `gpus`: None requests all GPUs when a model needs one (KIND_GPU, TensorRT); True/False force it.
    `flags`: tritonserver's model control and extra flags, as for the embedded server. `purpose` labels the container.
    Ports are published on 127.0.0.1 at free ports that Docker picks.
    """
    from tritongen.deploy import SHM_SIZE, choose_image, needs_of_repository

    repository = Path(repository).resolve()
    needs = needs_of_repository(repository)
    choice = choose_image(needs, image)
    want_gpus = needs.gpu if gpus is None else gpus
    timeout = DEFAULT_START_TIMEOUT_S if timeout_s is None else timeout_s
    client = client or docker_client(alternative=_EMBEDDED_HINT)
    require_image(client, choice.ref)
    sweep_containers(client)
    # Named up front: a Ctrl-C that lands after the engine created the container but before the SDK call
    # returned leaves no Container object, and the name still finds it for removal.
    name = f"tritongen-serve-{uuid.uuid4().hex[:12]}"
    final_log: list[str] = []  # the log as the container was removed, for log() calls after the block
    engine = _engine_socket()
    with watchdog(guard) as dog:
        if engine:  # a tritongen killed with SIGKILL cannot remove it: its watchdog does
            dog.guard_container(engine, name)
        try:
            with removed_after(client, name, keep_log=final_log.append) as slot:
                container = _create_container(client, name, repository, choice.ref, shm_size or SHM_SIZE, want_gpus,
                                              flags or ServerFlags(), purpose)
                slot.created(container)
                _start(container, choice.ref, want_gpus)
                ports = _published_ports(container)
                handle = ServerHandle(
                    kind="docker",
                    http_url=f"127.0.0.1:{ports['http']}",
                    grpc_url=f"127.0.0.1:{ports['grpc']}",
                    metrics_url=f"127.0.0.1:{ports['metrics']}",
                    log=lambda: final_log[0] if final_log else _logs(container),
                    description=f"{choice.ref} ({choice.kind} image: {choice.reason}), container {container.short_id}",
                    exit_status=lambda: None if final_log else _exit_status(container),
                )
                _wait_ready(container, handle.http_url, timeout, choice.ref)
                yield handle
        finally:
            if engine:  # removed (or never created): nothing left for the watchdog
                dog.forget_container(engine, name)


class ContainerSlot:
    """A container being created under a known name (see `removed_after`)."""

    def __init__(self) -> None:
        self.container: Container | None = None
        self.creating = True  # until the engine has answered the create call

    def created(self, container: Container) -> None:
        self.container, self.creating = container, False


@contextlib.contextmanager
def removed_after(client: docker.DockerClient, name: str,
                  keep_log: Callable[[str], None] | None = None) -> Iterator[ContainerSlot]:
    """Remove the container called `name` when the block ends, on every path: errors, Ctrl-C, and a Ctrl-C that
    lands while the engine is still creating it. `keep_log` receives its log just before it goes."""
    slot = ContainerSlot()
    try:
        yield slot
    finally:
        # Also on KeyboardInterrupt and on errors in the block: a container left running holds ports and memory.
        pending = sys.exc_info()[1]
        container = slot.container
        if container is None:
            # Interrupted while the engine was creating it (not refused: that is a TritongenError): the engine goes on
            # and the container can appear after the aborted call, so look for it a little while.
            late = slot.creating and not isinstance(pending, TritongenError)
            container = _find(client, name, wait_s=CREATE_GRACE_S if late else 0.0)
        if container is not None:
            if keep_log is not None:
                keep_log(_logs(container))
            _remove(container, pending=pending)


def sweep_containers(client: docker.DockerClient) -> list[str]:
    """Remove containers that a tritongen on this machine started and could not remove (it was killed)."""
    import docker

    host = socket.gethostname()
    removed = []
    with contextlib.suppress(docker.errors.DockerException):
        for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
            owner_host, _, owner_pid = str(container.labels.get(OWNER_LABEL, "")).rpartition(":")
            if owner_host == host and owner_pid.isdigit() and not process_exists(int(owner_pid)):
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True, v=True)
                    removed.append(container.name)
    return removed


def _engine_socket() -> str | None:
    """The unix socket of the Docker engine, where that is how it is reached (the watchdog speaks only that)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host.removeprefix("unix://") if host.startswith("unix://") else None


def _exit_status(container: Container) -> str | None:
    try:
        container.reload()
    except Exception:  # gone already: it ended
        return "was removed"
    if container.status not in ("exited", "dead"):
        return None
    state = container.attrs.get("State", {})
    return f"exited with code {state.get('ExitCode')}" + (" (out of memory)" if state.get("OOMKilled") else "")


def _create_container(
    client: docker.DockerClient, name: str, repository: Path, image: str, shm_size: str, gpus: bool,
    flags: ServerFlags, purpose: str,
) -> Container:
    import docker

    from tritongen.deploy.command import metrics_args

    device_requests = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if gpus else None
    try:
        return client.containers.create(
            image,
            name=name,
            command=[
                "tritonserver",
                f"--model-repository={CONTAINER_REPOSITORY}",
                # Serve what we wrote: auto-complete would fill in batching and hide config mistakes.
                "--disable-auto-complete-config",
                *metrics_args(),
                *flags.args(),
            ],
            # Docker picks free host ports: no race between choosing a port and binding it.
            ports={f"{port}/tcp": ("127.0.0.1", None) for port in _CONTAINER_PORTS.values()},
            volumes=_volumes(repository),
            shm_size=shm_size,
            device_requests=device_requests,
            labels={LABEL: "1", f"{LABEL}.purpose": purpose, f"{LABEL}.repository": str(repository),
                    OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"},
            detach=True,
        )
    except docker.errors.APIError as exc:
        raise TritongenError(f"cannot create a container from '{image}': {_short(exc)}", _api_hint(exc, gpus)) from exc


def _start(container: Container, image: str, gpus: bool) -> None:
    import docker

    try:
        container.start()
    except docker.errors.APIError as exc:
        # The engine checks GPU device requests only here, at start.
        raise TritongenError(f"cannot start a container from '{image}': {_short(exc)}", _api_hint(exc, gpus)) from exc


def _api_hint(exc: Exception, gpus: bool) -> str:
    if gpus and "gpu" in str(exc).lower():
        return (
            "this Docker engine cannot give containers a GPU: install the NVIDIA driver and the NVIDIA Container "
            "Toolkit, or rebuild the model for CPU (a model asks for KIND_GPU or is a TensorRT plan)"
        )
    return _DOCKER_HINT


def _volumes(repository: Path) -> dict[str, dict[str, str]]:
    """The repository read-only at /models, plus the targets of symlinks that point out of it.

    A repository staged with symlinks (e.g. ONNX models wrapped for the python backend) would otherwise
    show the container dangling links: each outside target is mounted where the link points inside.
    """
    volumes = {str(repository): {"bind": CONTAINER_REPOSITORY, "mode": "ro"}}
    for link_dir, dirnames, filenames in os.walk(repository):
        for name in dirnames + filenames:
            path = Path(link_dir) / name
            if not path.is_symlink():
                continue
            target = path.resolve()
            if target == repository or repository in target.parents or not target.exists():
                continue  # inside the repository (already mounted) or dangling anyway
            # Where the link points when followed inside the container.
            container_dir = Path(CONTAINER_REPOSITORY) / Path(link_dir).relative_to(repository)
            in_container = os.path.normpath(container_dir / os.readlink(path))
            volumes[str(target)] = {"bind": in_container, "mode": "ro"}
    return volumes


def _published_ports(container: Container) -> dict[str, int]:
    container.reload()  # the host ports are known only after start
    published = container.attrs["NetworkSettings"]["Ports"] or {}
    ports = {}
    for name, port in _CONTAINER_PORTS.items():
        bindings = published.get(f"{port}/tcp") or []
        if not bindings:
            raise TritongenError(
                f"container {container.short_id} published no host port for {name} ({port}/tcp)",
                "check that the Docker engine can publish ports (not --network host, no rootless restrictions)",
                details=_tail(_logs(container)),
            )
        ports[name] = int(bindings[0]["HostPort"])
    return ports


def _wait_ready(container: Container, http_url: str, timeout_s: float, image: str) -> None:
    """Poll /v2/health/ready until every model has loaded; fail early with the log if the server exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            # Not through an HTTP(S)_PROXY of the environment: the server is on this machine.
            with open_url(f"http://{http_url}/v2/health/ready", timeout_s=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass  # not listening yet, or 400 (not ready) while models load
        container.reload()
        if container.status in ("exited", "dead"):
            code = container.attrs.get("State", {}).get("ExitCode")
            log = _logs(container)
            raise TritongenError(
                f"Triton in {image} exited with code {code} before it was ready{_failed_models(log)}",
                "the server log below says why; fix the model or its config.pbtxt and rebuild",
                details=_explain(log),
            )
        if time.monotonic() > deadline:
            log = _logs(container)
            raise TritongenError(
                f"Triton in {image} was not ready after {timeout_s:.0f} s{_failed_models(log)}",
                "the server log below says what it was doing; a big model may need a longer --timeout",
                details=_explain(log),
            )
        time.sleep(0.5)


def _failed_models(log: str) -> str:
    reason, names_model = start_failure_reason(relevant_log_lines(log))
    return f": {reason}" if names_model else ""


def _logs(container: Container | None) -> str:
    if container is None:
        return ""
    try:
        return container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")
    except Exception:  # the container may already be gone; a log is a nicety, never a second error
        return "(container log unavailable)"


def _explain(log: str) -> str:
    """The lines of the server log that say why it failed (as for the embedded server), else its tail."""
    picked = relevant_log_lines(log)
    return "\n".join(picked) if picked else _tail(log)


def _tail(log: str, lines: int = 40) -> str:
    return log_tail(log, lines)


def _find(client: docker.DockerClient, name: str, wait_s: float = 0.0) -> Container | None:
    """The container called `name`, waiting up to `wait_s` for it to appear."""
    import docker

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return client.containers.get(name)
        except docker.errors.NotFound:
            if time.monotonic() >= deadline:
                return None
        except docker.errors.DockerException:
            return None
        time.sleep(0.1)


def _remove(container: Container, pending: BaseException | None = None) -> None:
    """Kill and remove the container (nothing in it needs a graceful stop: it is thrown away whole)."""
    import docker

    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        message = f"could not remove container {container.short_id}: {_short(exc)}"
        hint = f"remove it by hand: docker rm -f {container.short_id}"
        if pending is None:
            raise TritongenError(message, hint) from exc
        # Do not replace the error that brought us here; add what is left behind to it.
        if isinstance(pending, TritongenError):
            pending.details = f"{pending.details or ''}\n{message}; {hint}".strip()


def _short(exc: BaseException) -> str:
    text: Any = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
