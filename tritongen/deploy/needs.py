"""What a repository asks of the server that runs it: backends, devices, the response cache, the Python packages its
python-backend models import; and the image chosen from that.

Everything is read from the repository itself (config.pbtxt parsed with Triton's schema, each served version's
manifest), so a deployment always matches what the repository holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError

# The Triton release inside nvidia-pytriton 0.7.0 is 2.51.0, which NVIDIA ships as container release 24.10.
# Defaulting the NVIDIA image to the same release means the deployment runs the server version that
# `validate` checked the repository against.
TRITON_VERSION = "2.51.0"
NVIDIA_RELEASE = "24.10"
NVIDIA_IMAGE = f"nvcr.io/nvidia/tritonserver:{NVIDIA_RELEASE}-py3"
SLIM_IMAGE = f"tritongen/tritonserver-slim:{TRITON_VERSION}"

# The slim image has the python backend only (all that nvidia-pytriton ships) and no CUDA; ensembles are
# run by the server core, not by a backend.
SLIM_BACKENDS = frozenset({"python", "ensemble"})


@dataclass(frozen=True)
class ModelNeeds:
    """What one model in the repository asks of the server."""

    name: str
    backend: str  # "python", "onnxruntime", "tensorrt", ...
    gpu: bool
    # Paths under the repository the server must write: ORT's TensorRT engine cache, so engines survive restarts.
    writable: tuple[str, ...] = ()
    cache: bool = False  # response_cache { enable: true }: the server needs --cache-config
    # Pinned pip requirements its model.py imports at serve time (the manifests' `python_requirements`).
    python_requirements: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepositoryNeeds:
    models: tuple[ModelNeeds, ...]

    @property
    def gpu(self) -> bool:
        return any(m.gpu for m in self.models)

    @property
    def backends(self) -> frozenset[str]:
        return frozenset(m.backend for m in self.models)

    @property
    def cache(self) -> bool:
        return any(m.cache for m in self.models)

    @property
    def python_models(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models if m.backend == "python")

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
    """Read every `<model>/config.pbtxt` under `repository` and say what it needs of the server."""
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
                                 writable=_writable_paths(config), cache=config.response_cache.enable,
                                 python_requirements=_manifest_requirements(model, config)))
    if not models:
        raise TritongenError(
            f"model repository {repository} holds no model (no <model>/config.pbtxt)",
            "run `tritongen build` first, or pass the right path",
        )
    return RepositoryNeeds(tuple(models))


def _manifest_requirements(model: Any, config: Any) -> tuple[str, ...]:
    """The `python_requirements` of every version the config serves (a step model's tokenizers, pillow, ...)."""
    from tritongen.server.checks import served_versions

    found: list[str] = []
    for version in served_versions(model.path, config):
        try:
            manifest = model.manifest_of(version) or {}
        except TritongenError:
            continue  # no manifest: nothing recorded (validate says what is wrong with the version)
        for requirement in manifest.get("python_requirements") or ():
            if isinstance(requirement, str) and requirement.strip() and requirement not in found:
                found.append(requirement.strip())
    return tuple(found)


def _writable_paths(config: object) -> tuple[str, ...]:
    """Engine cache directories inside the repository that an execution accelerator writes to."""
    from tritongen.deploy.command import CONTAINER_REPOSITORY

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
