"""Deployments of a model repository: what it needs of a server, Triton's command line, the Compose folder with its
monitoring files, and the images. Kubernetes and KServe are rendered by `tritongen.kube` from the same parts.

| module | holds |
| --- | --- |
| `needs.py` | `needs_of_repository` (backends, GPUs, response cache, the models' Python requirements), `choose_image` |
| `command.py` | `triton_args`: the one tritonserver command line (metrics, cache, explicit mode with the restricted API) |
| `compose.py` | `write_deploy`: docker-compose.yml, .env, README.md, and the files below |
| `slim.py` | the slim image's Dockerfile and pins, the Dockerfile derived from NVIDIA's image |
| `metrics.py`, `monitoring.py`, `dashboard.py` | Triton's metric names; Prometheus config, alerts and their tests; Grafana |
"""

from tritongen.deploy.command import CONTAINER_REPOSITORY, PORTS
from tritongen.deploy.compose import (
    DEPLOY_FILES,
    SHM_SIZE,
    check_deploy_writable,
    default_deploy_dir,
    render_template,
    write_deploy,
)
from tritongen.deploy.needs import (
    NVIDIA_IMAGE,
    NVIDIA_RELEASE,
    SLIM_BACKENDS,
    SLIM_IMAGE,
    TRITON_VERSION,
    ImageChoice,
    ModelNeeds,
    RepositoryNeeds,
    choose_image,
    needs_of_repository,
)
from tritongen.deploy.slim import DEFAULT_BASE_IMAGE, NVIDIA_PYTRITON_VERSION, image_files, slim_requirements

__all__ = ["CONTAINER_REPOSITORY", "DEFAULT_BASE_IMAGE", "DEPLOY_FILES", "NVIDIA_IMAGE", "NVIDIA_PYTRITON_VERSION",
           "NVIDIA_RELEASE", "PORTS", "SHM_SIZE", "SLIM_BACKENDS", "SLIM_IMAGE", "TRITON_VERSION", "ImageChoice",
           "ModelNeeds", "RepositoryNeeds", "check_deploy_writable", "choose_image", "default_deploy_dir",
           "image_files", "needs_of_repository", "render_template", "slim_requirements", "write_deploy"]
