"""The Triton pod both Kubernetes targets run: command line, ports and probes, /dev/shm, resources, security.

The command line (tritongen.deploy.command.triton_args) and image are the compose deployment's, so what `validate`
checked with Docker is what runs in the cluster; the container ports and probes are derived from that command line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tritongen.deploy import SHM_SIZE, ImageChoice, RepositoryNeeds
from tritongen.deploy.command import (
    CONTAINER_REPOSITORY,
    EXIT_TIMEOUT_S,
    exit_timeout_of,
    flag_value,
    ports_of,
    triton_args,
)
from tritongen.errors import TritongenError
from tritongen.kube.plan import CapacityPlan
from tritongen.kube.source import ModelSource

__all__ = ["TritonPod", "exit_timeout_of", "flag_value", "ports_of", "triton_args", "triton_pod"]

# How long tritonserver waits for in-flight requests after SIGTERM (its 2.51 default, written in the command line).
TRITON_EXIT_TIMEOUT_S = EXIT_TIMEOUT_S
# Before SIGTERM reaches Triton, the pod leaves the Service's endpoints; the pause lets proxies and kube-proxy
# catch up, so no new request is sent to a server that is shutting down.
PRESTOP_SLEEP_S = 5
GRACE_MARGIN_S = 10
HEALTH_READY = "/v2/health/ready"
HEALTH_LIVE = "/v2/health/live"
# NVIDIA's image has the user triton-server with uid and gid 1000 (Triton's build.py asserts it); tritongen's slim
# image runs under any uid. KServe's own Triton runtime uses 1000 too.
RUN_AS = 1000
# The ports KServe's Triton runtime uses: its Service and routing expect HTTP on 8080.
KSERVE_PORTS = {"http": 8080, "grpc": 9000}
KSERVE_MOUNT = "/mnt/models"

# Memory estimate (the request; limit = request + /dev/shm, which is counted against it). Measured here on the test
# CNN: tritonserver 38 MB and one python backend stub 72 MB resident. Models are read once and held by the runtime.
SERVER_MEMORY_MI = 512
INSTANCE_MEMORY_MI = 256
DEFAULT_CPU = "1"


@dataclass(frozen=True)
class TritonPod:
    """Values the Deployment and the KServe runtime templates are rendered with."""

    image: ImageChoice
    args: tuple[str, ...]
    ports: dict[str, int]
    grace_s: int
    exit_timeout_s: int
    shm: str  # Kubernetes quantity
    cpu: str
    memory: str
    memory_limit: str
    gpu: bool
    read_only_root: bool
    python_models: tuple[str, ...]
    writable: tuple[str, ...] = ()  # paths under the mounted repository that need a writable emptyDir
    estimate: str = ""  # how the memory request was arrived at
    notes: tuple[str, ...] = field(default=())

    @property
    def prestop_sleep_s(self) -> int:
        return PRESTOP_SLEEP_S


_UNITS = {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}  # Docker's k, m, g are powers of 1024


def quantity(size: str) -> str:
    """A Docker/compose size (`1g`, `512m`, `2gb`, bytes) as a Kubernetes quantity (`1Gi`, `512Mi`)."""
    match = re.fullmatch(r"\s*(\d+)\s*([bkmgt]?)b?\s*", str(size).lower())
    if not match:
        raise TritongenError(f"--shm-size '{size}' is not a size", "e.g. --shm-size 1g or 512m")
    number, unit = int(match.group(1)), match.group(2)
    if number <= 0:
        raise TritongenError(f"--shm-size '{size}' must be larger than 0", "e.g. --shm-size 1g")
    return f"{number}{_UNITS[unit]}"


def mebibytes(q: str) -> int:
    """A Kubernetes quantity we wrote (plain bytes, Ki, Mi, Gi, Ti) in MiB, rounded up."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", q)
    if not match:
        raise TritongenError(f"'{q}' is not a memory quantity", "e.g. 2Gi or 512Mi")
    factor = {None: 1 / 2**20, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 2**20}[match.group(2)]
    return math.ceil(int(match.group(1)) * factor)


def model_bytes(repository: Path) -> int:
    """Bytes of the files Triton loads: everything in the repository except tritongen's own records."""
    return sum(p.stat().st_size for p in Path(repository).rglob("*")
               if p.is_file() and "tritongen" not in p.relative_to(repository).parts)


def instance_count(repository: Path, needs: RepositoryNeeds) -> int:
    """Model instances the server runs: each python-backend instance is a process of its own."""
    from tritongen.config import read_config

    total = 0
    for m in needs.models:
        if m.backend == "ensemble":
            continue  # run by the server core: no instance of its own
        groups = read_config(Path(repository) / m.name).instance_group
        total += sum(g.count or 1 for g in groups) if groups else 1
    return total


def triton_pod(repository: Path, needs: RepositoryNeeds, image: ImageChoice, source: ModelSource, *,
               kserve: bool = False, shm_size: str | None = None, cpu: str | None = None, memory: str | None = None,
               plan: CapacityPlan | None = None) -> TritonPod:
    """Everything the pod templates need, derived from the repository and the options (None: the default)."""
    if kserve:
        location = KSERVE_MOUNT  # KServe's storage initializer (or modelcar) puts the repository there
        extra = [f"--{name}-port={port}" for name, port in KSERVE_PORTS.items()]
    else:
        location = source.location if source.object_store else CONTAINER_REPOSITORY
        extra = []
    args = triton_args(location, extra, cache=needs.cache)
    shm = quantity(shm_size or SHM_SIZE)
    instances = instance_count(repository, needs)
    size_mi = round(model_bytes(repository) / 2**20)
    estimate_mi = SERVER_MEMORY_MI + INSTANCE_MEMORY_MI * instances + 2 * size_mi
    if cpu is not None and not re.fullmatch(r"\d+(\.\d+)?|\d+m", cpu):
        raise TritongenError(f"--cpu '{cpu}' is not a CPU quantity", "e.g. --cpu 2, --cpu 1.5 or --cpu 500m")
    request_mi = mebibytes(memory) if memory else 64 * math.ceil(estimate_mi / 64)
    estimate = (f"{SERVER_MEMORY_MI} MiB server + {INSTANCE_MEMORY_MI} MiB x {instances} model instance(s) + 2 x "
                f"{size_mi} MiB of model files")
    exit_timeout = exit_timeout_of(args)
    notes = []
    if not image.kind == "slim":
        notes.append("the root filesystem stays writable: a read-only one was checked here with tritongen's slim "
                     f"image only, not with {image.ref}")
    return TritonPod(
        image=image, args=tuple(args), ports=ports_of(args), exit_timeout_s=exit_timeout,
        grace_s=PRESTOP_SLEEP_S + exit_timeout + GRACE_MARGIN_S, shm=shm,
        cpu=cpu or (str(plan.cpus) if plan else DEFAULT_CPU), memory=memory or f"{request_mi}Mi",
        memory_limit=f"{request_mi + mebibytes(shm)}Mi", gpu=needs.gpu, read_only_root=image.kind == "slim",
        python_models=tuple(m.name for m in needs.models if m.backend == "python"),
        writable=() if (kserve or source.object_store) else tuple(sorted({p for m in needs.models for p in m.writable})),
        estimate="set with --memory" if memory else estimate, notes=tuple(notes))
