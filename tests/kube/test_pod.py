"""The Triton pod's values: the command line and what is read off it, sizes, and the memory estimate."""

from __future__ import annotations

import pytest

from tritongen.deploy import PORTS
from tritongen.errors import TritongenError
from tritongen.kube.pod import (
    PRESTOP_SLEEP_S,
    TRITON_EXIT_TIMEOUT_S,
    exit_timeout_of,
    flag_value,
    mebibytes,
    ports_of,
    quantity,
    triton_args,
)


def test_command_line_is_composes():
    from tritongen.deploy import command

    assert triton_args is command.triton_args  # one builder for every target (tests/deploy/test_command.py)
    args = triton_args("/models")
    assert args[:3] == ["tritonserver", "--model-repository=/models", "--model-control-mode=none"]
    assert "--disable-auto-complete-config" in args and "--metrics-config=summary_latencies=true" in args


def test_ports_and_exit_timeout_are_read_off_the_command_line():
    args = triton_args("/m", ["--http-port=8080", "--grpc-port", "9000", "--exit-timeout-secs=90"])
    assert ports_of(args) == {"http": 8080, "grpc": 9000, "metrics": PORTS["metrics"]}
    assert ports_of(triton_args("/m")) == {"http": 8000, "grpc": 8001, "metrics": 8002}  # Triton's defaults
    assert exit_timeout_of(args) == 90 and exit_timeout_of(triton_args("/m")) == TRITON_EXIT_TIMEOUT_S == 30
    assert flag_value(["--x=1", "--x=2"], "--x") == "2"  # the last one wins, as for tritonserver
    assert flag_value(["--xy=1"], "--x") is None


def test_pod_of_a_one_model_repository(tmp_path):
    from tritongen.deploy import ImageChoice, ModelNeeds, RepositoryNeeds
    from tritongen.kube.pod import triton_pod
    from tritongen.kube.source import ModelSource

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"\nbackend: "python"\nmax_batch_size: 0\n')
    needs = RepositoryNeeds((ModelNeeds("m", "python", False),))
    pod = triton_pod(tmp_path, needs, ImageChoice("img", "slim", "test"), ModelSource("pvc", "c"))
    assert pod.grace_s > PRESTOP_SLEEP_S + pod.exit_timeout_s
    assert pod.memory == "768Mi" and pod.memory_limit == "1792Mi"  # 512 + 256 x 1 instance; + 1Gi of /dev/shm
    with pytest.raises(TritongenError, match="--cpu"):
        triton_pod(tmp_path, needs, ImageChoice("img", "slim", "test"), ModelSource("pvc", "c"), cpu="two")


@pytest.mark.parametrize(("size", "expected"), [("1g", "1Gi"), ("512m", "512Mi"), ("2gb", "2Gi"), ("64k", "64Ki"),
                                                ("1048576", "1048576"), (" 3G ", "3Gi")])
def test_compose_sizes_as_kubernetes_quantities(size, expected):
    assert quantity(size) == expected


@pytest.mark.parametrize("size", ["", "1.5g", "lots", "0", "1p"])
def test_bad_sizes(size):
    with pytest.raises(TritongenError, match="--shm-size"):
        quantity(size)


def test_mebibytes():
    assert [mebibytes(q) for q in ("1Gi", "512Mi", "1024Ki", "1048577", "2Ti")] == [1024, 512, 1, 2, 2 * 2**20]
    with pytest.raises(TritongenError, match="not a memory quantity"):
        mebibytes("2GB")
