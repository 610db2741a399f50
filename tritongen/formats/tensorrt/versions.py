"""A plan loads only in the TensorRT that built it: the version checks `validate` and `serve` use."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError


def parse_version(text: str) -> tuple[int, ...]:
    """`10.3.0.26` -> (10, 3, 0, 26); non-numeric parts end the version."""
    parts = []
    for part in str(text).strip().split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def plan_versions_compatible(plan_version: str, server_version: str) -> bool:
    """A plan loads only with the TensorRT that built it, to the patch level (8.0.0 plans fail on 8.0.1)."""
    return parse_version(plan_version)[:3] == parse_version(server_version)[:3]


def plan_version_problem(plan_version: str | None, server_version: str | None, model: str) -> str | None:
    """Why the server would refuse the plan, in one line; None when the versions agree or cannot be known."""
    if not plan_version or not server_version:
        return None
    if plan_versions_compatible(plan_version, server_version):
        return None
    return (f"model '{model}' is a TensorRT {plan_version} plan but the server runs TensorRT {server_version}; "
            "a plan loads only in the TensorRT version that built it: rebuild it with --trt-image set to the "
            "TensorRT image of the server's release")


def check_plan_version(plan_version: str | None, server_version: str | None, model: str) -> None:
    """Raise the one-line error `validate` shows when a plan's TensorRT version differs from the server's."""
    problem = plan_version_problem(plan_version, server_version, model)
    if problem:
        raise TritongenError(problem.split("; ", 1)[0], problem.split("; ", 1)[1])


def plan_tensorrt_version(version_dir: Path) -> str | None:
    """The TensorRT version a built plan's manifest records, if the version is a TensorRT build."""
    from tritongen.repository import read_manifest

    try:
        manifest = read_manifest(version_dir)
    except TritongenError:
        return None
    return (manifest.get("tensorrt") or {}).get("tensorrt_version")


_LOG_MISMATCH = re.compile(r"expecting library version ([\d.]+) got ([\d.]+)")


def version_mismatch_in_log(log: str) -> str | None:
    """TensorRT's own words when a server refuses a plan for its version, turned into one plain line."""
    m = _LOG_MISMATCH.search(log)
    if not m:
        return None
    return (f"the server's TensorRT refused a plan built with another TensorRT version ({m.group(1)} vs {m.group(2)}); "
            "rebuild the plan with --trt-image set to the TensorRT image of the server's release")


_VERSION_ENV = ("TRT_VERSION", "TENSORRT_VERSION", "NV_TENSORRT_VERSION")


def tensorrt_version_from_env(env: Sequence[str] | dict[str, str]) -> str | None:
    """TensorRT version from an image's environment (NVIDIA's images set TRT_VERSION)."""
    pairs = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env if "=" in e)
    values = dict(pairs)
    for key in _VERSION_ENV:
        if values.get(key) and parse_version(values[key]):
            return values[key]
    return None


def tensorrt_version_of_image(image: str, client: Any = None) -> str | None:
    """The TensorRT version inside a local image: its environment, else the libnvinfer file name; None if unknown."""
    try:
        import docker
    except ImportError:
        return None
    from tritongen.formats.tensorrt.container import run_to_completion
    from tritongen.server.docker import docker_client

    try:
        client = client or docker_client()
        found = tensorrt_version_from_env(client.images.get(image).attrs.get("Config", {}).get("Env") or [])
        if found:
            return found
        _, log = run_to_completion(image, ["-c", "ls /usr/lib/*-linux-gnu/libnvinfer.so.* "
                                                  "/usr/local/tensorrt/lib/libnvinfer.so.* 2>/dev/null"],
                                   entrypoint="sh", timeout_s=120, purpose="TensorRT version probe",
                                   timeout_hint="", client=client)
    except (TritongenError, docker.errors.DockerException):
        return None
    versions = [m.group(1) for m in re.finditer(r"libnvinfer\.so\.(\d+\.\d+\.\d+(?:\.\d+)?)", log)]
    return max(versions, key=parse_version) if versions else None
