"""Model repository to a deployment folder: docker-compose.yml, a slim-image Dockerfile, a README.

What the deployment needs is read from the repository's own config.pbtxt files (parsed with Triton's
schema), so the deploy folder always matches what is actually in the repository.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tritongen import __version__
from tritongen.errors import TritongenError
from tritongen.repository import write_text_atomic

# The Triton release inside nvidia-pytriton 0.7.0 is 2.51.0, which NVIDIA ships as container release 24.10.
# Defaulting the NVIDIA image to the same release means the deployment runs the server version that
# `validate` checked the repository against.
TRITON_VERSION = "2.51.0"
NVIDIA_RELEASE = "24.10"
NVIDIA_IMAGE = f"nvcr.io/nvidia/tritonserver:{NVIDIA_RELEASE}-py3"
SLIM_IMAGE = f"tritongen/tritonserver-slim:{TRITON_VERSION}"
# A normal public image, so a user's `docker build` works without NVIDIA's registry.
DEFAULT_BASE_IMAGE = "python:3.11-slim"

# The slim image has the python backend only (all that nvidia-pytriton ships) and no CUDA; ensembles are
# run by the server core, not by a backend.
SLIM_BACKENDS = frozenset({"python", "ensemble"})

# Pins for the slim image. nvidia-pytriton is installed without its dependencies: the image needs only
# its tritonserver binary and python backend, not its Python client API (grpcio, tritonclient, ...).
NVIDIA_PYTRITON_VERSION = "0.7.0"
# The python backend stub of Triton 2.51 predates NumPy 2, and nvidia-pytriton itself requires numpy<2.
_NUMPY_FALLBACK = "numpy<2"

SHM_SIZE = "1g"  # an upper bound on /dev/shm, not an allocation: the python backend moves tensors through it
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
CONTAINER_REPOSITORY = "/models"

_DEPLOY_HINT = "make it writable, or pass --no-deploy to build without deployment files"
DEPLOY_FILES = ("docker-compose.yml", ".env", "Dockerfile", "requirements.txt", "requirements-server.txt", "README.md")


@dataclass(frozen=True)
class ModelNeeds:
    """What one model in the repository asks of the server."""

    name: str
    backend: str  # "python", "onnxruntime", "tensorrt", ...
    gpu: bool
    # Paths under the repository the server must write: ORT's TensorRT engine cache, so engines survive restarts.
    writable: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepositoryNeeds:
    models: tuple[ModelNeeds, ...]

    @property
    def gpu(self) -> bool:
        return any(m.gpu for m in self.models)

    @property
    def backends(self) -> frozenset[str]:
        return frozenset(m.backend for m in self.models)

    def slim_blockers(self) -> list[str]:
        """Why the slim CPU image cannot serve this repository, one reason per model; empty when it can."""
        reasons = []
        for m in self.models:
            if m.backend not in SLIM_BACKENDS:
                reasons.append(f"model '{m.name}' uses the {m.backend} backend, which the slim image lacks")
            elif m.gpu:
                reasons.append(f"model '{m.name}' asks for a GPU (KIND_GPU), and the slim image is CPU-only")
        return reasons


@dataclass(frozen=True)
class ImageChoice:
    """The image a deployment runs, and why it was chosen (the README and `validate` report say so)."""

    ref: str
    kind: str  # "slim", "nvidia" or "custom"
    reason: str


def needs_of_repository(repository: Path) -> RepositoryNeeds:
    """Read every `<model>/config.pbtxt` under `repository` and say which backends and devices it needs."""
    from tritonclient.grpc import model_config_pb2

    from tritongen.repository import model_dirs
    from tritongen.server.stage import backend_of

    repository = Path(repository)
    if not repository.is_dir():
        raise TritongenError(
            f"model repository {repository} does not exist", "run `tritongen build` first, or pass the right path"
        )
    models = []
    for model in model_dirs(repository):
        config = model.config
        backend = backend_of(config)
        kinds = [g.kind for g in config.instance_group]
        # TensorRT plans always run on a GPU, whatever the instance group says.
        gpu = backend == "tensorrt" or model_config_pb2.ModelInstanceGroup.KIND_GPU in kinds
        models.append(ModelNeeds(name=config.name or model.name, backend=backend, gpu=gpu,
                                 writable=_writable_paths(config)))
    if not models:
        raise TritongenError(
            f"model repository {repository} holds no model (no <model>/config.pbtxt)",
            "run `tritongen build` first, or pass the right path",
        )
    return RepositoryNeeds(tuple(models))


def _writable_paths(config: object) -> tuple[str, ...]:
    """Engine cache directories inside the repository that an execution accelerator writes to."""
    accelerators = config.optimization.execution_accelerators  # type: ignore[attr-defined]
    paths = {value for acc in accelerators.gpu_execution_accelerator for key, value in acc.parameters.items()
             if key in ("trt_engine_cache_path", "trt_timing_cache_path")}
    prefix = CONTAINER_REPOSITORY + "/"
    return tuple(sorted(p[len(prefix):].strip("/") for p in paths if p.startswith(prefix)))


def choose_image(needs: RepositoryNeeds, image: str | None = None) -> ImageChoice:
    """Resolve `image` ("auto"/None, "slim", "nvidia", or an image reference) for this repository."""
    blockers = needs.slim_blockers()
    if image in (None, "", "auto"):
        if not blockers:
            return ImageChoice(SLIM_IMAGE, "slim", "every model uses the python backend on CPU")
        return ImageChoice(NVIDIA_IMAGE, "nvidia", "; ".join(blockers))
    if image == "slim":
        if blockers:
            raise TritongenError(
                "the slim CPU image cannot serve this repository: " + "; ".join(blockers),
                "rebuild with `tritongen build --format python` (CPU), or choose `--image nvidia`",
            )
        return ImageChoice(SLIM_IMAGE, "slim", "chosen explicitly")
    if image == "nvidia":
        return ImageChoice(NVIDIA_IMAGE, "nvidia", "chosen explicitly")
    if image == SLIM_IMAGE:
        return ImageChoice(image, "slim", "chosen explicitly")
    return ImageChoice(image, "custom", "chosen explicitly")


def slim_requirements() -> tuple[list[str], list[str]]:
    """Pins for the slim image: (server: installed without dependencies, runtime: what model.py imports).

    The runtime pins follow the versions installed here, so the image runs the onnxruntime that
    `build` verified parity with.
    """
    server = [f"nvidia-pytriton=={NVIDIA_PYTRITON_VERSION}"]
    runtime = []
    try:
        runtime.append(f"onnxruntime=={metadata.version('onnxruntime')}")
    except metadata.PackageNotFoundError:
        runtime.append("onnxruntime")
    try:
        numpy_version = metadata.version("numpy")
        runtime.append(f"numpy=={numpy_version}" if int(numpy_version.split(".")[0]) < 2 else _NUMPY_FALLBACK)
    except (metadata.PackageNotFoundError, ValueError):
        runtime.append(_NUMPY_FALLBACK)
    return server, runtime


def default_deploy_dir(repository: Path) -> Path:
    return Path(repository).parent / "deploy"


def write_deploy(
    repository: Path,
    deploy_dir: Path | None = None,
    *,
    image: str | None = None,
    public: bool = False,
    shm_size: str | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    project_name: str | None = None,
) -> list[Path]:
    """Write (or refresh) the deployment folder for `repository` and return the files written.

    `image`: None or "auto" picks the slim image when it can serve every model and NVIDIA's image
    otherwise; "slim", "nvidia" or any image reference chooses explicitly. `public` binds the ports
    on all interfaces instead of 127.0.0.1.
    """
    repository = Path(repository).resolve()
    deploy_dir = Path(deploy_dir).resolve() if deploy_dir is not None else default_deploy_dir(repository)
    needs = needs_of_repository(repository)
    choice = choose_image(needs, image)
    ports = {
        "http": http_port if http_port is not None else PORTS["http"],
        "grpc": grpc_port if grpc_port is not None else PORTS["grpc"],
        "metrics": metrics_port if metrics_port is not None else PORTS["metrics"],
    }
    context = {
        **_image_context(),
        "repository": str(repository),
        "repository_mount": _mount_source(repository, deploy_dir),
        "image": choice,
        "needs": needs,
        "gpu": needs.gpu,
        "python_models": [m.name for m in needs.models if m.backend == "python"],
        "writable": sorted({path for m in needs.models for path in m.writable}),
        "bind": "0.0.0.0" if public else "127.0.0.1",
        "public": public,
        "ports": ports,
        "shm_size": shm_size or SHM_SIZE,
        "project_name": project_name or _project_name(deploy_dir),
    }
    rendered = {
        "docker-compose.yml": render_template("docker-compose.yml.j2", context),
        ".env": render_template("deploy_env.j2", context),
        **image_files(),
        "README.md": render_template("deploy_README.md.j2", context),
    }
    check_deploy_writable(repository, deploy_dir)
    written = []
    try:
        deploy_dir.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            path = deploy_dir / name
            write_text_atomic(path, text)
            written.append(path)
    except OSError as exc:
        raise TritongenError(f"cannot write the deployment folder {deploy_dir}: {exc.strerror} ({exc.filename})",
                             _DEPLOY_HINT) from exc
    return written


def check_deploy_writable(repository: Path, deploy_dir: Path | None = None) -> None:
    """Fail in one line, before anything is written, when the deployment folder cannot be written."""
    from tritongen.repository import writable

    deploy_dir = Path(deploy_dir) if deploy_dir is not None else default_deploy_dir(Path(repository).resolve())
    existing = deploy_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise TritongenError(f"cannot write the deployment folder {deploy_dir}: {existing} is not a directory",
                             _DEPLOY_HINT)
    blocked = [deploy_dir / n for n in DEPLOY_FILES if (deploy_dir / n).is_dir()] if existing == deploy_dir else []
    if blocked:
        raise TritongenError(f"cannot write the deployment folder {deploy_dir}: {blocked[0]} is a directory",
                             _DEPLOY_HINT)
    if not writable(existing):
        where = "it is" if existing == deploy_dir else f"{existing} is"
        raise TritongenError(f"cannot write the deployment folder {deploy_dir}: {where} read-only", _DEPLOY_HINT)


def image_files() -> dict[str, str]:
    """The slim image's build files (Dockerfile and the pins it installs), by file name."""
    context = _image_context()
    return {
        "Dockerfile": render_template("Dockerfile.j2", context),
        "requirements.txt": render_template("deploy_requirements.txt.j2", context),
        "requirements-server.txt": render_template("deploy_requirements-server.txt.j2", context),
    }


def _image_context() -> dict[str, object]:
    server_reqs, runtime_reqs = slim_requirements()
    return {
        "tritongen_version": __version__,
        "container_repository": CONTAINER_REPOSITORY,
        "slim_image": SLIM_IMAGE,
        "nvidia_image": NVIDIA_IMAGE,
        "triton_version": TRITON_VERSION,
        "nvidia_release": NVIDIA_RELEASE,
        "base_image": DEFAULT_BASE_IMAGE,
        "server_requirements": server_reqs,
        "runtime_requirements": runtime_reqs,
    }


def render_template(name: str, context: dict[str, object]) -> str:
    """Render one of tritongen's templates; an undefined variable is an error, not an empty string."""
    from tritongen.render import render

    return render(name, dict(context))


def _mount_source(repository: Path, deploy_dir: Path) -> str:
    # Compose resolves a relative bind-mount source against the compose file's folder: a relative path
    # keeps the project movable as a whole (e.g. copied to a server with rsync).
    try:
        rel = os.path.relpath(repository, deploy_dir)
    except ValueError:  # different drives on Windows
        return str(repository)
    return rel if rel.startswith("..") or rel.startswith(".") else f"./{rel}"


def _project_name(deploy_dir: Path) -> str:
    # Without a name every deployment is project "deploy" (the folder's name), and `up` in one
    # project folder would replace the container started from another. Compose project names are
    # lowercase letters, digits, '-' and '_', starting with a letter or digit.
    base = deploy_dir.parent.name or "model"
    slug = re.sub(r"[^a-z0-9_-]+", "-", base.lower()).strip("-_") or "model"
    return f"tritongen-{slug}"
