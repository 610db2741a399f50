"""The generated deployment as its README tells a user to run it: every command of the README, in order, on a real
Docker engine, with the rollout and rollback commands under continuous load over HTTP and gRPC.

What this machine lacks is replaced, and said so here: no registry, so `tritongen image build` gets a local base
image (`--base-image`), and the monitoring profile runs a Prometheus image made from Debian's prometheus binary and,
for Grafana (which cannot run here), an image that only sleeps, so that its mounts and settings can be checked.
MODEL and N in the rollout commands are the model and version 1 (the server starts on version 2).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.deploy import prometheus
from tests.load import ContinuousLoad, switch_point
from tests.rollout.versions import FEEDS, MODEL, OUTPUT, is_version
from tests.servers import consecutive_free_ports
from tritongen.deploy import write_deploy
from tritongen.deploy.command import EXIT_TIMEOUT_S

pytestmark = [pytest.mark.docker, pytest.mark.slow]

STANDINS = {
    "prometheus": ("tritongen-test/prometheus-standin:local", """
FROM {base}
COPY prometheus /bin/prometheus
RUN mkdir -p /prometheus /etc/prometheus && chown -R 65534:65534 /prometheus
USER 65534
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
"""),
    # Grafana cannot run here: this stand-in only holds the mounts and settings the compose file gives Grafana.
    "grafana": ("tritongen-test/grafana-standin:local", """
FROM {base}
RUN mkdir -p /var/lib/grafana && chown 472:0 /var/lib/grafana
USER 472
ENTRYPOINT ["bash", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
"""),
}


# What a command must print, by a part of it: the commands did their job, not only exited 0.
SHOWS = {"/v2/health/ready": "ready", "/config": f'"name":"{MODEL}"', "tritongen validate": f"✓ {MODEL}",
         "tritongen rollout": "now serves version 1", "tritongen rollback": "now serves version 2",
         "/api/v1/alerts": '"status":"success"', "promtool test rules": "SUCCESS", "docker compose logs": "READY"}


@pytest.fixture(scope="module")
def standins(docker_client, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    binary = prometheus.binary("prometheus")
    images = {}
    for name, (tag, dockerfile) in STANDINS.items():
        context = tmp_path_factory.mktemp(f"standin-{name}")
        (context / "Dockerfile").write_text(dockerfile.format(base=base_image))
        if name == "prometheus":
            shutil.copy2(binary, context / "prometheus")
        docker_client.images.build(path=str(context), tag=tag, rm=True, pull=False)
        images[name] = tag
    return images


def readme_commands(readme: Path) -> list[str]:
    """The lines of the README's ```sh blocks, without their trailing comments."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", readme.read_text(), flags=re.S):
        for line in block.splitlines():
            command = re.split(r"\s{2,}#", line)[0].strip()
            if command:
                commands.append(command)
    return commands


def wait_until(check, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f} s"
        time.sleep(0.5)


def http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=3) as response:
        return response.status == 200


def test_readme_commands_run_and_rollouts_under_load_drop_no_request(two_versions, tmp_path, slim_image, base_image,
                                                                     standins, docker_client):
    project = tmp_path / "project"
    repository = project / "model_repository"
    shutil.copytree(two_versions, repository, ignore=shutil.ignore_patterns(".tritongen-*"))
    port = consecutive_free_ports(5)[0]  # HTTP, gRPC, metrics, Prometheus, Grafana
    name = f"tritongen-test-{uuid.uuid4().hex[:8]}"
    write_deploy(repository, rollouts=True, http_port=port, grpc_port=port + 1, metrics_port=port + 2, project_name=name,
                 prometheus_port=port + 3, grafana_port=port + 4)
    deploy = project / "deploy"
    env = {**os.environ, "PROMETHEUS_IMAGE": standins["prometheus"], "GRAFANA_IMAGE": standins["grafana"],
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           # `tritongen` as this checkout has it, whatever the environment's install points at.
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    dotenv = dict(line.split("=", 1) for line in (deploy / ".env").read_text().splitlines() if "=" in line
                  and not line.startswith("#"))
    commands = readme_commands(deploy / "README.md")
    assert any(c.startswith("tritongen rollout MODEL --version N") for c in commands)
    urls = {"http": f"127.0.0.1:{port}", "grpc": f"127.0.0.1:{port + 1}"}
    prometheus_address = f"127.0.0.1:{port + 3}"
    load, reports, ran = None, [], []

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], cwd=deploy, env=env, capture_output=True, text=True, timeout=600)

    try:
        for command in commands:
            actual = command.replace("MODEL", MODEL).replace(" N ", " 1 ")
            if actual.startswith("tritongen image build"):
                actual += f" --base-image {base_image}"  # no registry to pull python:3.11-slim from
            if actual.startswith("tritongen rollout"):
                load = ContinuousLoad(urls, MODEL, FEEDS, OUTPUT, concurrency=8).__enter__()
                load.wait_for(300)
            if actual == "docker compose down":
                check_triton_container(docker_client, name)
            started = time.monotonic()
            result = run(actual)
            assert result.returncode == 0, f"`{actual}` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            ran.append((actual, round(time.monotonic() - started, 1)))
            for part, shown in SHOWS.items():
                if part in actual:
                    assert shown in result.stdout, f"`{actual}` printed:\n{result.stdout[-2000:]}"
            if actual.startswith(("tritongen rollout", "tritongen rollback")):
                reports.append(time.monotonic())
                load.wait_for(len(load.answers) + 300)
            if actual.startswith("tritongen rollback"):
                load.__exit__(None, None, None)
            if actual == "docker compose up -d":
                wait_until(lambda: http_ok(f"http://{urls['http']}/v2/health/ready"), "Triton ready")
            if actual == "docker compose --profile monitoring up -d":
                wait_until(lambda: prometheus.query(prometheus_address, 'up{job="triton"} == 1'),
                           "Prometheus scraping Triton")
                check_monitoring(docker_client, name, prometheus_address, deploy, dotenv)
    finally:
        if load is not None and load._thread is not None and load._thread.is_alive():
            load.__exit__(None, None, None)
        run("docker compose --profile monitoring down -v --timeout 5")
    print("\n" + "\n".join(f"  {seconds:5.1f} s  {command}" for command, seconds in ran))
    assert [c for c, _ in ran] == [c.replace("MODEL", MODEL).replace(" N ", " 1 ") + (
        f" --base-image {base_image}" if c.startswith("tritongen image build") else "") for c in commands]

    answers = load.answers
    failed = [a for a in answers if not a.ok]
    print(f"Docker: {len(answers)} requests during rollout and rollback "
          f"({sum(a.protocol == 'http' for a in answers)} HTTP), {len(failed)} failed")
    assert not failed, failed[:3]
    rolled_out = reports[0]
    first = [a for a in answers if a.sent < rolled_out]  # version 2 (at start) -> 1
    last_old, first_new = switch_point(first, lambda out: is_version(out, 1))
    assert last_old < first_new and any(is_version(a.output, 2) for a in first)
    second = [a for a in answers if a.sent >= rolled_out]  # 1 -> 2 again
    last_old, first_new = switch_point(second, lambda out: is_version(out, 2))
    assert last_old < first_new and any(is_version(a.output, 1) for a in second)


def check_triton_container(client, project: str) -> None:
    """What the compose file promised, read back from the running container."""
    (container,) = client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                             "com.docker.compose.service=triton"]})
    config, host = container.attrs["Config"], container.attrs["HostConfig"]
    assert config["User"] == "1000:1000"  # not root
    assert host["Init"] is True
    assert config["StopTimeout"] > EXIT_TIMEOUT_S
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "50m"}}
    assert [(m["Destination"], m["RW"]) for m in container.attrs["Mounts"]] == [("/models", False)]
    assert "--model-control-mode=explicit" in container.attrs["Args"]
    top = container.top(ps_args="-o pid,user,args")["Processes"]
    assert not [p for p in top if "tritonserver" in p[-1] and p[1] == "root"], top


def check_monitoring(client, project: str, address: str, deploy: Path, dotenv: dict[str, str]) -> None:
    """Prometheus (Debian's binary, the compose service's configuration and rules) scrapes Triton across the compose
    network; the Grafana stand-in has the provisioning, the dashboard and the password the compose file gives it."""
    rules = [r["alert"] for g in yaml.safe_load((deploy / "monitoring" / "alerts.yml").read_text())["groups"]
             for r in g["rules"]]
    wait_until(lambda: len([r for g in prometheus.api(address, "rules")["groups"] for r in g["rules"]
                            if r.get("health") == "ok"]) == len(rules), "every rule evaluated")
    assert prometheus.value(address, f'sum(nv_inference_request_success{{job="triton",model="{MODEL}"}})') > 0
    (grafana,) = client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                           "com.docker.compose.service=grafana"]})
    listing = grafana.exec_run(["ls", "/etc/grafana/provisioning/datasources", "/etc/grafana/provisioning/dashboards",
                                "/var/lib/grafana/dashboards"]).output.decode()
    assert "prometheus.yml" in listing and "tritongen.yml" in listing and "triton.json" in listing
    environment = dict(e.split("=", 1) for e in grafana.attrs["Config"]["Env"])
    assert environment["GF_SECURITY_ADMIN_PASSWORD"] == dotenv["GRAFANA_ADMIN_PASSWORD"]
