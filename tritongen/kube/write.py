"""Model repository to a Kubernetes deployment: a kustomize base (deploy/kubernetes/) or a KServe one (deploy/kserve/).

Rendered from templates/kubernetes/ and templates/kserve/ with the same image, command line and /dev/shm as the
compose deployment. A file changed by hand since tritongen wrote it is kept as `<file>.bak-<timestamp>` before
it is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from tritongen import __version__
from tritongen.deploy import (
    CONTAINER_REPOSITORY,
    NVIDIA_IMAGE,
    TRITON_VERSION,
    ImageChoice,
    choose_image,
    default_deploy_dir,
    needs_of_repository,
    render_template,
)
from tritongen.deploy.slim import NVIDIA_DOCKERFILE, build_files, derived_image
from tritongen.errors import TritongenError
from tritongen.kube import metrics, pod
from tritongen.kube.plan import CapacityPlan
from tritongen.kube.source import GCS_KEY, GCS_MOUNT, S3_KEYS, S3_OPTIONAL_KEYS, ModelSource, check_name, name_from, parse_source
from tritongen.repository import backup_path, write_text_atomic

TARGETS = ("compose", "kubernetes", "kserve")
PLAN_FILE = "capacity-plan.json"
RECORD_FILE = ".tritongen-files.json"  # sha256 of every file as last written: tells a hand edit from our own output
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
# Without a capacity plan: not a measurement. Requests waiting 20 ms on average in the queue is load to scale out for
# on most models; `tritongen plan` replaces it with the queue time measured at the planned load.
DEFAULT_QUEUE_TARGET_US = 20_000
DEFAULT_MAX_REPLICAS = 4

IMAGE_DIR = "image"  # the image's build files, beside the manifests
KUBERNETES_FILES = ("kustomization.yaml", "deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml",
                    "prometheus-adapter-values.yaml", "components/keda/kustomization.yaml",
                    "components/keda/scaledobject.yaml", "components/pod-monitor/kustomization.yaml",
                    "components/pod-monitor/podmonitor.yaml", "components/service-monitor/kustomization.yaml",
                    "components/service-monitor/servicemonitor.yaml", "README.md")


@dataclass(frozen=True)
class KubeOptions:
    """What `tritongen deploy --target kubernetes|kserve` takes; None means the default, resolved here."""

    name: str | None = None  # Deployment/Service (or InferenceService) name: triton-<model> by default
    image: str | None = None  # as for compose: auto, slim, nvidia or an image reference
    models_from: str | None = None  # tritongen.kube.source forms; default pvc:<name>-models
    credentials_secret: str | None = None
    shm_size: str | None = None
    namespace: str | None = None
    prometheus_url: str | None = None  # where KEDA (or KServe's KEDA) queries Prometheus
    cpu: str | None = None
    memory: str | None = None
    plan: CapacityPlan | None = None  # None: the capacity-plan.json in the output folder, if there is one


# Options a deployment folder remembers: `tritongen plan` and a later `deploy` re-render with them.
_RECORDED = tuple(f.name for f in fields(KubeOptions) if f.name != "plan")


@dataclass(frozen=True)
class Scaling:
    replicas: int
    min_replicas: int
    max_replicas: int
    queue_target_us: float
    planned: bool


@dataclass(frozen=True)
class DeployResult:
    target: str
    folder: Path
    files: tuple[Path, ...]
    backups: tuple[Path, ...]
    image: ImageChoice | None = None
    source: ModelSource | None = None
    name: str | None = None
    scaling: Scaling | None = None
    plan: CapacityPlan | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, "target": self.target, "folder": str(self.folder), "files": [str(f) for f in self.files],
                "backups": [str(b) for b in self.backups], "name": self.name,
                "image": None if self.image is None else {"ref": self.image.ref, "kind": self.image.kind,
                                                          "reason": self.image.reason},
                "models_from": None if self.source is None else self.source.describe(),
                "scaling": None if self.scaling is None else self.scaling.__dict__,
                "plan": None if self.plan is None else self.plan.to_dict()}


def default_output(repository: Path, target: str) -> Path:
    base = default_deploy_dir(Path(repository).resolve())
    return base if target == "compose" else base / target


def write_target(repository: Path, target: str, output: Path | None = None, options: KubeOptions | None = None,
                 **compose: Any) -> DeployResult:
    """Write the `target` deployment of every model in `repository` into `output` (None: deploy/[target]/ beside it)."""
    if target not in TARGETS:
        raise TritongenError(f"unknown deployment target '{target}'", f"use one of {', '.join(TARGETS)}")
    repository = Path(repository).resolve()
    folder = Path(output).resolve() if output is not None else default_output(repository, target)
    options = options or KubeOptions()
    if target == "compose":
        from tritongen.deploy import write_deploy

        extra = [f"--{f.replace('_', '-')}" for f in _RECORDED if f not in ("image", "shm_size") and getattr(options, f)]
        if extra or options.plan is not None:
            raise TritongenError(f"{', '.join(extra) or '--plan'} only apply to --target kubernetes or kserve",
                                 "drop them, or pass --target kubernetes")
        files = write_deploy(repository, folder, image=options.image, shm_size=options.shm_size, **compose)
        return DeployResult(target, folder, tuple(files), ())
    options = recorded_options(folder, options)
    plan = options.plan or read_plan(folder)
    context = _context(repository, options, plan, kserve=target == "kserve")
    rendered = _render_kubernetes(context) if target == "kubernetes" else _render_kserve(context)
    if plan is not None:
        rendered[PLAN_FILE] = json.dumps(plan.to_dict(), indent=2) + "\n"
    written, backups = write_files(folder, rendered, {f: getattr(options, f) for f in _RECORDED})
    return DeployResult(target, folder, tuple(written), tuple(backups), context["pod"].image, context["source"],
                        context["name"], context["scaling"], plan)


def write_plan(repository: Path, plan: CapacityPlan, targets: tuple[str, ...] = ()) -> list[DeployResult]:
    """Re-render the Kubernetes deployments beside `repository` with `plan`'s numbers.

    `targets` empty: the ones already written there (deploy/kubernetes/, deploy/kserve/), else kubernetes.
    """
    if not targets:
        targets = tuple(t for t in TARGETS[1:] if (default_output(repository, t) / RECORD_FILE).is_file()) or ("kubernetes",)
    return [write_target(repository, t, None, KubeOptions(plan=plan)) for t in targets]


def recorded_options(folder: Path, given: KubeOptions) -> KubeOptions:
    """`given`, with each option it leaves at None taken from the last write of `folder` (so `plan` keeps them)."""
    recorded = _record(folder).get("options", {})
    values = {f: getattr(given, f) if getattr(given, f) is not None else recorded.get(f) for f in _RECORDED}
    return replace(given, **values)


def read_plan(path: Path, required: bool = False) -> CapacityPlan | None:
    """The capacity plan in `path` (a capacity-plan.json, or a deployment folder holding one; None if it has none)."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / PLAN_FILE
    if not path.is_file():
        if required:
            raise TritongenError(f"no capacity plan at {path}", "write one with `tritongen plan MODEL --rate R --p99-ms L`")
        return None
    try:
        return CapacityPlan.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise TritongenError(f"{path} is not a capacity plan written by tritongen ({exc})",
                             "delete it, or write a new one with `tritongen plan`") from exc


def scaling_for(plan: CapacityPlan | None) -> Scaling:
    if plan is None:
        return Scaling(1, 1, DEFAULT_MAX_REPLICAS, DEFAULT_QUEUE_TARGET_US, planned=False)
    return Scaling(plan.replicas, plan.min_replicas, plan.max_replicas, plan.queue_target_us, planned=True)


def pod_selector(name: str, namespace: str | None, kserve: bool = False, model: str | None = None) -> str:
    """PromQL label matchers for the pods of this deployment (Deployment pods: NAME-<hash>-<5 characters>), and for
    one model's series when `model` is given."""
    deployment = f"{name}-predictor" if kserve else name  # KServe names its Deployment <isvc>-predictor
    selector = f'pod=~"{deployment}-[a-z0-9]+-[a-z0-9]{{5}}"'
    selector += f',namespace="{namespace}"' if namespace else ""
    return selector + (f',model="{model}"' if model else "")


def _context(repository: Path, options: KubeOptions, plan: CapacityPlan | None, kserve: bool) -> dict[str, Any]:
    needs = needs_of_repository(repository)
    default = needs.models[0].name if len(needs.models) == 1 else (repository.parent.name or repository.name)
    name = check_name(options.name) if options.name else name_from(default)
    if options.namespace:
        check_name(options.namespace, "--namespace")
    source = parse_source(options.models_from, name, options.credentials_secret)
    image = choose_image(needs, options.image)
    derived = derived_image(needs, image, repository)
    build = build_files(needs, image, repository)
    if derived:
        steps = ", ".join(needs.python_models)
        image = replace(image, ref=derived, reason=f"{image.reason}; with the packages of the python-backend models "
                                                   f"({steps}), built from {IMAGE_DIR}/{NVIDIA_DOCKERFILE}")
    triton = pod.triton_pod(repository, needs, image, source, kserve=kserve, shm_size=options.shm_size,
                            cpu=options.cpu, memory=options.memory, plan=plan)
    if plan is not None and plan.model not in {m.name for m in needs.models}:
        raise TritongenError(f"the capacity plan is for model '{plan.model}', which is not in {repository}",
                             "plan one of its models with `tritongen plan MODEL`, or pass the right repository")
    # With a plan, autoscaling reads the planned model's series only: in a pipeline or a multi-model repository the
    # other models' requests would count too, and the plan's numbers are that model's.
    selector = pod_selector(name, options.namespace, kserve, plan.model if plan else None)
    queries = {"queue_query": metrics.queue_time_per_request(selector), "rate_query": metrics.request_rate(selector)}
    copy_mi = max(1024, 2 * math.ceil(pod.model_bytes(repository) / 2**20))
    return {
        "tritongen_version": __version__, "repository": str(repository), "needs": needs, "name": name,
        "namespace": options.namespace, "source": source, "pod": triton, "plan": plan, "scaling": scaling_for(plan),
        "replicas": scaling_for(plan).replicas, "run_as": pod.RUN_AS, "container_repository": CONTAINER_REPOSITORY,
        "kserve_mount": pod.KSERVE_MOUNT, "health_ready": pod.HEALTH_READY, "health_live": pod.HEALTH_LIVE,
        "s3_keys": S3_KEYS, "s3_optional_keys": S3_OPTIONAL_KEYS, "gcs_key": GCS_KEY, "gcs_mount": GCS_MOUNT,
        "repository_copy_size": f"{copy_mi}Mi", "prometheus_url": options.prometheus_url or DEFAULT_PROMETHEUS_URL,
        "keda": queries, "kserve": queries, "rule": metrics.adapter_rule(), "hpa_metric": metrics.HPA_METRIC,
        "queue_metric": metrics.QUEUE_DURATION, "success_metric": metrics.REQUEST_SUCCESS,
        "rate_window": metrics.RATE_WINDOW, "scrape_interval": metrics.SCRAPE_INTERVAL,
        "runtime_name": f"{name}-triton", "service_account": f"{name}-storage",
        "image_dir": IMAGE_DIR, "image_files": build, "derived_image": derived, "nvidia_dockerfile": NVIDIA_DOCKERFILE,
        "nvidia_image": NVIDIA_IMAGE, "triton_version": TRITON_VERSION,
    }


def _render_kubernetes(context: dict[str, Any]) -> dict[str, str]:
    return {**{path: render_template(f"kubernetes/{path}.j2", context) for path in KUBERNETES_FILES},
            **_image_build_files(context)}


def _render_kserve(context: dict[str, Any]) -> dict[str, str]:
    files = ["kustomization.yaml", "servingruntime.yaml", "inferenceservice.yaml", "README.md"]
    if context["source"].secret:
        files.append("serviceaccount.yaml")
    return {**{path: render_template(f"kserve/{path}.j2", context) for path in files}, **_image_build_files(context)}


def _image_build_files(context: dict[str, Any]) -> dict[str, str]:
    """The files that build the image the pods run (none for NVIDIA's or a user's image as it is): no registry has
    the slim image or the one derived from NVIDIA's, so the README says how to build and push it."""
    return {f"{IMAGE_DIR}/{name}": text for name, text in context["image_files"].items()}


def _record(folder: Path) -> dict[str, Any]:
    path = Path(folder) / RECORD_FILE
    try:
        record = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_files(folder: Path, files: dict[str, str], options: dict[str, Any] | None = None) -> tuple[list[Path], list[Path]]:
    """Write `files` (relative path -> text) atomically; first back up any that was changed since we wrote it."""
    folder.mkdir(parents=True, exist_ok=True)
    record = _record(folder)
    hashes: dict[str, str] = dict(record.get("files", {}))
    written, backups = [], []
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            current = _sha256(path.read_bytes())
            if current != hashes.get(relative) and current != _sha256(text.encode()):
                backup = backup_path(path)
                shutil.copy2(path, backup)
                backups.append(backup)
        write_text_atomic(path, text)
        hashes[relative] = _sha256(text.encode())
        written.append(path)
    record = {"tritongen": __version__, "files": hashes, "options": options or record.get("options", {})}
    write_text_atomic(folder / RECORD_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return written, backups


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
