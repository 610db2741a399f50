"""Model repository to a Compose deployment folder: docker-compose.yml (Triton, and Prometheus and Grafana in the
`monitoring` profile), .env, the image build files, monitoring/, and a README whose every command a test runs."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from tritongen.deploy.command import (
    ADMIN_HEADER,
    ADMIN_KEY_VARIABLE,
    CACHE_SIZE_BYTES,
    CONTAINER_REPOSITORY,
    EXIT_TIMEOUT_S,
    PORTS,
    ControlOptions,
    triton_args,
)
from tritongen.deploy.monitoring import FILES as MONITORING_FILES
from tritongen.deploy.monitoring import FOLDER as MONITORING
from tritongen.deploy.monitoring import GRAFANA_IMAGE, GRAFANA_PORT, PROMETHEUS_IMAGE, PROMETHEUS_PORT, monitoring_files
from tritongen.deploy.needs import choose_image, needs_of_repository
from tritongen.deploy.slim import NVIDIA_DOCKERFILE, RUN_AS, build_files, derived_image, image_context, image_files, slug
from tritongen.errors import TritongenError
from tritongen.repository import write_text_atomic

SHM_SIZE = "1g"  # an upper bound on /dev/shm, not an allocation: the python backend moves tensors through it
# `docker compose down` sends SIGTERM, waits this long, then kills: longer than Triton's exit timeout, so requests in
# flight finish and models unload.
STOP_GRACE_S = EXIT_TIMEOUT_S + 10
# json-file log rotation: at most LOG_FILES x LOG_MAX_SIZE of server log per container.
LOG_MAX_SIZE = "50m"
LOG_FILES = 5
_DEPLOY_HINT = "make it writable, or pass --no-deploy to build without deployment files"
# Every file a deployment folder gets (Dockerfile.nvidia and its requirements too where NVIDIA's image serves
# python-backend models), by path under it.
DEPLOY_FILES = ("docker-compose.yml", ".env", "Dockerfile", "requirements.txt", "requirements-server.txt", "README.md",
                *(f"{MONITORING}/{path}" for path in MONITORING_FILES))
# Values in .env that tritongen generates once and keeps on every later write: changing them would lock out whoever
# holds them (the admin key) or the Grafana login.
_KEPT = (ADMIN_KEY_VARIABLE, "GRAFANA_ADMIN_PASSWORD")


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
    rollouts: bool | None = None,
    prometheus_port: int | None = None,
    grafana_port: int | None = None,
) -> list[Path]:
    """Write (or refresh) the deployment folder for `repository` and return the files written.

    `image`: None or "auto" picks the slim image when it can serve every model and NVIDIA's image
    otherwise; "slim", "nvidia" or any image reference chooses explicitly. `public` binds the ports
    on all interfaces instead of 127.0.0.1. `rollouts`: explicit model control with the model-repository API
    restricted to holders of the admin key in .env, so `tritongen rollout` can switch versions; False serves exactly
    the repository and nothing can load or unload models; None keeps what the folder has (False for a new one).
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
    project = project_name or _project_name(deploy_dir)
    if rollouts is None:
        rollouts = rollouts_enabled(deploy_dir)
    control = ControlOptions(rollouts=rollouts, key=f"${{{ADMIN_KEY_VARIABLE}:?set {ADMIN_KEY_VARIABLE} in .env}}")
    cache = f"${{TRITON_CACHE_SIZE:-{CACHE_SIZE_BYTES}}}" if needs.cache else False
    derived = derived_image(needs, choice, repository)
    context = {
        **image_context(needs),
        "repository": str(repository),
        "repository_mount": _mount_source(repository, deploy_dir),
        "image": choice,
        "derived_image": derived,
        "nvidia_dockerfile": NVIDIA_DOCKERFILE,
        "needs": needs,
        "gpu": needs.gpu,
        "python_models": list(needs.python_models),
        "writable": sorted({path for m in needs.models for path in m.writable}),
        "bind": "0.0.0.0" if public else "127.0.0.1",
        "public": public,
        "ports": ports,
        "shm_size": shm_size or SHM_SIZE,
        "project_name": project,
        "command": triton_args(CONTAINER_REPOSITORY, cache=cache, control=control),
        "rollouts": rollouts,
        "cache": needs.cache,
        "cache_size": CACHE_SIZE_BYTES,
        "admin_header": ADMIN_HEADER,
        "admin_key_variable": ADMIN_KEY_VARIABLE,
        "secrets": _kept_secrets(deploy_dir / ".env", rollouts),
        "stop_grace_s": STOP_GRACE_S,
        "exit_timeout_s": EXIT_TIMEOUT_S,
        "log_max_size": LOG_MAX_SIZE,
        "log_files": LOG_FILES,
        "run_as": RUN_AS,
        "monitoring": MONITORING,
        "prometheus_image": PROMETHEUS_IMAGE,
        "grafana_image": GRAFANA_IMAGE,
        "prometheus_port": prometheus_port or PROMETHEUS_PORT,
        "grafana_port": grafana_port or GRAFANA_PORT,
        "first_model": needs.models[0].name,
    }
    rendered = {
        "docker-compose.yml": render_template("docker-compose.yml.j2", context),
        ".env": render_template("deploy_env.j2", context),
        **image_files(needs),  # always: `--image slim` is a rebuild away
        **build_files(needs, choice, repository),
        **{f"{MONITORING}/{path}": text for path, text in monitoring_files(needs, repository).items()},
        "README.md": render_template("deploy_README.md.j2", context),
    }
    check_deploy_writable(repository, deploy_dir)
    written = []
    try:
        deploy_dir.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            path = deploy_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            # .env holds the admin key and the Grafana password: readable by its owner only.
            write_text_atomic(path, text, mode=0o600 if name == ".env" else 0o644)
            written.append(path)
    except OSError as exc:
        raise TritongenError(f"cannot write the deployment folder {deploy_dir}: {exc.strerror} ({exc.filename})",
                             _DEPLOY_HINT) from exc
    return written


def rollouts_enabled(deploy_dir: Path) -> bool:
    """Whether the deployment in `deploy_dir` was written with rollouts (its .env holds the admin key)."""
    return ADMIN_KEY_VARIABLE in read_env(Path(deploy_dir) / ".env")


def read_env(env_file: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose .env file (comments and blank lines skipped); {} when there is none."""
    values: dict[str, str] = {}
    if Path(env_file).is_file():
        for line in Path(env_file).read_text(errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.lstrip().startswith("#"):
                values[key.strip()] = value.strip()
    return values


def _kept_secrets(env_file: Path, rollouts: bool) -> dict[str, str]:
    """The generated values of .env: those an earlier write made (kept), else new random ones."""
    existing = {key: value for key, value in read_env(env_file).items()
                if key in _KEPT and re.fullmatch(r"[A-Za-z0-9_\-]{16,}", value)}
    wanted = ("GRAFANA_ADMIN_PASSWORD", *((ADMIN_KEY_VARIABLE,) if rollouts else ()))
    return {key: existing.get(key) or secrets.token_urlsafe(24) for key in wanted}


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
    # Without a name every deployment is project "deploy" (the folder's name), and `up` in one project folder
    # would replace the container started from another.
    return f"tritongen-{slug(deploy_dir.parent.name)}"
