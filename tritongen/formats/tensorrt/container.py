"""One-off containers for TensorRT work (building a plan, looking inside an image): run to completion, always removed.

Through the Docker SDK with the Docker launcher's cleanup (`tritongen.server.docker.removed_after`): every
container is named and labelled, and removed whether the command finished, failed, timed out or was interrupted,
so no `docker run` is left behind when tritongen stops waiting for it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError

GPU_HINT = "install the NVIDIA Container Toolkit and restart dockerd, then retry"


def gpu_requests(gpus: str) -> list[Any] | None:
    """`docker run --gpus` values as Docker SDK device requests: all | N | device=0,1 | none (no GPU asked for)."""
    import docker

    value = (gpus or "none").strip().strip('"')
    if value == "none":
        return None
    if value == "all":
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if value.isdigit():
        return [docker.types.DeviceRequest(count=int(value), capabilities=[["gpu"]])]
    if value.startswith("device="):
        return [docker.types.DeviceRequest(device_ids=value[len("device="):].split(","), capabilities=[["gpu"]])]
    raise TritongenError(f"unknown GPU request '{gpus}'", "use all, a number of GPUs, device=0,1, or none")


def docker_failure(image: str, text: str) -> TritongenError | None:
    """One clear line for the common ways running a container of `image` fails: no GPU for it, no such image."""
    lowered = text.lower()
    if "could not select device driver" in lowered or "nvidia-container-cli" in lowered:
        return TritongenError(f"docker could not give {image} a GPU", GPU_HINT)
    if "unable to find image" in lowered or "pull access denied" in lowered or "manifest unknown" in lowered:
        return TritongenError(f"docker cannot find or pull the image '{image}'",
                              "docker pull it first (nvcr.io needs `docker login nvcr.io`), or check the tag")
    return None


def run_to_completion(image: str, command: Sequence[str], *, timeout_s: float, purpose: str, timeout_hint: str,
                      client: Any = None, mount: tuple[Path, str] | None = None, working_dir: str | None = None,
                      user: str | None = None, environment: Mapping[str, str] | None = None, gpus: str = "none",
                      entrypoint: str | None = None) -> tuple[int, str]:
    """Run `command` in a new container of `image` until it exits: (exit code, log of stdout and stderr).

    `mount` is (host directory, path in the container), read-write. A run longer than `timeout_s` is a
    TritongenError; the container is removed on every path.
    """
    import docker

    from tritongen.server.docker import LABEL, docker_client, removed_after, require_image

    client = client or docker_client()
    require_image(client, image, hint="docker pull it first (nvcr.io needs `docker login nvcr.io`), or check the tag")
    name = "tritongen-" + purpose.lower().replace(" ", "-") + f"-{uuid.uuid4().hex[:12]}"
    volumes = {str(Path(mount[0]).resolve()): {"bind": mount[1], "mode": "rw"}} if mount else None
    with removed_after(client, name) as slot:
        try:
            slot.created(client.containers.create(
                image, list(command), name=name, entrypoint=entrypoint, user=user or None,
                environment=dict(environment or {}), working_dir=working_dir, volumes=volumes,
                device_requests=gpu_requests(gpus), labels={LABEL: "1", f"{LABEL}.purpose": purpose}, detach=True))
            slot.container.start()
        except docker.errors.APIError as exc:
            text = str(getattr(exc, "explanation", None) or exc)
            raise docker_failure(image, text) or TritongenError(
                f"cannot start a container from '{image}': {text}", "check the image and the Docker engine") from exc
        started = time.monotonic()
        try:
            status = slot.container.wait(timeout=timeout_s)
        except Exception as exc:  # requests' ReadTimeout / ConnectionError: the SDK stopped waiting
            if time.monotonic() - started < timeout_s * 0.9:
                raise TritongenError(f"lost contact with the Docker engine while the {purpose} ran in {image}: {exc}",
                                     "check that dockerd is running") from exc
            raise TritongenError(f"the {purpose} in {image} took more than {timeout_s:.0f}s; its container was "
                                 "stopped and removed", timeout_hint) from None
        log = slot.container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")
    return int(status.get("StatusCode", 1)), log
