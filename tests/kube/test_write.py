"""Kubernetes and KServe deployments as files: every manifest validated (Kubernetes 1.27-1.37 schemas, published
CRDs), rendered by `kubectl kustomize`, and the content that matters checked. No cluster runs here: these tests check
rendered files only."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.validation import documents, kustomize, validate
from tritongen.deploy import DEPLOY_FILES, write_deploy
from tritongen.deploy.slim import NVIDIA_DOCKERFILE, NVIDIA_REQUIREMENTS
from tritongen.errors import TritongenError
from tritongen.kube import KubeOptions, plan_capacity, read_report, write_target
from tritongen.kube.write import write_plan
from tritongen.repository import read_model_dir

RECORDED = Path(__file__).parent / "data" / "bench_report_cnn.json"
TRITON_DEFAULT_HTTP_PORT = 8000  # tritonserver's default --http-port
TRITON_EXIT_TIMEOUT_S = 30  # tritonserver's default --exit-timeout-secs (Triton 2.51.0)
GIB = 2**30

CASES = {
    "cpu-pvc": ("cpu", {}),
    "cpu-image": ("cpu", {"models_from": "image:registry.example.com/models/cnn:1"}),
    "cpu-s3-secret": ("cpu", {"models_from": "s3://models-bucket/repo", "credentials_secret": "store-creds"}),
    "cpu-gs-secret": ("cpu", {"models_from": "gs://models-bucket/repo", "credentials_secret": "gcs-creds"}),
    "cpu-s3-no-secret": ("cpu", {"models_from": "s3://minio.local:9000/bucket/repo", "namespace": "serving"}),
    "gpu": ("gpu", {}),
    "pipeline": ("pipeline", {}),
    "multi": ("multi", {"name": "triton-all", "models_from": "pvc:shared-models/zoo"}),
    "built": ("built", {}),  # the model `tritongen build` wrote, not a hand-written config
}


def write(repositories: dict[str, Path], tmp_path: Path, case: str, target: str, **extra: Any) -> Path:
    kind, options = CASES[case]
    out = tmp_path / target
    write_target(repositories[kind], target, out, KubeOptions(**{**options, **extra}))
    return out


def manifests(folder: Path) -> list[dict[str, Any]]:
    """Every Kubernetes object in the folder's YAML files (kustomizations and Helm values excluded)."""
    docs = []
    for path in sorted(folder.rglob("*.yaml")):
        if path.name not in ("kustomization.yaml", "prometheus-adapter-values.yaml"):
            docs.extend(documents(path))
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def triton_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(container, pod spec) of Triton, in a Deployment or a KServe ServingRuntime."""
    for d in docs:
        if d["kind"] == "Deployment":
            spec = d["spec"]["template"]["spec"]
            return next(c for c in spec["containers"] if c["name"] == "triton"), spec
        if d["kind"] == "ServingRuntime":
            return d["spec"]["containers"][0], d["spec"]
    raise AssertionError("no Triton container")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifest_validates_against_kubernetes_and_crd_schemas(repositories, cnn_repository, tmp_path, case,
                                                                    target):
    out = write({**repositories, "built": cnn_repository}, tmp_path, case, target)
    docs = manifests(out)
    checked = {validate(d) for d in docs}
    rendered = kustomize(out)
    expected = ({"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ScaledObject", "PodMonitor",
                 "ServiceMonitor"} if target == "kubernetes" else {"ServingRuntime", "InferenceService"})
    assert expected <= {d["kind"] for d in docs}
    assert any("Kubernetes 1.27.0-1.37.0" in c for c in checked) or target == "kserve"
    # The base applies on a bare cluster: no operator kinds unless a component is enabled.
    if target == "kubernetes":
        assert {d["kind"] for d in rendered} == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}


def test_a_broken_manifest_fails_validation(repositories, tmp_path):
    """The validators above can fail: an unknown field, a wrong type, a CRD field that does not exist."""
    docs = manifests(write(repositories, tmp_path, "cpu-pvc", "kubernetes"))
    deployment = of_kind(docs, "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["shmSize"] = "1Gi"
    with pytest.raises(AssertionError, match="shmSize"):
        validate(deployment)
    hpa = of_kind(docs, "HorizontalPodAutoscaler")[0]
    hpa["spec"]["maxReplicas"] = "four"
    with pytest.raises(AssertionError, match="maxReplicas"):
        validate(hpa)
    monitor = of_kind(docs, "PodMonitor")[0]
    monitor["spec"]["podMetricsEndpoints"][0]["scrapeEvery"] = "15s"
    with pytest.raises(AssertionError, match="scrapeEvery"):
        validate(monitor)
    scaled = of_kind(docs, "ScaledObject")[0]
    scaled["spec"]["minReplicaCount"] = 9
    with pytest.raises(AssertionError, match="minReplicaCount"):
        validate(scaled)


def test_kustomize_renders_the_base_with_its_components(repositories, tmp_path):
    """Enabled as README.md says: uncomment the components in kustomization.yaml."""
    import shutil

    out = write(repositories, tmp_path, "cpu-pvc", "kubernetes", namespace="ml")
    kustomization = (out / "kustomization.yaml").read_text()
    components = re.findall(r"^#\s+- (components/[a-z-]+)", kustomization, flags=re.M)
    assert sorted(components) == ["components/keda", "components/pod-monitor", "components/service-monitor"]
    for enabled in (["components/pod-monitor", "components/keda"], ["components/service-monitor"]):
        folder = shutil.copytree(out, tmp_path / "-".join(c.split("/")[1] for c in enabled))
        text = kustomization.replace("# components:", "components:")
        for component in enabled:
            text = re.sub(rf"^#(\s+- {component})", r" \1", text, flags=re.M)
        (folder / "kustomization.yaml").write_text(text)
        docs = kustomize(folder)
        for d in docs:
            validate(d)
            assert d["metadata"]["namespace"] == "ml"
        kinds = {d["kind"] for d in docs}
        if "components/keda" in enabled:
            assert "ScaledObject" in kinds and "HorizontalPodAutoscaler" not in kinds  # KEDA owns the HPA then
            assert "PodMonitor" in kinds
        else:
            assert "ServiceMonitor" in kinds and "HorizontalPodAutoscaler" in kinds


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_probes_and_ports_match_the_command_line(repositories, tmp_path, target):
    container, _ = triton_container(manifests(write(repositories, tmp_path, "cpu-pvc", target)))
    args = container["args"]
    assert args[0] == "tritonserver" and "--model-control-mode=none" in args and "--disable-auto-complete-config" in args
    http = [a.split("=", 1)[1] for a in args if a.startswith("--http-port=")]
    http_port = int(http[-1]) if http else TRITON_DEFAULT_HTTP_PORT
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == http_port
    for probe, path in (("startupProbe", "/v2/health/ready"), ("readinessProbe", "/v2/health/ready"),
                        ("livenessProbe", "/v2/health/live")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == http_port, f"{probe} port {get['port']} is not Triton's HTTP"
    if target == "kserve":
        assert http_port == 8080 and container["ports"][0]["name"] == "http"  # KServe's Service sends HTTP there


def test_repository_location_on_the_command_line(repositories, tmp_path):
    for case, expected in (("cpu-pvc", "/models"), ("cpu-image", "/models"), ("cpu-s3-secret", "s3://models-bucket/repo"),
                           ("cpu-gs-secret", "gs://models-bucket/repo")):
        container, spec = triton_container(manifests(write(repositories, tmp_path / case, case, "kubernetes")))
        assert f"--model-repository={expected}" in container["args"]
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        if expected == "/models":
            assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"] is True
        else:
            assert "models" not in mounts


def test_compose_and_kubernetes_share_image_and_command_line(repositories, tmp_path):
    import yaml

    repository = repositories["cpu"]
    write_target(repository, "compose", tmp_path / "compose")
    compose = yaml.safe_load((tmp_path / "compose" / "docker-compose.yml").read_text())["services"]["triton"]
    container, _ = triton_container(manifests(write(repositories, tmp_path, "cpu-pvc", "kubernetes")))
    assert container["args"] == compose["command"]
    assert compose["image"].endswith(container["image"] + "}")  # "${TRITON_IMAGE:-<image>}"


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
@pytest.mark.parametrize("case", ["cpu-pvc", "pipeline", "gpu"])
def test_dev_shm_is_memory_backed_and_sized_like_compose(repositories, tmp_path, case, target):
    import yaml

    kind, _ = CASES[case]
    write_target(repositories[kind], "compose", tmp_path / "compose")
    compose_shm = yaml.safe_load((tmp_path / "compose" / "docker-compose.yml").read_text())["services"]["triton"]["shm_size"]
    number, unit = re.fullmatch(r"(\d+)([kmg])", compose_shm).groups()
    shm_bytes = int(number) * {"k": 2**10, "m": 2**20, "g": 2**30}[unit]
    container, spec = triton_container(manifests(write(repositories, tmp_path, case, target)))
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"]["medium"] == "Memory"
    assert quantity_bytes(volume["emptyDir"]["sizeLimit"]) == shm_bytes
    if target == "kubernetes":  # /dev/shm counts against the memory limit: it must leave the server its request
        resources = container["resources"]
        assert quantity_bytes(resources["limits"]["memory"]) >= quantity_bytes(resources["requests"]["memory"]) + shm_bytes


def quantity_bytes(q: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", str(q)).groups()
    return int(number) * {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[unit]


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
@pytest.mark.parametrize("case", sorted(set(CASES) - {"built"}))
def test_gpu_limits_only_for_gpu_models(repositories, tmp_path, case, target):
    docs = manifests(write(repositories, tmp_path, case, target))
    text = json.dumps(docs)
    wants_gpu = CASES[case][0] in ("gpu", "multi")
    assert ("nvidia.com/gpu" in text) == wants_gpu
    if target == "kubernetes":
        container, spec = triton_container(docs)
        resources = container["resources"]
    else:
        isvc = of_kind(docs, "InferenceService")[0]
        resources, spec = isvc["spec"]["predictor"]["model"]["resources"], isvc["spec"]["predictor"]
        container, _ = triton_container(docs)
    if wants_gpu:
        assert resources["limits"]["nvidia.com/gpu"] == 1
        assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
        # multi also holds python-backend models, whose packages NVIDIA's image lacks: the image derived from it
        assert container["image"] == ("tritongen/multi-triton:24.10" if case == "multi" else
                                      "nvcr.io/nvidia/tritonserver:24.10-py3")
    else:
        assert "tolerations" not in spec and "tritonserver-slim" in container["image"]


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
@pytest.mark.parametrize("case", ["cpu-s3-secret", "cpu-gs-secret"])
def test_credentials_secret_is_referenced_by_name_only(repositories, tmp_path, case, target):
    secret = CASES[case][1]["credentials_secret"]
    out = write(repositories, tmp_path, case, target)
    docs = manifests(out)
    assert not of_kind(docs, "Secret")
    names = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                names.add(node["secretKeyRef"]["name"])
            if "secretName" in node:
                names.add(node["secretName"])
            if node.get("name", "").startswith("AWS_"):
                assert "value" not in node, f"{node['name']} has a literal value"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(docs)
    if target == "kubernetes":
        assert names == {secret}
    else:
        account = of_kind(docs, "ServiceAccount")[0]
        assert account["secrets"] == [{"name": secret}]
        assert of_kind(docs, "InferenceService")[0]["spec"]["predictor"]["serviceAccountName"] == account["metadata"]["name"]


def test_object_store_without_secret_has_no_credentials(repositories, tmp_path):
    docs = manifests(write(repositories, tmp_path, "cpu-s3-no-secret", "kubernetes"))
    container, spec = triton_container(docs)
    assert "env" not in container and "s3://minio.local:9000/bucket/repo" in container["args"][1]
    assert 'namespace="serving"' in of_kind(docs, "ScaledObject")[0]["spec"]["triggers"][0]["metadata"]["query"]


def test_image_source_copies_the_repository_in_an_init_container(repositories, tmp_path):
    container, spec = triton_container(manifests(write(repositories, tmp_path, "cpu-image", "kubernetes")))
    (init,) = spec["initContainers"]
    assert init["image"] == "registry.example.com/models/cnn:1"
    assert init["command"][:2] == ["cp", "-R"] and init["command"][2] == "/models/."
    target_mount = next(m for m in init["volumeMounts"] if m["name"] == "models")
    assert init["command"][3].rstrip("/") == target_mount["mountPath"] != "/models"  # not hiding the image's /models
    volume = next(v for v in spec["volumes"] if v["name"] == "models")
    assert "emptyDir" in volume and quantity_bytes(volume["emptyDir"]["sizeLimit"]) >= GIB


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_security_context_and_termination_grace(repositories, tmp_path, target):
    for case in ("cpu-pvc", "gpu"):
        docs = manifests(write(repositories, tmp_path / case, case, target))
        container, spec = triton_container(docs)
        pod = spec if target == "kubernetes" else of_kind(docs, "InferenceService")[0]["spec"]["predictor"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
        # Read-only root only for the image that was run that way here (tests/kube/test_pod_docker.py).
        assert security["readOnlyRootFilesystem"] is (case == "cpu-pvc")
        pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert pod["terminationGracePeriodSeconds"] > pause + TRITON_EXIT_TIMEOUT_S


def test_pipeline_and_multi_model_repositories_size_every_step(repositories, tmp_path):
    # preprocess 2 + cnn 1 + postprocess 1 instances (+ cnn_gpu 1), the ensemble none; model files: cnn's 3 MiB
    # (+ cnn_gpu's), not tritongen's reference data.
    for case, instances, mib in (("pipeline", 4, 3), ("multi", 5, 6)):
        out = write(repositories, tmp_path / case, case, "kubernetes")
        text = (out / "deployment.yaml").read_text()
        assert f"x {instances} model instance(s) + 2 x {mib} MiB of model files" in text
        request = 512 + 256 * instances + 2 * mib
        assert f"memory: {64 * -(-request // 64)}Mi" in text
        assert "/dev/shm (cnn, postprocess, preprocess)" in text
        readme = (out / "README.md").read_text()
        for model in ("classify", "preprocess", "postprocess", "cnn"):
            assert f"| {model} |" in readme


def test_hpa_metric_is_the_adapter_rule_name_of_a_triton_metric(repositories, tmp_path):
    import yaml

    from tritongen.kube import metrics

    out = write(repositories, tmp_path, "cpu-pvc", "kubernetes")
    hpa = of_kind(manifests(out), "HorizontalPodAutoscaler")[0]
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    (rule,) = yaml.safe_load((out / "prometheus-adapter-values.yaml").read_text())["rules"]["custom"]
    series = re.fullmatch(r"(\w+)\{.*\}", rule["seriesQuery"]).group(1)
    # The adapter names the metric with Go's regexp replacement of `as` over `matches` ($1 -> group 1).
    exposed = re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), series)
    assert exposed == metric
    assert series in metrics.TRITON_METRICS  # tests/kube/test_metrics.py finds it in a real server's /metrics
    assert set(re.findall(r"<<\.(\w+)>>", rule["metricsQuery"])) <= {"LabelMatchers", "GroupBy", "Series"}


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_capacity_plan_numbers_are_written_into_the_manifests(repositories, tmp_path, target):
    plan = plan_capacity(read_report(RECORDED), rate=3000, p99_ms=10)
    out = tmp_path / target
    write_target(repositories["cpu"], target, out, KubeOptions(plan=plan))
    docs = manifests(out)
    target_us = str(round(plan.queue_target_us))
    if target == "kubernetes":
        deployment, hpa = of_kind(docs, "Deployment")[0], of_kind(docs, "HorizontalPodAutoscaler")[0]
        assert deployment["spec"]["replicas"] == plan.replicas == 3
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (plan.min_replicas, plan.max_replicas)
        assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == target_us
        triggers = {t["name"]: t for t in of_kind(docs, "ScaledObject")[0]["spec"]["triggers"]}
        assert triggers["queue-time"]["metadata"]["threshold"] == target_us
        assert float(triggers["request-rate"]["metadata"]["threshold"]) == pytest.approx(plan.replica_rate, abs=0.01)
        container, _ = triton_container(docs)
        assert container["resources"]["requests"]["cpu"] == str(plan.cpus)
    else:
        predictor = of_kind(docs, "InferenceService")[0]["spec"]["predictor"]
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == (plan.min_replicas, plan.max_replicas)
        assert predictor["autoScaling"]["metrics"][0]["external"]["target"]["value"] == target_us
    assert json.loads((out / "capacity-plan.json").read_text())["replicas"] == plan.replicas


def test_a_later_write_keeps_the_folder_options_and_the_plan(repositories, tmp_path):
    import shutil

    repository = shutil.copytree(repositories["cpu"], tmp_path / "model_repository")
    out = repository.parent / "deploy" / "kubernetes"
    write_target(repository, "kubernetes", None, KubeOptions(models_from="s3://b/r", credentials_secret="creds"))
    plan = plan_capacity(read_report(RECORDED), rate=500, p99_ms=5)
    (result,) = write_plan(repository, plan)
    assert result.folder == out and result.source.kind == "s3" and result.source.secret == "creds"
    again = write_target(repository, "kubernetes")  # no options: the folder's, and its capacity-plan.json
    assert again.plan == plan and again.source.location == "s3://b/r"
    assert of_kind(manifests(out), "Deployment")[0]["spec"]["replicas"] == plan.replicas


def test_a_hand_edited_manifest_is_kept_before_it_is_rewritten(repositories, tmp_path):
    out = write(repositories, tmp_path, "cpu-pvc", "kubernetes")
    edited = (out / "deployment.yaml").read_text().replace("cpu: \"1\"", "cpu: \"3\"")
    (out / "deployment.yaml").write_text(edited)
    result = write_target(repositories["cpu"], "kubernetes", out)
    assert [b.name.split(".bak-")[0] for b in result.backups] == ["deployment.yaml"]
    assert result.backups[0].read_text() == edited
    assert 'cpu: "1"' in (out / "deployment.yaml").read_text()
    assert not write_target(repositories["cpu"], "kubernetes", out).backups  # nothing changed by hand since


def test_compose_target_is_the_existing_compose_deployment(repositories, tmp_path):
    result = write_target(repositories["cpu"], "compose", tmp_path / "compose")
    assert sorted(p.relative_to(result.folder).as_posix() for p in result.files) == sorted(DEPLOY_FILES)
    with pytest.raises(TritongenError, match="--models-from"):
        write_target(repositories["cpu"], "compose", tmp_path / "c2", KubeOptions(models_from="pvc:x"))


def test_default_folders_are_beside_the_repository(repositories):
    from tritongen.kube import default_output

    repository = repositories["gpu"]
    assert default_output(repository, "compose") == repository.parent / "deploy"
    assert default_output(repository, "kserve") == repository.parent / "deploy" / "kserve"


def test_a_plan_for_a_model_not_in_the_repository_is_refused(repositories, tmp_path):
    plan = plan_capacity(read_report(RECORDED), rate=100, p99_ms=10)  # for model cnn
    with pytest.raises(TritongenError, match="the capacity plan is for model 'cnn', which is not in"):
        write_target(repositories["gpu"], "kubernetes", tmp_path / "k8s", KubeOptions(plan=plan))
    out = tmp_path / "pipeline"
    write_target(repositories["pipeline"], "kubernetes", out, KubeOptions(plan=plan))
    # In a pipeline the plan's model is one step: autoscaling reads that step's series only.
    triggers = of_kind(manifests(out), "ScaledObject")[0]["spec"]["triggers"]
    assert all('model="cnn"' in t["metadata"]["query"] for t in triggers)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_built_pipelines_deploy_to_kubernetes_and_kserve(pipeline_builds, tmp_path, target):
    """The three pipelines `build -f tritongen.toml` writes (ensembles, python steps, networks): every manifest
    validates, the base renders, and every model of the repository is listed and sized."""
    assert pipeline_builds.exit_code == 0, pipeline_builds.output
    out = tmp_path / target
    write_target(pipeline_builds.repository, target, out, KubeOptions())
    docs = manifests(out)
    for doc in docs:
        validate(doc)
    kustomize(out)
    container, spec = triton_container(docs)
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in spec["volumes"])  # python steps need /dev/shm
    models = sorted(p.name for p in pipeline_builds.repository.iterdir() if (p / "config.pbtxt").is_file())
    assert len(models) == 12
    readme = (out / "README.md").read_text()
    assert all(f"| {model} |" in readme for model in models)
    if target == "kubernetes":
        text = (out / "deployment.yaml").read_text()
        steps = [m for m in models if m.endswith(("_preprocess", "_postprocess", "_model"))]
        assert f"x {len(steps)} model instance(s)" in text  # one instance each; the ensembles run none
    # NVIDIA's image serves the ONNX networks but lacks the steps' packages: the pods run the image derived from it,
    # the one compose builds, and the folder holds what builds it, with the steps' own pins.
    compose = tmp_path / "compose"
    write_deploy(pipeline_builds.repository, compose)
    compose_image = yaml.safe_load((compose / "docker-compose.yml").read_text())["services"]["triton"]["image"]
    assert container["image"] == compose_image.split(":-", 1)[1].rstrip("}")
    assert (out / "image" / NVIDIA_DOCKERFILE).read_text() == (compose / NVIDIA_DOCKERFILE).read_text()
    pins = (out / "image" / NVIDIA_REQUIREMENTS).read_text().split()
    steps_pins = {r for m in models if m.endswith(("_preprocess", "_postprocess"))
                  for r in read_model_dir(pipeline_builds.repository / m).manifest["python_requirements"]}
    assert steps_pins <= set(pins)
    # The README's `images:` snippet points the manifests at a pushed copy.
    name = container["image"].rsplit(":", 1)[0]
    assert f"  - name: {name}\n    newName: REGISTRY/" in readme
    kustomization = out / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + f"images:\n  - name: {name}\n    newName: registry.example.com/x\n")
    pushed, _ = triton_container(kustomize(out))
    assert pushed["image"] == "registry.example.com/x:" + container["image"].rsplit(":", 1)[1]


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
def test_the_slim_images_build_files_are_beside_the_manifests(repositories, tmp_path, target):
    """No registry has the slim image: the folder holds what builds it (the compose folder's files), and the README
    says how to build, push and point the manifests at it; NVIDIA's image as it is needs nothing built."""
    out = write(repositories, tmp_path, "cpu-pvc", target)
    compose = tmp_path / "compose"
    write_deploy(repositories["cpu"], compose)
    for name in ("Dockerfile", "requirements.txt", "requirements-server.txt"):
        assert (out / "image" / name).read_text() == (compose / name).read_text()
    readme = (out / "README.md").read_text()
    assert "tritongen image build --deploy image --tag REGISTRY/" in readme and "newName: REGISTRY/" in readme
    gpu = write(repositories, tmp_path / "gpu", "gpu", target)
    assert not (gpu / "image").exists() and "newName:" not in (gpu / "README.md").read_text()
