"""Build a TensorRT plan from an ONNX file, describe it, and run it on given inputs: a standalone script.

It needs only the `tensorrt` Python package, numpy, the CUDA runtime library and a GPU, and imports nothing from
tritongen, so the same file runs in-process (tritongen imports it) and inside a container of the target TensorRT
release (`python3 trt_builder.py job.json`), where the plan's TensorRT version then matches the serving Triton's.

Written against the TensorRT 8.6 / 10.x Python API. NOT RUN in tritongen's development environment, which has no
GPU and cannot install TensorRT; its tests drive it with a mock `tensorrt` module.

The job file (JSON; paths relative to it):
  onnx, plan, metadata: input model, output plan, output description (JSON)
  precision: fp32 | fp16 | int8; fp16_io: FP16 network inputs/outputs; workspace_bytes;
  builder_optimization_level (or null)
  profile: {input: {min: [...], opt: [...], max: [...]}} (full shapes, batch first)
  calibration: {files: [.npz ...], cache: path, shapes: {input: [...]}} or null (int8 only)
  timing_cache: path or null (read when present, written after the build)
  parity: {inputs: [.npz ...], outputs: [.npz ...]} or null: run the engine on each input file
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ERROR_PREFIX = "tritongen-trt-error: "  # the host reads this line for a one-line error message
EXIT_ERROR = 3
_CUDA_MEMCPY_HOST_TO_DEVICE = 1
_CUDA_MEMCPY_DEVICE_TO_HOST = 2
_CUDA_DEV_ATTR_CC_MAJOR = 75
_CUDA_DEV_ATTR_CC_MINOR = 76


class BuildError(Exception):
    """A failure to report as one line (parser errors, no GPU, a failed build)."""


class CudaRuntime:
    """The few CUDA runtime calls calibration and inference need, through ctypes: no pycuda or cuda-python needed."""

    def __init__(self, library: str | None = None) -> None:
        self.lib = _load_cudart(library)

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
            message = self.lib.cudaGetErrorString(status)
            raise BuildError(f"CUDA {what} failed: {message.decode() if message else status}")

    def device_count(self) -> int:
        count = ctypes.c_int(0)
        status = self.lib.cudaGetDeviceCount(ctypes.byref(count))
        return count.value if status == 0 else 0

    def compute_capability(self, device: int = 0) -> str:
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(major), _CUDA_DEV_ATTR_CC_MAJOR, device), "attribute")
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(minor), _CUDA_DEV_ATTR_CC_MINOR, device), "attribute")
        return f"{major.value}.{minor.value}"

    def runtime_version(self) -> str:
        version = ctypes.c_int(0)
        self._check(self.lib.cudaRuntimeGetVersion(ctypes.byref(version)), "version query")
        return f"{version.value // 1000}.{(version.value % 1000) // 10}"

    def malloc(self, nbytes: int) -> int:
        pointer = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(max(nbytes, 1))), "malloc")
        return int(pointer.value or 0)

    def free(self, pointer: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(pointer))

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        self._check(self.lib.cudaMemcpy(ctypes.c_void_p(pointer), array.ctypes.data_as(ctypes.c_void_p),
                                        ctypes.c_size_t(array.nbytes), _CUDA_MEMCPY_HOST_TO_DEVICE), "copy to device")

    def from_device(self, pointer: int, array: np.ndarray) -> None:
        self._check(self.lib.cudaMemcpy(array.ctypes.data_as(ctypes.c_void_p), ctypes.c_void_p(pointer),
                                        ctypes.c_size_t(array.nbytes), _CUDA_MEMCPY_DEVICE_TO_HOST), "copy to host")

    def synchronize(self) -> None:
        self._check(self.lib.cudaDeviceSynchronize(), "synchronize")


def _load_cudart(library: str | None) -> Any:
    candidates = [library] if library else []
    found = ctypes.util.find_library("cudart")
    candidates += [found] if found else []
    candidates += ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
    # The pip wheels (tensorrt-cu12 pulls nvidia-cuda-runtime-cu12) keep the library inside site-packages.
    for entry in sys.path:
        candidates += sorted(glob.glob(os.path.join(entry, "nvidia", "cuda_runtime", "lib", "libcudart.so*")))
    for name in candidates:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise BuildError("the CUDA runtime library (libcudart) was not found; TensorRT needs a CUDA installation")


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def create_network(trt: Any, builder: Any) -> Any:
    """An explicit-batch network: a flag before TensorRT 10, the only kind (flag deprecated) from 10 on."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if flag is not None and trt_major(trt) < 10:
        return builder.create_network(1 << int(flag))
    return builder.create_network(0)


def load_feeds(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def make_calibrator(trt: Any, cuda: CudaRuntime, files: list[Path], cache: Path, shapes: dict[str, list[int]]) -> Any:
    """An entropy calibrator (IInt8EntropyCalibrator2) over .npz batches, with a calibration cache file.

    TensorRT calibrates explicit-batch networks at the calibration profile's shapes, so only batches of exactly
    those shapes are used; the cache lets a rebuild skip calibration altogether.
    """

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.files = list(files)
            self.index = 0
            self.used = 0
            self.skipped = 0
            self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

        def get_batch_size(self) -> int:
            # Explicit-batch networks carry the batch in the input shapes; TensorRT expects 1 here.
            return 1

        def get_batch(self, names: list[str], *args: Any) -> list[int] | None:
            while self.index < len(self.files):
                feeds = load_feeds(self.files[self.index])
                self.index += 1
                if any(list(feeds[n].shape) != list(shapes[n]) for n in names):
                    self.skipped += 1
                    continue
                pointers = []
                for name in names:
                    array = np.ascontiguousarray(feeds[name])
                    pointer, size = self.buffers.get(name, (0, 0))
                    if size < array.nbytes:
                        if pointer:
                            cuda.free(pointer)
                        pointer, size = cuda.malloc(array.nbytes), array.nbytes
                        self.buffers[name] = (pointer, size)
                    cuda.to_device(pointer, array)
                    pointers.append(pointer)
                self.used += 1
                return pointers
            return None

        def read_calibration_cache(self, *args: Any) -> bytes | None:
            return cache.read_bytes() if cache.exists() and cache.stat().st_size else None

        def write_calibration_cache(self, data: Any, *args: Any) -> None:
            cache.write_bytes(bytes(data))

        def release(self) -> None:
            for pointer, _ in self.buffers.values():
                cuda.free(pointer)
            self.buffers.clear()

    return EntropyCalibrator()


def build_plan(trt: Any, job: dict[str, Any], base: Path, cuda: CudaRuntime | None, log: Any = print) -> dict[str, Any]:
    """Parse the ONNX file, configure the builder from the job and write the plan; returns build facts."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = create_network(trt, builder)
    parser = trt.OnnxParser(network, logger)
    onnx_path = base / job["onnx"]
    # parse_from_file, not parse(bytes): it finds external weight files next to the model.
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError(f"TensorRT's ONNX parser rejected {onnx_path.name}: " + ("; ".join(errors) or "no details"))

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if job.get("fp16_io"):
        # FP16 at the engine's boundary (and so in Triton's config), not only inside it.
        outputs = [network.get_output(i) for i in range(network.num_outputs)]
        for tensor in inputs + outputs:
            if tensor.dtype == trt.DataType.FLOAT:
                tensor.dtype = trt.DataType.HALF
    profile_spec = job["profile"]
    missing = [t.name for t in inputs if t.name not in profile_spec and any(d < 0 for d in t.shape)]
    if missing:
        raise BuildError(f"no optimization profile for dynamic input(s) {', '.join(missing)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(job["workspace_bytes"]))
    precision = job["precision"]
    if precision in ("fp16", "int8"):
        # INT8 builds keep FP16 on: layers without an INT8 kernel then fall back to FP16, not FP32.
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if job.get("builder_optimization_level") is not None:
        config.builder_optimization_level = int(job["builder_optimization_level"])

    profile = builder.create_optimization_profile()
    for name, shapes in profile_spec.items():
        profile.set_shape(name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
    config.add_optimization_profile(profile)

    calibrator = None
    calibration = job.get("calibration")
    if precision == "int8":
        if not calibration:
            raise BuildError("INT8 needs calibration data")
        if cuda is None:
            raise BuildError("INT8 calibration needs the CUDA runtime")
        shapes = calibration["shapes"]
        calibration_profile = builder.create_optimization_profile()
        for name, shape in shapes.items():
            calibration_profile.set_shape(name, tuple(shape), tuple(shape), tuple(shape))
        config.set_calibration_profile(calibration_profile)
        calibrator = make_calibrator(trt, cuda, [base / f for f in calibration["files"]], base / calibration["cache"],
                                     shapes)
        config.int8_calibrator = calibrator

    timing_cache_path = base / job["timing_cache"] if job.get("timing_cache") else None
    timing_reused = False
    if timing_cache_path is not None:
        data = timing_cache_path.read_bytes() if timing_cache_path.exists() else b""
        accepted = bool(config.set_timing_cache(config.create_timing_cache(data), False))
        if not accepted:  # a cache from another TensorRT version or GPU: start an empty one rather than fail
            config.set_timing_cache(config.create_timing_cache(b""), False)
        timing_reused = bool(data) and accepted

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if calibrator is not None:
        calibrator.release()
    if serialized is None:
        raise BuildError("TensorRT could not build an engine (see the TensorRT log above for the failing layer)")
    plan_path = base / job["plan"]
    plan_path.write_bytes(bytes(serialized))
    if timing_cache_path is not None:
        timing_cache_path.parent.mkdir(parents=True, exist_ok=True)
        timing_cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    facts: dict[str, Any] = {"build_seconds": round(seconds, 3), "timing_cache_reused": timing_reused}
    if calibrator is not None:
        facts["calibration_batches_used"] = calibrator.used
        facts["calibration_batches_skipped"] = calibrator.skipped
    return facts


def describe_engine(trt: Any, engine: Any) -> list[dict[str, Any]]:
    """Every I/O tensor of the engine: name, input/output, TensorRT dtype name, shape (-1 dynamic), profile 0."""
    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        entry: dict[str, Any] = {"name": name, "mode": "input" if is_input else "output",
                                 "dtype": engine.get_tensor_dtype(name).name,
                                 "shape": [int(d) for d in engine.get_tensor_shape(name)]}
        if is_input:
            low, opt, high = engine.get_tensor_profile_shape(name, 0)
            entry["profile"] = {"min": [int(d) for d in low], "opt": [int(d) for d in opt],
                                "max": [int(d) for d in high]}
        tensors.append(entry)
    return tensors


def run_engine(trt: Any, engine: Any, cuda: CudaRuntime, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One inference with device buffers from ctypes; inputs are cast to the engine's dtypes (INT64 -> INT32 on 8.x)."""
    context = engine.create_execution_context()
    allocations: list[int] = []
    try:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        outputs: dict[str, np.ndarray] = {}
        for name in names:
            if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                continue
            array = np.ascontiguousarray(feeds[name].astype(trt.nptype(engine.get_tensor_dtype(name))))
            context.set_input_shape(name, tuple(array.shape))
            pointer = cuda.malloc(array.nbytes)
            allocations.append(pointer)
            cuda.to_device(pointer, array)
            context.set_tensor_address(name, pointer)
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                continue
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BuildError(f"output '{name}' has a data-dependent shape {list(shape)}, which is not supported")
            host = np.empty(shape, dtype=trt.nptype(engine.get_tensor_dtype(name)))
            pointer = cuda.malloc(host.nbytes)
            allocations.append(pointer)
            context.set_tensor_address(name, pointer)
            outputs[name] = host
        if not context.execute_async_v3(0):
            raise BuildError("TensorRT failed to run the engine")
        cuda.synchronize()
        for name, host in outputs.items():
            cuda.from_device(context.get_tensor_address(name), host)
        return outputs
    finally:
        for pointer in allocations:
            cuda.free(pointer)


def run_job(job_path: Path, trt: Any = None, cuda: CudaRuntime | None = None) -> dict[str, Any]:
    """Build, describe and (optionally) run the plan for one job; writes the metadata file and returns it."""
    if trt is None:
        try:
            import tensorrt as trt  # noqa: PLC0415 - only where TensorRT exists
        except ImportError as exc:
            raise BuildError(f"the tensorrt Python package is not importable here ({exc}); use an image that has "
                             "it, e.g. nvcr.io/nvidia/tensorrt:<yy.mm>-py3 of your Triton release") from exc
    job = json.loads(Path(job_path).read_text())
    base = Path(job_path).resolve().parent
    if cuda is None:
        cuda = CudaRuntime()
    if cuda.device_count() < 1:
        raise BuildError("no CUDA GPU is visible (in a container: docker run --gpus all, with the NVIDIA Container "
                         "Toolkit installed)")
    facts = build_plan(trt, job, base, cuda)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine((base / job["plan"]).read_bytes())
    if engine is None:
        raise BuildError("TensorRT could not load the plan it just built")
    metadata = {"tensorrt_version": str(trt.__version__), "compute_capability": cuda.compute_capability(),
                "cuda_runtime": cuda.runtime_version(), "tensors": describe_engine(trt, engine), **facts}
    parity = job.get("parity")
    if parity:
        for source, dest in zip(parity["inputs"], parity["outputs"], strict=True):
            np.savez(base / dest, **run_engine(trt, engine, cuda, load_feeds(base / source)))
    (base / job["metadata"]).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 trt_builder.py JOB.json", file=sys.stderr)
        return 2
    try:
        run_job(Path(args[0]))
    except BuildError as exc:
        print(ERROR_PREFIX + str(exc), file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
