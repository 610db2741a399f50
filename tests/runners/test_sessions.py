"""The one threads-per-instance rule: config parameters, CPU affinity and cgroup CPU quotas; bench uses it too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tritongen.runners.sessions import cgroup_cpu_limit, instance_total, intra_op_threads, usable_cpus


def fake_cgroups(tmp_path: Path, own: str, files: dict[str, str]) -> tuple[str, str]:
    """A cgroup filesystem under tmp_path and a /proc/self/cgroup that places this process at `own`."""
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(own)
    return str(root), str(proc)


def test_threads_come_from_the_config_else_the_cpus_shared_among_instances() -> None:
    assert intra_op_threads({"intra_op_num_threads": "3"}, instances=2, cpus=8) == 3
    assert intra_op_threads({"intra_op_thread_count": "5"}, instances=2, cpus=8) == 5  # the onnxruntime backend's key
    assert intra_op_threads({"intra_op_num_threads": "2", "intra_op_thread_count": "5"}, 1, cpus=8) == 2
    assert intra_op_threads({"intra_op_num_threads": "many"}, instances=3, cpus=8) == 2
    assert intra_op_threads({}, instances=4, cpus=2) == 1
    assert instance_total([0, 2]) == 3 and instance_total([]) == 1


def test_cgroup_v2_quota_of_this_cgroup_and_its_parents(tmp_path: Path) -> None:
    root, proc = fake_cgroups(tmp_path, "0::/kubepods/pod1/ctr\n", {
        "kubepods/cpu.max": "400000 100000\n", "kubepods/pod1/cpu.max": "max 100000\n",
        "kubepods/pod1/ctr/cpu.max": "150000 100000\n"})
    assert cgroup_cpu_limit(root, proc) == 1.5
    assert usable_cpus(root, proc) == 1  # rounded down: threads past the quota are throttled
    root, proc = fake_cgroups(tmp_path / "unlimited", "0::/\n", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(root, proc) is None
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    root, proc = fake_cgroups(tmp_path, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n", {
        "cpu/docker/abc/cpu.cfs_quota_us": "200000\n", "cpu/docker/abc/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(root, proc) == 2.0
    root, proc = fake_cgroups(tmp_path / "none", "2:cpu,cpuacct:/\n", {
        "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(root, proc) is None


def test_bench_ceiling_reads_the_same_thread_parameters_as_the_served_model() -> None:
    """bench compared served models at `intra_op_thread_count` with a ceiling at the CPU count: one rule now."""
    from tritonclient.grpc import model_config_pb2

    from tritongen.bench import intra_op_threads as bench_threads

    config = model_config_pb2.ModelConfig(name="m")
    config.instance_group.add(count=2)
    config.parameters["intra_op_thread_count"].string_value = "1"
    assert bench_threads(config, cpus=8) == 1 == intra_op_threads({"intra_op_thread_count": "1"}, 2, cpus=8)
    del config.parameters["intra_op_thread_count"]
    assert bench_threads(config, cpus=8) == 4


@pytest.mark.docker
def test_a_docker_cpu_quota_caps_the_threads(tmp_path: Path) -> None:
    """`docker run --cpus 1` leaves the container every CPU in its affinity mask but a quota of one."""
    import docker

    from tests.docker.conftest import BASE_IMAGE, skip_or_fail
    from tritongen.errors import TritongenError
    from tritongen.runners import sessions
    from tritongen.server.docker import docker_client

    try:
        client = docker_client()
        client.images.get(BASE_IMAGE)
    except (TritongenError, docker.errors.ImageNotFound) as exc:
        skip_or_fail(f"needs a Docker engine and {BASE_IMAGE}: {exc}")
    script = ("import os, runpy; s = runpy.run_path('/rule/sessions.py'); "
              "print(len(os.sched_getaffinity(0)), s['usable_cpus'](), s['intra_op_threads']({}, 1))")
    container = client.containers.create(BASE_IMAGE, ["python3", "-c", script], nano_cpus=1_000_000_000,
                                         volumes={str(Path(sessions.__file__).parent): {"bind": "/rule", "mode": "ro"}},
                                         labels={"tritongen": "1", "tritongen.purpose": "test"})
    try:
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 0
        affinity, usable, threads = (int(v) for v in container.logs().decode().split())
    finally:
        container.remove(force=True)
        client.close()
    assert (usable, threads) == (1, 1)
    if affinity < 2:
        pytest.skip("this machine has one CPU: the quota changes nothing to see")
