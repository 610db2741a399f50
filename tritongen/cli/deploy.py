"""`tritongen deploy`: argument handling and printing around tritongen.kube.write_target."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tritongen.cli import main
from tritongen.cli.common import common_options, emit_json, stderr_console, stdout_console

if TYPE_CHECKING:
    from tritongen.kube import DeployResult


@main.command("deploy")
@click.argument("repository", type=click.Path(path_type=Path), default=Path("model_repository"), required=False)
@click.option("--target", type=click.Choice(["compose", "kubernetes", "kserve"]), default="compose", show_default=True,
              help="compose: docker-compose.yml and the slim image's Dockerfile; kubernetes: a kustomize base; "
                   "kserve: a KServe InferenceService.")
@click.option("--output", type=click.Path(path_type=Path), metavar="DIR",
              help="Folder to write (default: deploy/ beside the repository; deploy/kubernetes/ or deploy/kserve/).")
@click.option("--image", metavar="IMAGE", help="auto (default), slim, nvidia or an image reference.")
@click.option("--shm-size", metavar="SIZE", help="Size of /dev/shm, which the python backend moves tensors through "
                                                 "(default 1g).")
@click.option("--public", is_flag=True, help="compose: bind the ports on every interface instead of 127.0.0.1.")
@click.option("--rollouts/--no-rollouts", default=None,
              help="compose: explicit model control with loading and unloading restricted to a key kept in .env, so "
                   "`tritongen rollout` can switch versions (default: as the folder was last written; off for a new "
                   "one).")
@click.option("--name", metavar="NAME", help="kubernetes/kserve: name of the Deployment and Service or of the "
                                             "InferenceService (default: triton-<model>).")
@click.option("--models-from", metavar="SOURCE",
              help="kubernetes/kserve: where the pods get the repository: pvc:CLAIM[/SUBPATH] (default "
                   "pvc:<name>-models), image:REFERENCE, s3://BUCKET/PATH or gs://BUCKET/PATH.")
@click.option("--credentials-secret", metavar="SECRET",
              help="kubernetes/kserve: name of the Secret with the object store's credentials (referenced, never "
                   "copied).")
@click.option("--namespace", metavar="NAMESPACE", help="kubernetes/kserve: namespace for kustomize and the queries.")
@click.option("--cpu", metavar="CPUS", help="kubernetes/kserve: CPU request per replica (default: the capacity "
                                            "plan's bench machine, else 1).")
@click.option("--memory", metavar="QUANTITY", help="kubernetes/kserve: memory request per replica, e.g. 4Gi "
                                                   "(default: an estimate from the models).")
@click.option("--prometheus-url", metavar="URL", help="kubernetes/kserve: the Prometheus KEDA queries "
                                                      "(default http://prometheus-operated.monitoring.svc:9090).")
@click.option("--plan", "plan_path", type=click.Path(path_type=Path), metavar="FILE",
              help="kubernetes/kserve: a capacity-plan.json from `tritongen plan` (default: the one in the output "
                   "folder, if any).")
@common_options
def deploy_command(repository: Path, target: str, output: Path | None, image: str | None, shm_size: str | None,
                   public: bool, rollouts: bool | None, name: str | None, models_from: str | None, credentials_secret: str | None,
                   namespace: str | None, cpu: str | None, memory: str | None, prometheus_url: str | None,
                   plan_path: Path | None, as_json: bool) -> None:
    """Write the deployment of every model in REPOSITORY for compose, Kubernetes or KServe. For kubernetes and
    kserve, options not given keep the values the output folder was last written with."""
    from tritongen.kube import KubeOptions, read_plan, write_target

    plan = read_plan(plan_path, required=True) if plan_path else None
    options = KubeOptions(name=name, image=image, models_from=models_from, credentials_secret=credentials_secret,
                          shm_size=shm_size, namespace=namespace, prometheus_url=prometheus_url, cpu=cpu,
                          memory=memory, plan=plan)
    compose: dict[str, bool] = {"public": True} if public else {}
    if rollouts is not None:
        compose["rollouts"] = rollouts
    if public and target != "compose":
        from tritongen.errors import TritongenError

        raise TritongenError("--public only applies to --target compose",
                             "on Kubernetes, expose the Service through an ingress or gateway with authentication")
    if rollouts is not None and target != "compose":
        from tritongen.errors import TritongenError

        raise TritongenError("--rollouts only applies to --target compose",
                             "Kubernetes deployments run with --model-control-mode=none; roll out a new version with a "
                             "new Deployment revision")
    result = write_target(repository, target, output, options, **compose)
    if as_json:
        emit_json(result.to_dict())
        return
    print_result(result)


def print_result(r: DeployResult) -> None:
    out = stdout_console()
    out.print(f"wrote the {r.target} deployment: {r.folder}", markup=False, highlight=False)
    if r.image is not None:
        out.print(f"  image: {r.image.ref} ({r.image.kind}: {r.image.reason})", markup=False, highlight=False)
    if r.source is not None:
        out.print(f"  model repository: {r.source.describe()}", markup=False, highlight=False)
    s = r.scaling
    if s is not None:
        origin = "from the capacity plan" if s.planned else "defaults: `tritongen plan` sizes them from a bench"
        out.print(f"  replicas {s.replicas} ({s.min_replicas} to {s.max_replicas}), target {s.queue_target_us:.0f} µs "
                  f"queue time per request ({origin})", markup=False, highlight=False)
    from rich.markup import escape

    for backup in r.backups:
        original = backup.name[:backup.name.index(".bak-")]
        stderr_console().print(f"[yellow]warning:[/] {escape(original)} had been changed by hand; that version is kept "
                               f"as {escape(str(backup))}", highlight=False)
    if r.target != "compose":
        out.print(f"Next: kubectl kustomize {r.folder}   (README.md there says what the cluster needs)",
                  markup=False, highlight=False)
