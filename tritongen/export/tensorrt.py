"""TensorRT plans for Triton: optimization profiles from the ModelSpec, two builders, configs from the engine.

A plan only loads in a Triton whose TensorRT version is the one that built it (to the patch level), so tritongen
builds either in-process, where `tensorrt` imports and a GPU is visible, or inside a container of the target
release (`--trt-image`, e.g. NVIDIA's TensorRT image of the same yy.mm as the serving Triton image). Both run the
same standalone script (`trt_builder.py`), which also runs the engine on the parity inputs so the plan is
checked against PyTorch before it is written.

What has run where: the profile computation, the container command line, configs from engine metadata and the
version checks are tested here; the builder itself is tested against a mock `tensorrt` module only, because this
project's machines have no GPU and cannot install TensorRT. Tests that need the real thing are marked
`tensorrt` and skip with a reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tritongen import defaults
from tritongen.errors import CheckFailed, TritongenError
from tritongen.runners.base import Runner
from tritongen.spec import BATCH_AXIS, DTYPES, DType, ModelSpec, TensorSpec, random_inputs
from tritongen.verify import ParityReport, compare_outputs, merge, parity_cases

PLAN_FILENAME = "model.plan"
BUILDER_SCRIPT = Path(__file__).resolve().parent / "trt_builder.py"
CONTAINER_WORKDIR = "/tritongen-trt"
DEFAULT_WORKSPACE_MB = defaults.TRT_WORKSPACE_MB
CONTAINER_TIMEOUT_S = 3600
# TensorRT's FP32 builds use TF32 tensor cores by default on Ampere and later: about 1e-3 relative error.
TENSORRT_TOLERANCE = {"fp32": (1e-3, 1e-3), "fp16": (1e-2, 1e-2)}
NEEDS = ("--format tensorrt needs TensorRT and an NVIDIA GPU: the `tensorrt` Python package with a visible GPU "
         "in this process, or --trt-image IMAGE (NVIDIA's TensorRT image of your Triton release, e.g. "
         "nvcr.io/nvidia/tensorrt:24.08-py3 for tritonserver:24.08-py3) with Docker and a GPU")


# ---------------------------------------------------------------------------------------------------------------
# Optimization profiles


@dataclass(frozen=True)
class DynamicRange:
    """`--dynamic-range AXIS:MIN:OPT:MAX`: the sizes an engine accepts on one named axis, and the one it tunes for."""

    axis: str
    min: int
    opt: int
    max: int


def parse_dynamic_range(text: str) -> DynamicRange:
    parts = text.split(":")
    example = "use AXIS:MIN:OPT:MAX, e.g. --dynamic-range seq:1:128:512 (or batch:1:8:32)"
    if len(parts) != 4 or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", parts[0]):
        raise TritongenError(f"malformed --dynamic-range '{text}'", example)
    try:
        low, opt, high = (int(p) for p in parts[1:])
    except ValueError:
        raise TritongenError(f"malformed --dynamic-range '{text}': sizes must be integers", example) from None
    if not 1 <= low <= opt <= high:
        raise TritongenError(f"--dynamic-range '{text}' needs 1 <= MIN <= OPT <= MAX", example)
    return DynamicRange(parts[0], low, opt, high)


def parse_dynamic_ranges(items: Sequence[str]) -> dict[str, DynamicRange]:
    ranges: dict[str, DynamicRange] = {}
    for item in items:
        r = parse_dynamic_range(item)
        if r.axis in ranges:
            raise TritongenError(f"--dynamic-range gives axis '{r.axis}' twice", "give each axis one range")
        ranges[r.axis] = r
    return ranges


@dataclass(frozen=True)
class ShapeRange:
    """Full shapes (batch first where batched) of one input in an optimization profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def axis_ranges(spec: ModelSpec, ranges: dict[str, DynamicRange], preferred_batch_sizes: Sequence[int] = (),
                *, require_all: bool = True) -> dict[str, DynamicRange]:
    """A range for the batch axis and every named axis: the user's, or batch 1 / largest preferred / max batch size.

    Named axes have no safe default maximum (too small rejects requests, too large wastes memory), so each needs
    --dynamic-range; with `require_all` False the ones without are left out.
    """
    unknown = [a for a in ranges if a != BATCH_AXIS and a not in spec.dynamic_axes]
    if unknown:
        raise TritongenError(f"--dynamic-range names axis '{unknown[0]}', which no input has",
                             f"dynamic axes are: {', '.join([BATCH_AXIS] * spec.batched + spec.dynamic_axes)}")
    out: dict[str, DynamicRange] = {}
    if spec.batched:
        mbs = spec.max_batch_size
        batch = ranges.get(BATCH_AXIS) or DynamicRange(BATCH_AXIS, 1, max([b for b in preferred_batch_sizes
                                                                          if b <= mbs], default=mbs), mbs)
        out[BATCH_AXIS] = batch
    elif BATCH_AXIS in ranges:
        raise TritongenError("--dynamic-range batch:... given but --max-batch-size is 0 (no batch axis)",
                             "drop it, or set --max-batch-size")
    missing = [a for a in spec.dynamic_axes if a not in ranges]
    if missing and require_all:
        lengths = spec.lengths(missing[0])
        raise TritongenError(
            f"axis '{missing[0]}' is dynamic, and a TensorRT engine needs the range of sizes it will accept",
            f"pass --dynamic-range {missing[0]}:1:{lengths[-1]}:{max(lengths[-1] * 4, 64)} (MIN:OPT:MAX)"
            + (f"; also for {', '.join(missing[1:])}" if len(missing) > 1 else ""))
    out.update({a: ranges[a] for a in spec.dynamic_axes if a in ranges})
    return out


def profile_from_spec(spec: ModelSpec, ranges: dict[str, DynamicRange],
                      preferred_batch_sizes: Sequence[int] = ()) -> dict[str, ShapeRange]:
    """One optimization profile: min/opt/max full shapes for every input, from one description of the axes."""
    resolved = axis_ranges(spec, ranges, preferred_batch_sizes)
    profile = {}
    for t in spec.inputs:
        dims: list[int | str] = ([BATCH_AXIS] if spec.batched else []) + list(t.shape)
        shapes = [tuple(d if isinstance(d, int) else getattr(resolved[d], which) for d in dims)
                  for which in ("min", "opt", "max")]
        profile[t.name] = ShapeRange(*shapes)
    return profile


def ort_profile_shapes(profile: dict[str, ShapeRange]) -> dict[str, str]:
    """The TensorRT execution provider's trt_profile_{min,opt,max}_shapes strings: `name:1x3x224x224,...`."""
    return {which: ",".join(f"{name}:{'x'.join(str(d) for d in getattr(r, which))}" for name, r in profile.items())
            for which in ("min", "opt", "max")}


def check_lengths_in_ranges(spec: ModelSpec, resolved: dict[str, DynamicRange]) -> None:
    """The lengths parity runs at must be ones the engine accepts."""
    for axis in spec.dynamic_axes:
        r = resolved.get(axis)
        outside = [n for n in spec.lengths(axis) if r and not r.min <= n <= r.max]
        if outside:
            raise TritongenError(f"axis '{axis}' is checked at length {outside[0]}, outside --dynamic-range "
                                 f"{axis}:{r.min}:{r.opt}:{r.max}", f"pass --axis-length {axis}=A,B within the range")


# ---------------------------------------------------------------------------------------------------------------
# Options and the two builders


@dataclass(frozen=True)
class TensorRTOptions:
    """How to build a plan; None means the default."""

    image: str | None = None  # --trt-image: build inside this container (its TensorRT = the server's)
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    timing_cache: Path | None = None  # default: a per-builder file under the user's cache directory
    dynamic_ranges: tuple[str, ...] = ()  # AXIS:MIN:OPT:MAX
    builder_optimization_level: int | None = None  # TensorRT's 0..5 (default 3)
    docker: str = "docker"
    gpus: str = "all"  # docker run --gpus
    timeout_s: float = CONTAINER_TIMEOUT_S


def default_timing_cache(options: TensorRTOptions) -> Path:
    """Timing caches are valid for one TensorRT version and GPU: one file per builder, reused across builds."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tritongen" / "tensorrt"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", options.image) if options.image else "in-process"
    return root / f"timing-{name}.cache"


def tensorrt_unavailable_reason(options: TensorRTOptions) -> str | None:
    """Why no plan can be built with these options here, or None when a builder is available."""
    if options.image:
        if shutil.which(options.docker) is None:
            return f"--trt-image was given but `{options.docker}` is not installed"
        try:
            done = subprocess.run([options.docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the Docker daemon did not answer ({exc})"
        if done.returncode != 0:
            return "the Docker daemon is not reachable (is dockerd running, and may this user use it?)"
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
    from tritongen.export.trt_builder import CudaRuntime

    try:
        return CudaRuntime().device_count() > 0
    except Exception:  # no libcudart, or a driver that fails to initialise: no GPU for us either way
        return False


def container_command(options: TensorRTOptions, workdir: Path | str, job_name: str = "job.json",
                      user: str | None = None) -> list[str]:
    """`docker run` for the builder script in the target image; the work directory is mounted read-write."""
    if not options.image:
        raise TritongenError("no --trt-image given", "pass --trt-image IMAGE")
    if user is None and hasattr(os, "getuid") and os.getuid() != 0:
        # Files the container writes (plan, caches) must belong to the user who runs tritongen.
        user = f"{os.getuid()}:{os.getgid()}"
    command = [options.docker, "run", "--rm", "--gpus", options.gpus]
    if user:
        command += ["--user", user, "--env", "HOME=/tmp"]
    source = str(Path(workdir).resolve()) if isinstance(workdir, Path) else workdir
    command += ["--volume", f"{source}:{CONTAINER_WORKDIR}", "--workdir", CONTAINER_WORKDIR,
                options.image, "python3", BUILDER_SCRIPT.name, job_name]
    return command


@dataclass(frozen=True)
class EngineTensor:
    name: str
    is_input: bool
    dtype: DType
    shape: tuple[int, ...]  # -1 where dynamic
    profile: dict[str, list[int]] | None = None


@dataclass(frozen=True)
class EngineMeta:
    """What the built engine says about itself (names, dtypes, shapes) and where it was built."""

    tensorrt_version: str
    compute_capability: str
    cuda_runtime: str
    tensors: tuple[EngineTensor, ...]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> list[EngineTensor]:
        return [t for t in self.tensors if t.is_input]

    @property
    def outputs(self) -> list[EngineTensor]:
        return [t for t in self.tensors if not t.is_input]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineMeta:
        tensors = tuple(EngineTensor(t["name"], t["mode"] == "input", dtype_from_tensorrt(t["dtype"]),
                                     tuple(int(d) for d in t["shape"]), t.get("profile"))
                        for t in data["tensors"])
        facts = {k: v for k, v in data.items() if k not in ("tensorrt_version", "compute_capability", "cuda_runtime",
                                                            "tensors")}
        return cls(str(data["tensorrt_version"]), str(data["compute_capability"]), str(data.get("cuda_runtime", "")),
                   tensors, facts)


def dtype_from_tensorrt(name: str) -> DType:
    for dt in DTYPES:
        if dt.tensorrt == name:
            return dt
    raise TritongenError(f"the engine has a tensor of TensorRT type {name}, which Triton configs here do not cover",
                         "export the model with fp32/fp16/int32/int64/bool inputs and outputs")


def build_in_process(job_path: Path) -> EngineMeta:
    """Run the builder script in this process (tensorrt imported here)."""
    from tritongen.export import trt_builder

    try:
        return EngineMeta.from_dict(trt_builder.run_job(job_path))
    except trt_builder.BuildError as exc:
        raise TritongenError(f"TensorRT build failed: {exc}", "see the TensorRT messages above") from exc


def build_in_container(options: TensorRTOptions, job_path: Path,
                       run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> EngineMeta:
    """Run the builder script inside `options.image` with the GPU; the job directory is shared with it."""
    command = container_command(options, job_path.parent, job_path.name)
    try:
        done = run(command, capture_output=True, text=True, timeout=options.timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise TritongenError(f"the TensorRT build in {options.image} took more than {options.timeout_s:.0f}s",
                             "a smaller --workspace or --builder-optimization-level speeds builds up") from exc
    if done.returncode != 0:
        raise container_error(options.image or "", done.returncode, done.stderr or "")
    metadata = job_path.parent / json.loads(job_path.read_text())["metadata"]
    if not metadata.exists():
        raise TritongenError(f"the TensorRT build in {options.image} wrote no engine description",
                             "run the command in tritongen/tensorrt/reproduce.sh by hand to see its output")
    return EngineMeta.from_dict(json.loads(metadata.read_text()))


def container_error(image: str, code: int, stderr: str) -> TritongenError:
    """One clear line for the common ways `docker run` of a TensorRT image fails."""
    from tritongen.export.trt_builder import ERROR_PREFIX

    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    ours = [line[len(ERROR_PREFIX):] for line in lines if line.startswith(ERROR_PREFIX)]
    if ours:
        return TritongenError(f"TensorRT build in {image} failed: {ours[-1]}", "see the TensorRT log with --debug",
                              details="\n".join(lines[-40:]))
    text = stderr.lower()
    if "could not select device driver" in text or "nvidia-container-cli" in text:
        return TritongenError(f"docker could not give {image} a GPU",
                              "install the NVIDIA Container Toolkit and restart dockerd, then retry")
    if "unable to find image" in text or "pull access denied" in text or "manifest unknown" in text:
        return TritongenError(f"docker cannot find or pull the image '{image}'",
                              "docker pull it first (nvcr.io needs `docker login nvcr.io`), or check the tag")
    return TritongenError(f"the TensorRT build in {image} failed (exit code {code}): {lines[-1] if lines else ''}",
                          "run tritongen/tensorrt/reproduce.sh in the job directory to see the full output",
                          details="\n".join(lines[-40:]))


# ---------------------------------------------------------------------------------------------------------------
# Configs from the engine


def spec_from_engine(meta: EngineMeta, spec: ModelSpec) -> ModelSpec:
    """The spec as the engine serves it: its dtypes (INT32 where TensorRT 8 narrowed INT64), max batch within the
    profile's max."""
    by_name = {t.name: t for t in meta.tensors}
    missing = [t.name for t in (*spec.inputs, *spec.outputs) if t.name not in by_name]
    if missing:
        raise TritongenError(f"the TensorRT engine has no tensor named {', '.join(missing)} "
                             f"(it has {', '.join(by_name)})", "this is a tritongen bug; please report it")

    def follow(t: TensorSpec) -> TensorSpec:
        return replace(t, dtype=by_name[t.name].dtype)

    mbs = spec.max_batch_size
    if spec.batched:
        maxima = [t.profile["max"][0] for t in meta.inputs if t.profile]
        mbs = min([mbs, *maxima])
    return replace(spec, inputs=tuple(follow(t) for t in spec.inputs), outputs=tuple(follow(t) for t in spec.outputs),
                   max_batch_size=mbs)


def check_config_against_engine(proto: Any, meta: EngineMeta) -> None:
    """Names, dtypes, ranks, batch axis and max batch size of a tensorrt_plan config match the engine."""
    from tritonclient.grpc import model_config_pb2

    problems: list[str] = []
    batched = proto.max_batch_size > 0
    engine = {t.name: t for t in meta.tensors}
    for kind, entries, want_input in (("input", proto.input, True), ("output", proto.output, False)):
        for entry in entries:
            t = engine.get(entry.name)
            if t is None or t.is_input != want_input:
                problems.append(f"{kind} '{entry.name}' is not an engine {kind}")
                continue
            cfg_dtype = model_config_pb2.DataType.Name(entry.data_type)
            if cfg_dtype != t.dtype.triton:
                problems.append(f"{kind} '{entry.name}' is {cfg_dtype} in the config but {t.dtype.triton} in the engine")
            shape = list(t.shape)
            if batched:
                if not shape or shape[0] != -1:
                    problems.append(f"{kind} '{entry.name}' has no dynamic batch axis in the engine")
                    continue
                shape = shape[1:]
                if t.profile and t.profile["max"][0] < proto.max_batch_size:
                    problems.append(f"max_batch_size {proto.max_batch_size} exceeds the profile's max batch "
                                    f"{t.profile['max'][0]} for input '{entry.name}'")
            dims = list(entry.dims)
            if dims == [1] and not shape:
                continue
            if len(dims) != len(shape):
                problems.append(f"{kind} '{entry.name}' has {len(dims)} dims in the config but {len(shape)} in the engine")
            elif any(c != d and not (c == -1 and d == -1) for c, d in zip(dims, shape, strict=True)):
                problems.append(f"{kind} '{entry.name}' dims {dims} in the config but {shape} in the engine")
        declared = {e.name for e in entries}
        for t in meta.tensors:
            if t.is_input == want_input and t.name not in declared:
                problems.append(f"engine {kind} '{t.name}' is missing from the config")
    if any(g.kind != model_config_pb2.ModelInstanceGroup.KIND_GPU for g in proto.instance_group):
        problems.append("a TensorRT plan needs KIND_GPU instances")
    from tritongen.config import raise_config_mismatch

    raise_config_mismatch(problems, "the TensorRT engine")


# ---------------------------------------------------------------------------------------------------------------
# The step `build` calls


@dataclass(frozen=True)
class TensorRTArtifact:
    plan: Path
    meta: EngineMeta
    spec: ModelSpec
    parity: ParityReport
    manifest: dict[str, Any]  # the manifest's "tensorrt" section
    fidelity: dict[str, Any] | None = None


def write_job(work: Path, onnx_files: Sequence[Path], spec: ModelSpec, profile: dict[str, ShapeRange],
              precision: str, options: TensorRTOptions, calibration: Sequence[dict[str, np.ndarray]] | None,
              parity_feeds: Sequence[dict[str, np.ndarray]], timing_cache: Path | None,
              fp16_io: bool = False) -> Path:
    """Lay out everything the builder script needs in one directory (mounted as is into the container)."""
    work.mkdir(parents=True, exist_ok=True)
    for f in onnx_files:
        shutil.copy2(f, work / f.name)
    shutil.copy2(BUILDER_SCRIPT, work / BUILDER_SCRIPT.name)
    job: dict[str, Any] = {
        "onnx": "model.onnx", "plan": PLAN_FILENAME, "metadata": "engine.json", "precision": precision,
        "fp16_io": fp16_io,
        "workspace_bytes": int(options.workspace_mb) * (1 << 20),
        "builder_optimization_level": options.builder_optimization_level,
        "profile": {name: r.to_dict() for name, r in profile.items()},
        "calibration": None, "timing_cache": None, "parity": None,
    }
    if precision == "int8":
        if not calibration:
            raise TritongenError("--format tensorrt --precision int8 needs calibration data: TensorRT calibrates "
                                 "the engine itself", "pass --calibration-data FILE.npz (or --calibration random "
                                 "for a test build)")
        shapes = {k: list(v.shape) for k, v in calibration[0].items()}
        files = []
        (work / "calibration").mkdir(exist_ok=True)
        for i, feeds in enumerate(calibration):
            if {k: list(v.shape) for k, v in feeds.items()} != shapes:
                continue  # TensorRT calibrates at one shape (the calibration profile's)
            np.savez(work / "calibration" / f"{i:04d}.npz", **feeds)
            files.append(f"calibration/{i:04d}.npz")
        job["calibration"] = {"files": files, "cache": "calibration.cache", "shapes": shapes}
    if timing_cache is not None:
        # The script reads and writes the cache inside the job directory; the host copies it in and out.
        if timing_cache.exists():
            shutil.copy2(timing_cache, work / "timing.cache")
        job["timing_cache"] = "timing.cache"
    (work / "parity").mkdir(exist_ok=True)
    inputs, outputs = [], []
    for i, feeds in enumerate(parity_feeds):
        np.savez(work / "parity" / f"in{i:03d}.npz", **feeds)
        inputs.append(f"parity/in{i:03d}.npz")
        outputs.append(f"parity/out{i:03d}.npz")
    job["parity"] = {"inputs": inputs, "outputs": outputs}
    path = work / "job.json"
    path.write_text(json.dumps(job, indent=2) + "\n")
    return path


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


def plan_into_version_dir(onnx_files: Sequence[Path], spec: ModelSpec, reference: Runner, options: TensorRTOptions,
                          precision: str, version_dir: Path, work: Path, *,
                          calibration: Sequence[dict[str, np.ndarray]] | None = None,
                          preferred_batch_sizes: Sequence[int] = (), atol: float | None = None,
                          rtol: float | None = None, accept_fidelity: bool = False, fp16_io: bool = False,
                          step: Callable[[str], Any] | None = None,
                          builder: Callable[[TensorRTOptions, Path], EngineMeta] | None = None) -> TensorRTArtifact:
    """Build `model.plan` into `version_dir` from the FP32 ONNX file, check it against PyTorch, and describe it."""
    from tritongen.precision import DEFAULT_THRESHOLDS, fidelity_from_outputs

    stepper = step or (lambda _desc: contextlib.nullcontext())
    ranges = parse_dynamic_ranges(options.dynamic_ranges)
    resolved = axis_ranges(spec, ranges, preferred_batch_sizes)
    check_lengths_in_ranges(spec, resolved)
    profile = profile_from_spec(spec, ranges, preferred_batch_sizes)
    checked_spec = replace(spec, max_batch_size=resolved[BATCH_AXIS].max) if spec.batched else spec
    cases = parity_cases(checked_spec)
    parity_feeds = [random_inputs(checked_spec, batch, lengths, np.random.default_rng(seed))
                    for batch, lengths, seed in cases]
    timing_cache = options.timing_cache or default_timing_cache(options)
    job = write_job(work, onnx_files, spec, profile, precision, options, calibration, parity_feeds, timing_cache,
                    fp16_io)
    where = f"in {options.image}" if options.image else "in-process"
    with stepper(f"building the TensorRT plan ({precision}, {where})"):
        meta = (builder or _default_builder)(options, job)
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    if (work / "timing.cache").exists():
        shutil.copy2(work / "timing.cache", timing_cache)
    served = spec_from_engine(meta, spec)

    expected = [reference.infer(f) for f in parity_feeds]
    actual = [_load_npz(work / "parity" / f"out{i:03d}.npz") for i in range(len(parity_feeds))]
    if precision == "int8":
        worst = max((p.max_abs_err for e, a in zip(expected, actual, strict=True)
                     for p in compare_outputs(a, e, np.inf, 0.0).values()), default=0.0)
        atol_used, rtol_used = (atol if atol is not None else max(1e-4, 2 * worst)), (rtol if rtol is not None else 1e-3)
    else:
        default = TENSORRT_TOLERANCE[precision]
        atol_used, rtol_used = (atol if atol is not None else default[0]), (rtol if rtol is not None else default[1])
    worst_by_output: dict[str, Any] = {}
    for e, a in zip(expected, actual, strict=True):
        for name, p in compare_outputs(a, e, atol_used, rtol_used).items():
            worst_by_output[name] = merge(worst_by_output.get(name), p)
    parity = ParityReport(f"tensorrt ({where})", atol_used, rtol_used,
                          tuple(worst_by_output[o.name] for o in spec.outputs if o.name in worst_by_output),
                          tuple(f"batch={b} " + " ".join(f"{k}={v}" for k, v in lengths.items()) + f" seed={s}"
                                for b, lengths, s in cases))
    fidelity = None
    if precision != "fp32":
        thresholds = DEFAULT_THRESHOLDS[precision]
        report = fidelity_from_outputs(expected, actual, checked_spec, thresholds, "parity inputs",
                                       sum(len(next(iter(f.values()))) if spec.batched else 1 for f in parity_feeds))
        fidelity = report.to_dict()
        if not report.passed and not accept_fidelity:
            raise CheckFailed(f"the TensorRT {precision.upper()} engine is too far from PyTorch FP32: "
                              f"{report.failures()}", "use better calibration data, build fp16, or pass "
                              "--accept-fidelity to ship it anyway")
    if not parity.passed and not accept_fidelity:
        raise CheckFailed(f"the TensorRT engine does not match PyTorch: {parity.failures()}",
                          "loosen --atol/--rtol if the difference is acceptable, or pass --accept-fidelity")

    shutil.copy2(work / PLAN_FILENAME, version_dir / PLAN_FILENAME)
    keep = version_dir / "tritongen" / "tensorrt"
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("job.json", BUILDER_SCRIPT.name, "engine.json", "calibration.cache"):
        if (work / name).exists():
            shutil.copy2(work / name, keep / name)
    (keep / "reproduce.sh").write_text(reproduce_script(options))
    (keep / "reproduce.sh").chmod(0o755)
    manifest = {
        "tensorrt_version": meta.tensorrt_version, "compute_capability": meta.compute_capability,
        "cuda_runtime": meta.cuda_runtime, "builder": "container" if options.image else "in-process",
        "image": options.image, "precision": precision, "fp16_io": fp16_io, "workspace_mb": options.workspace_mb,
        "builder_optimization_level": options.builder_optimization_level,
        "profile": {name: r.to_dict() for name, r in profile.items()},
        "calibration_cache": "tritongen/tensorrt/calibration.cache" if (work / "calibration.cache").exists() else None,
        "timing_cache": str(timing_cache), "reproduce": "tritongen/tensorrt/reproduce.sh",
        "engine": {"inputs": [_tensor_dict(t) for t in meta.inputs], "outputs": [_tensor_dict(t) for t in meta.outputs]},
        **({"build": meta.facts} if meta.facts else {}),
    }
    return TensorRTArtifact(version_dir / PLAN_FILENAME, meta, served, parity, manifest, fidelity)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _tensor_dict(t: EngineTensor) -> dict[str, Any]:
    return {"name": t.name, "dtype": t.dtype.short, "shape": list(t.shape), **({"profile": t.profile} if t.profile
                                                                                else {})}


def _default_builder(options: TensorRTOptions, job: Path) -> EngineMeta:
    return build_in_container(options, job) if options.image else build_in_process(job)


# ---------------------------------------------------------------------------------------------------------------
# Version checks (for `validate` and `serve`)


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


def tensorrt_version_of_image(image: str, docker: str = "docker") -> str | None:
    """The TensorRT version inside a local image: its environment, else the libnvinfer file name; None if unknown."""
    try:
        done = subprocess.run([docker, "image", "inspect", "--format", "{{json .Config.Env}}", image],
                              capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            found = tensorrt_version_from_env(json.loads(done.stdout or "[]") or [])
            if found:
                return found
        done = subprocess.run([docker, "run", "--rm", "--entrypoint", "sh", image, "-c",
                               "ls /usr/lib/*-linux-gnu/libnvinfer.so.* /usr/local/tensorrt/lib/libnvinfer.so.* "
                               "2>/dev/null"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    versions = [m.group(1) for m in re.finditer(r"libnvinfer\.so\.(\d+\.\d+\.\d+(?:\.\d+)?)", done.stdout)]
    return max(versions, key=parse_version) if versions else None
