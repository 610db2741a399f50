"""The two TensorRT builders: in this process, or inside a container of the target release; and whether one can run.

A plan only loads in a Triton whose TensorRT version is the one that built it (to the patch level), so tritongen
builds either in-process, where `tensorrt` imports and a GPU is visible, or inside `--trt-image` (e.g. NVIDIA's
TensorRT image of the same yy.mm as the serving Triton image), through the Docker SDK. Both run the same
standalone script (`trt_builder.py`), which also runs the engine on the parity inputs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tritongen import defaults
from tritongen.errors import TritongenError
from tritongen.formats.tensorrt.engine import EngineMeta

BUILDER_SCRIPT = Path(__file__).resolve().parent / "trt_builder.py"
PLAN_FILENAME = "model.plan"
CONTAINER_WORKDIR = "/tritongen-trt"
DEFAULT_WORKSPACE_MB = defaults.TRT_WORKSPACE_MB
CONTAINER_TIMEOUT_S = 3600
NEEDS = ("--format tensorrt needs TensorRT and an NVIDIA GPU: the `tensorrt` Python package with a visible GPU "
         "in this process, or --trt-image IMAGE (NVIDIA's TensorRT image of your Triton release, e.g. "
         "nvcr.io/nvidia/tensorrt:24.08-py3 for tritonserver:24.08-py3) with Docker and a GPU")
TIMEOUT_HINT = "a smaller --trt-workspace-mb or --builder-optimization-level speeds builds up"


@dataclass(frozen=True)
class TensorRTOptions:
    """How to build a plan; None means the default."""

    image: str | None = None  # --trt-image: build inside this container (its TensorRT = the server's)
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    timing_cache: Path | None = None  # default: a per-builder file under the user's cache directory
    dynamic_ranges: tuple[str, ...] = ()  # AXIS:MIN:OPT:MAX as given; parsed once (profiles.parse_dynamic_ranges)
    builder_optimization_level: int | None = None  # TensorRT's 0..5 (default 3)
    docker: str = "docker"  # the command reproduce.sh uses
    gpus: str = "all"  # as docker run --gpus: all | N | device=0,1 | none
    timeout_s: float = CONTAINER_TIMEOUT_S


Builder = Callable[[TensorRTOptions, Path], EngineMeta]


def default_timing_cache(options: TensorRTOptions) -> Path:
    """Timing caches are valid for one TensorRT version and GPU: one file per builder, reused across builds."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tritongen" / "tensorrt"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", options.image) if options.image else "in-process"
    return root / f"timing-{name}.cache"


def tensorrt_unavailable_reason(options: TensorRTOptions) -> str | None:
    """Why no plan can be built with these options here, or None when a builder is available."""
    if options.image:
        from tritongen.server.docker import docker_client

        try:
            docker_client().close()
        except TritongenError as exc:
            return f"--trt-image was given but {exc.message}"
        return None
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed and no --trt-image was given"
    if not gpu_visible():
        return "tensorrt is installed but no CUDA GPU is visible to this process"
    return None


def check_tensorrt_available(options: TensorRTOptions) -> None:
    """Fail with one line saying what is needed, before any slow step, when no builder can run here."""
    reason = tensorrt_unavailable_reason(options)
    if reason:
        raise TritongenError(f"{NEEDS}; here {reason}",
                             "build --format onnx (optionally with --ort-accelerator tensorrt for the TensorRT "
                             "execution provider in Triton's onnxruntime backend), or build on a GPU machine")


def gpu_visible() -> bool:
    """Whether the CUDA runtime sees a GPU (through ctypes: no CUDA Python package needed)."""
    from tritongen.formats.tensorrt.trt_builder import CudaRuntime

    try:
        return CudaRuntime().device_count() > 0
    except Exception:  # no libcudart, or a driver that fails to initialise: no GPU for us either way
        return False


def container_user() -> str | None:
    """The user the container runs as: files it writes (plan, caches) must belong to the user who runs tritongen."""
    if hasattr(os, "getuid") and os.getuid() != 0:
        return f"{os.getuid()}:{os.getgid()}"
    return None


def container_command(options: TensorRTOptions, workdir: Path | str, job_name: str = "job.json",
                      user: str | None = None) -> list[str]:
    """`docker run` for the builder script in the target image, as reproduce.sh runs it (tritongen uses the SDK)."""
    if not options.image:
        raise TritongenError("no --trt-image given", "pass --trt-image IMAGE")
    user = container_user() if user is None else user
    command = [options.docker, "run", "--rm", "--gpus", options.gpus]
    if user:
        command += ["--user", user, "--env", "HOME=/tmp"]
    source = str(Path(workdir).resolve()) if isinstance(workdir, Path) else workdir
    command += ["--volume", f"{source}:{CONTAINER_WORKDIR}", "--workdir", CONTAINER_WORKDIR,
                options.image, "python3", BUILDER_SCRIPT.name, job_name]
    return command


def reproduce_script(options: TensorRTOptions) -> str:
    """A shell script, kept with the plan, that rebuilds it from the files next to it."""
    if options.image:
        placeholder = "TRITONGEN_JOB_DIR"
        command = " ".join(_shell_quote(c) for c in container_command(options, placeholder, user=""))
        command = command.replace(placeholder, '"$(pwd)"')
    else:
        command = f"python3 {BUILDER_SCRIPT.name} job.json"
    return ("#!/bin/sh\n# Rebuild model.plan from model.onnx with the settings in job.json (written by tritongen).\n"
            "# Needs an NVIDIA GPU" + (" and Docker with the NVIDIA Container Toolkit" if options.image else
                                       " and the tensorrt Python package") + ".\n"
            "set -e\ncd \"$(dirname \"$0\")\"\n" + command + "\n")


def _shell_quote(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_./:=,@+-]+", text) else "'" + text.replace("'", "'\\''") + "'"


def build_in_process(options: TensorRTOptions, job_path: Path) -> EngineMeta:
    """Run the builder script in this process (tensorrt imported here)."""
    from tritongen.formats.tensorrt import trt_builder

    try:
        return EngineMeta.from_dict(trt_builder.run_job(job_path))
    except trt_builder.BuildError as exc:
        raise TritongenError(f"TensorRT build failed: {exc}", "see the TensorRT messages above") from exc


ContainerRun = Callable[[TensorRTOptions, Path, str], tuple[int, str]]


def run_builder_container(options: TensorRTOptions, workdir: Path, job_name: str) -> tuple[int, str]:
    """The builder script in `options.image` with the GPUs, the job directory mounted: (exit code, log).

    The container is removed however the build ends; past `options.timeout_s` it is a TritongenError.
    """
    from tritongen.formats.tensorrt.container import run_to_completion

    user = container_user()
    return run_to_completion(options.image or "", ["python3", BUILDER_SCRIPT.name, job_name],
                             timeout_s=options.timeout_s, purpose="TensorRT build", timeout_hint=TIMEOUT_HINT,
                             mount=(workdir, CONTAINER_WORKDIR), working_dir=CONTAINER_WORKDIR, user=user,
                             environment={"HOME": "/tmp"} if user else None, gpus=options.gpus)


def build_in_container(options: TensorRTOptions, job_path: Path, run: ContainerRun | None = None) -> EngineMeta:
    """Run the builder script inside `options.image` with the GPU; the job directory is shared with it."""
    code, log = (run or run_builder_container)(options, job_path.parent, job_path.name)
    if code != 0:
        raise container_error(options.image or "", code, log)
    metadata = job_path.parent / json.loads(job_path.read_text())["metadata"]
    if not metadata.exists():
        raise TritongenError(f"the TensorRT build in {options.image} wrote no engine description",
                             "run the command in tritongen/tensorrt/reproduce.sh by hand to see its output")
    return EngineMeta.from_dict(json.loads(metadata.read_text()))


def container_error(image: str, code: int, log: str) -> TritongenError:
    """One clear line for a builder container that exited with an error: the script's own line where it wrote one."""
    from tritongen.formats.tensorrt.container import docker_failure
    from tritongen.formats.tensorrt.trt_builder import ERROR_PREFIX

    lines = [line.strip() for line in log.splitlines() if line.strip()]
    ours = [line[len(ERROR_PREFIX):] for line in lines if line.startswith(ERROR_PREFIX)]
    if ours:
        return TritongenError(f"TensorRT build in {image} failed: {ours[-1]}", "see the TensorRT log with --debug",
                              details="\n".join(lines[-40:]))
    return docker_failure(image, log) or TritongenError(
        f"the TensorRT build in {image} failed (exit code {code}): {lines[-1] if lines else ''}",
        "run tritongen/tensorrt/reproduce.sh in the job directory to see the full output",
        details="\n".join(lines[-40:]))


def default_builder(options: TensorRTOptions, job: Path) -> EngineMeta:
    """In the container when `--trt-image` was given, else in this process."""
    return build_in_container(options, job) if options.image else build_in_process(options, job)
