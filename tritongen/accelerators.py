"""`--ort-accelerator`: execution providers for Triton's onnxruntime backend, as config.pbtxt `optimization` entries.

`tensorrt[:fp16|:int8]` and `cuda` are GPU accelerators, `openvino` a CPU one (Triton's onnxruntime_backend
README, "ONNX Runtime with TensorRT optimization"). The TensorRT execution provider builds engines when the model
loads; its engine and timing caches go to a fixed path inside the model's directory on the server, so a restart
reuses them instead of rebuilding, and warmup (always written) triggers the build at load, not on a user request.

Rendered and checked against Triton's schema here; not run here (no GPU, and the embedded Triton has only the
python backend, which ignores these settings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tritongen.config import ExecutionAccelerator
from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec

if TYPE_CHECKING:
    from tritongen.formats.tensorrt.profiles import DynamicRange

ACCELERATORS = {"tensorrt": "gpu", "cuda": "gpu", "openvino": "cpu"}
TRT_PRECISIONS = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}
# Where tritongen's compose file and Docker launcher mount the model repository inside the server container.
SERVER_REPOSITORY = "/models"
ENGINE_CACHE_DIR = "trt_cache"
DEFAULT_TRT_WORKSPACE_BYTES = 1 << 30


@dataclass(frozen=True)
class AcceleratorRequest:
    """One `--ort-accelerator NAME[:PRECISION]`."""

    name: str
    precision: str | None = None  # tensorrt only: fp32 | fp16 | int8

    @property
    def device(self) -> str:
        return ACCELERATORS[self.name]


def parse_ort_accelerator(text: str) -> AcceleratorRequest:
    name, _, precision = text.strip().lower().partition(":")
    if name not in ACCELERATORS:
        raise TritongenError(f"unknown --ort-accelerator '{text}'",
                             "use tensorrt, tensorrt:fp16, tensorrt:int8, cuda or openvino")
    if precision and (name != "tensorrt" or precision not in TRT_PRECISIONS):
        raise TritongenError(f"--ort-accelerator '{text}': only tensorrt takes a precision (fp32, fp16 or int8)",
                             "e.g. --ort-accelerator tensorrt:fp16")
    return AcceleratorRequest(name, precision or None)


def parse_ort_accelerators(items: Sequence[str], *, kind: str, precision: str, quantize: str,
                           formats: Sequence[str]) -> tuple[AcceleratorRequest, ...]:
    """Parse and check `--ort-accelerator` values against the rest of the build, before anything is exported."""
    requests = tuple(parse_ort_accelerator(i) for i in items)
    if not requests:
        return ()
    if "onnx" not in formats:
        raise TritongenError("--ort-accelerator configures Triton's onnxruntime backend, but no --format onnx is built",
                             "add --format onnx")
    gpu = [r for r in requests if r.device == "gpu"]
    cpu = [r for r in requests if r.device == "cpu"]
    if len(gpu) > 1 or len(cpu) > 1:
        raise TritongenError("more than one --ort-accelerator for the same device",
                             "give at most one GPU accelerator (tensorrt or cuda) and one CPU accelerator (openvino)")
    if gpu and kind == "cpu":
        raise TritongenError(f"--ort-accelerator {gpu[0].name} runs on a GPU, but --kind cpu was given",
                             "use --kind gpu or auto, or --ort-accelerator openvino for CPU")
    if cpu and kind == "gpu":
        raise TritongenError("--ort-accelerator openvino runs on the CPU, but --kind gpu was given",
                             "use --kind cpu or auto")
    for r in requests:
        if r.name != "tensorrt":
            continue
        if r.precision == "int8" and (precision != "int8" or quantize != "static"):
            raise TritongenError(
                "--ort-accelerator tensorrt:int8 needs a QDQ-quantized model: the TensorRT execution provider takes "
                "its INT8 scales from the Q/DQ nodes", "add --precision int8 --calibration-data FILE.npz")
        if precision == "int8" and quantize == "static" and r.precision != "int8":
            raise TritongenError(
                "--precision int8 writes a QDQ model, which the TensorRT execution provider runs only with INT8 on",
                "use --ort-accelerator tensorrt:int8")
        if precision == "int8" and quantize == "dynamic":
            raise TritongenError("dynamically quantized ops (DynamicQuantizeLinear, MatMulInteger) do not run in "
                                 "TensorRT", "use --quantize static for tensorrt:int8, or --ort-accelerator cuda")
    return requests


def execution_accelerators(requests: Sequence[AcceleratorRequest], model_name: str, *,
                           profile_shapes: dict[str, str] | None = None, cache_dir: str | None = None,
                           workspace_bytes: int = DEFAULT_TRT_WORKSPACE_BYTES) -> tuple[ExecutionAccelerator, ...]:
    """The config entries for the requests; `profile_shapes` are the trt_profile_{min,opt,max}_shapes strings."""
    out = []
    for r in requests:
        parameters: list[tuple[str, str]] = []
        if r.name == "tensorrt":
            cache = cache_dir or f"{SERVER_REPOSITORY}/{model_name}/{ENGINE_CACHE_DIR}"
            parameters += [("precision_mode", TRT_PRECISIONS[r.precision or "fp32"]),
                           ("max_workspace_size_bytes", str(workspace_bytes)),
                           ("trt_engine_cache_enable", "1"), ("trt_engine_cache_path", cache),
                           ("trt_timing_cache_enable", "1"), ("trt_timing_cache_path", cache)]
            if profile_shapes:
                parameters += [(f"trt_profile_{which}_shapes", profile_shapes[which]) for which in ("min", "opt", "max")]
        out.append(ExecutionAccelerator(r.name, r.device, tuple(parameters)))
    return tuple(out)


def engine_cache_note(requests: Sequence[AcceleratorRequest], model_name: str, cache_dir: str | None) -> str | None:
    """What a deployer must know about the engine cache directory (it must be writable by the server)."""
    if not any(r.name == "tensorrt" for r in requests):
        return None
    cache = cache_dir or f"{SERVER_REPOSITORY}/{model_name}/{ENGINE_CACHE_DIR}"
    return (f"the TensorRT execution provider caches engines in {cache} on the server: mount the repository at "
            f"{SERVER_REPOSITORY} with that directory writable (or pass --ort-engine-cache DIR), or engines are "
            "rebuilt at every load")


def spec_profile_shapes(spec: ModelSpec, ranges: Mapping[str, DynamicRange],
                        preferred_batch_sizes: Sequence[int] = ()) -> dict[str, str] | None:
    """TensorRT EP profile strings when every dynamic axis has a range (batch always has one); else None.

    `ranges` are the parsed `--dynamic-range` values (tritongen.formats.tensorrt.profiles.parse_dynamic_ranges).
    """
    from tritongen.formats.tensorrt.profiles import axis_ranges, ort_profile_shapes, profile_from_spec

    resolved = axis_ranges(spec, ranges, preferred_batch_sizes, require_all=False)
    if any(a not in resolved for a in spec.dynamic_axes):
        return None  # the EP then builds engines for the shapes it sees, which the cache keeps
    return ort_profile_shapes(profile_from_spec(spec, ranges, preferred_batch_sizes))
