"""The images a deployment runs its python-backend models on: the slim CPU image's build files, and the image derived
from NVIDIA's that adds the packages the models import. Both install the same pinned requirements: what tritongen's
python format needs (onnxruntime, numpy) and every served version's `python_requirements`."""

from __future__ import annotations

import re
from pathlib import Path

from tritongen import __version__
from tritongen.deploy.command import CONTAINER_REPOSITORY, EXIT_TIMEOUT_S, metrics_args
from tritongen.deploy.needs import (
    NVIDIA_IMAGE,
    NVIDIA_RELEASE,
    SLIM_BACKENDS,
    SLIM_IMAGE,
    TRITON_VERSION,
    ImageChoice,
    RepositoryNeeds,
)
from tritongen.errors import TritongenError
from tritongen.pins import pinned

# A normal public image, so a user's `docker build` works without NVIDIA's registry.
DEFAULT_BASE_IMAGE = "python:3.11-slim"
# Pins for the slim image. nvidia-pytriton is installed without its dependencies: the image needs only
# its tritonserver binary and python backend, not its Python client API (grpcio, tritonclient, ...).
NVIDIA_PYTRITON_VERSION = "0.7.0"
# The slim image runs as this user and group (NVIDIA's image has its triton-server user at 1000 too); it works
# under any other uid as well (`user:` in compose, runAsUser in Kubernetes).
RUN_AS = 1000
NVIDIA_DOCKERFILE = "Dockerfile.nvidia"
NVIDIA_REQUIREMENTS = "requirements-nvidia.txt"


def slim_requirements() -> tuple[list[str], list[str]]:
    """Pins for the slim image: (server: installed without dependencies, runtime: what model.py imports).

    The runtime pins follow the versions installed here, so the image runs the onnxruntime that
    `build` verified parity with.
    """
    server = [f"nvidia-pytriton=={NVIDIA_PYTRITON_VERSION}"]
    return server, [pinned("onnxruntime"), pinned("numpy")]


def model_requirements(needs: RepositoryNeeds | None, base: list[str]) -> list[str]:
    """`base` and every python-backend model's `python_requirements`, merged into one pin per package.

    Two specifiers of one package are kept together when a version satisfies both (`numpy==1.26.4` and `numpy<2`
    give `numpy==1.26.4`); two models pinning different versions of one package are an error, since one image
    cannot hold both.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    merged: dict[str, tuple[Requirement, str]] = {}
    sources = [(r, "tritongen's python format") for r in base]
    for model in needs.models if needs is not None else ():
        sources += [(r, f"model '{model.name}'") for r in model.python_requirements]
    for text, origin in sources:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise TritongenError(f"{origin} lists the Python requirement '{text}', which pip cannot read ({exc})",
                                 "fix `python_requirements` in its manifest, e.g. tokenizers==0.22.1") from exc
        key = canonicalize_name(requirement.name)
        if key not in merged:
            merged[key] = (requirement, origin)
            continue
        kept, kept_origin = merged[key]
        combined = kept.specifier & requirement.specifier
        pins = [s.version for s in combined if s.operator == "=="]
        if len(set(pins)) > 1 or (pins and not combined.contains(pins[0], prereleases=True)):
            raise TritongenError(f"{kept_origin} needs {kept} but {origin} needs {requirement}: one image cannot "
                                 "hold both", "rebuild one of them against the same version of "
                                 f"{requirement.name}, or deploy them separately")
        kept.specifier = combined
        merged[key] = (kept, kept_origin)
    return [_pinned_text(req) for req, _ in merged.values()]


def _pinned_text(requirement: object) -> str:
    """`name==V` when a pin satisfies every specifier, else the specifiers joined."""
    specifier = requirement.specifier  # type: ignore[attr-defined]
    pins = [s for s in specifier if s.operator == "=="]
    name = requirement.name  # type: ignore[attr-defined]
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""  # type: ignore[attr-defined]
    return f"{name}{extras}=={pins[0].version}" if pins else f"{name}{extras}{specifier}"


def image_context(needs: RepositoryNeeds | None = None) -> dict[str, object]:
    """What the image templates (Dockerfile, requirements, the derived NVIDIA Dockerfile) are rendered with."""
    server_reqs, base = slim_requirements()
    return {
        "tritongen_version": __version__,
        "container_repository": CONTAINER_REPOSITORY,
        "slim_image": SLIM_IMAGE,
        "nvidia_image": NVIDIA_IMAGE,
        "triton_version": TRITON_VERSION,
        # Read back by `serve(server="docker", image=...)` (server.docker.image_backends): an image built from these
        # files under any tag is known to serve ONNX models only through the python runner.
        "backends": sorted(SLIM_BACKENDS),
        "nvidia_release": NVIDIA_RELEASE,
        "base_image": DEFAULT_BASE_IMAGE,
        "server_requirements": server_reqs,
        "runtime_requirements": model_requirements(needs, base),
        "run_as": RUN_AS,
        "default_command": ["tritonserver", f"--model-repository={CONTAINER_REPOSITORY}", "--model-control-mode=none",
                            "--disable-auto-complete-config", f"--exit-timeout-secs={EXIT_TIMEOUT_S}", *metrics_args()],
    }


def image_files(needs: RepositoryNeeds | None = None) -> dict[str, str]:
    """The slim image's build files (Dockerfile and the pins it installs), by file name; with `needs`, the pins
    include what the repository's python-backend models import."""
    from tritongen.render import render

    context = image_context(needs)
    return {
        "Dockerfile": render("Dockerfile.j2", context),
        "requirements.txt": render("deploy_requirements.txt.j2", context),
        "requirements-server.txt": render("deploy_requirements-server.txt.j2", context),
    }


def derived_image(needs: RepositoryNeeds, choice: ImageChoice, repository: Path) -> str | None:
    """The image a deployment runs in place of NVIDIA's when python-backend models import packages NVIDIA's image
    lacks (onnxruntime, tokenizers, Pillow): `tritongen/<project>-triton:<release>` (the project: the folder holding
    the repository), built from Dockerfile.nvidia. None where the chosen image serves as it is. The one rule, and the
    one name, for compose, Kubernetes and KServe."""
    if choice.kind == "nvidia" and needs.python_models:
        return f"tritongen/{slug(Path(repository).resolve().parent.name)}-triton:{NVIDIA_RELEASE}"
    return None


def slug(name: str) -> str:
    """A name for images and Compose projects: lowercase letters, digits, '-' and '_', starting with a letter or
    digit ("model" when nothing is left)."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_") or "model"


def build_files(needs: RepositoryNeeds, choice: ImageChoice, repository: Path) -> dict[str, str]:
    """The files that build the image a deployment runs, by file name: the slim image's (Dockerfile and pins), or the
    derived NVIDIA Dockerfile and its pins where `derived_image` says one is run; none for an image used as it is."""
    if derived_image(needs, choice, repository):
        return nvidia_files(needs)
    return image_files(needs) if choice.kind == "slim" else {}


def nvidia_files(needs: RepositoryNeeds) -> dict[str, str]:
    """The Dockerfile deriving from NVIDIA's image that installs what the python-backend models import (pinned),
    with onnxruntime's GPU build where a model runs on a GPU."""
    from tritongen.render import render

    _, base = slim_requirements()
    if needs.gpu:
        base = [pinned("onnxruntime", "onnxruntime-gpu") if r.startswith("onnxruntime") else r for r in base]
    context = {**image_context(needs), "runtime_requirements": model_requirements(needs, base),
               "python_models": list(needs.python_models)}
    return {NVIDIA_DOCKERFILE: render("Dockerfile.nvidia.j2", context),
            NVIDIA_REQUIREMENTS: render("deploy_requirements-nvidia.txt.j2", context)}
