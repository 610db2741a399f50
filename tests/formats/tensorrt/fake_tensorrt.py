"""A mock of the parts of the `tensorrt` Python API that tritongen's builder script uses, plus a fake CUDA runtime.

It records what the builder asked for (profiles, flags, caches, calibration batches) and "runs" the engine with
ONNX Runtime on the ONNX file it was built from, so parity and configs can be checked end to end without a GPU.
It proves the script calls the API in the documented order with the documented arguments; it proves nothing about
TensorRT itself. Tests using it say "mock" in their names.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np


class DataType:
    def __init__(self, name: str, np_dtype: Any) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataType) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


TYPES = {"FLOAT": DataType("FLOAT", np.float32), "HALF": DataType("HALF", np.float16),
         "INT32": DataType("INT32", np.int32), "INT64": DataType("INT64", np.int64), "BOOL": DataType("BOOL", np.bool_),
         "INT8": DataType("INT8", np.int8)}
ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 6: "INT32", 7: "INT64", 9: "BOOL", 3: "INT8"}


class FakeCuda:
    """Device memory as a dict of numpy arrays keyed by fake pointers."""

    def __init__(self, devices: int = 1) -> None:
        self.devices = devices
        self.memory: dict[int, np.ndarray] = {}
        self.next = 4096

    def device_count(self) -> int:
        return self.devices

    def compute_capability(self, device: int = 0) -> str:
        return "8.6"

    def runtime_version(self) -> str:
        return "12.4"

    def malloc(self, nbytes: int) -> int:
        self.next += 4096 + nbytes
        self.memory[self.next] = np.zeros(0, np.uint8)
        return self.next

    def free(self, pointer: int) -> None:
        self.memory.pop(pointer, None)

    def to_device(self, pointer: int, array: np.ndarray) -> None:
        self.memory[pointer] = np.array(array, copy=True)

    def from_device(self, pointer: int, array: np.ndarray) -> None:
        array[...] = self.memory[pointer].reshape(array.shape)

    def synchronize(self) -> None:
        pass


def make_tensorrt(version: str = "10.3.0.26", narrow_int64: bool = False) -> types.SimpleNamespace:
    """A fake `tensorrt` module. With `narrow_int64`, INT64 inputs become INT32 in the engine, as TensorRT 8 does."""
    trt = types.SimpleNamespace(__version__=version, calls=[])
    record = trt.calls.append

    class Logger:
        WARNING = "WARNING"

        def __init__(self, level: str) -> None:
            self.level = level

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            record(("calibrator_init",))

    class Tensor:
        def __init__(self, name: str, shape: list[int], dtype: DataType) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[Tensor] = []
            self.outputs: list[Tensor] = []
            self.path = ""

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        def get_output(self, i: int) -> Tensor:
            return self.outputs[i]

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path: str) -> bool:
            import onnx

            model = onnx.load(path, load_external_data=False)
            self.network.path = path

            def tensors(values: Any) -> list[Tensor]:
                return [Tensor(v.name, [d.dim_value if d.HasField("dim_value") else -1
                                        for d in v.type.tensor_type.shape.dim],
                               TYPES[ONNX_TO_TRT[v.type.tensor_type.elem_type]]) for v in values]

            initializers = {i.name for i in model.graph.initializer}
            self.network.inputs = tensors([i for i in model.graph.input if i.name not in initializers])
            self.network.outputs = tensors(model.graph.output)
            record(("parse_from_file", Path(path).name))
            return True

        def get_error(self, i: int) -> str:
            return ""

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, name: str, low: tuple[int, ...], opt: tuple[int, ...], high: tuple[int, ...]) -> None:
            self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = bytes(data)

        def serialize(self) -> bytes:
            return self.data + b"+entries"

    class Config:
        def __init__(self) -> None:
            self.flags: set[str] = set()
            self.profiles: list[Profile] = []
            self.calibration_profile: Profile | None = None
            self.int8_calibrator: Any = None
            self.workspace = 0
            self.timing_cache: TimingCache | None = None
            self.builder_optimization_level = 3

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            assert pool == "WORKSPACE"
            self.workspace = size

        def set_flag(self, flag: str) -> None:
            self.flags.add(flag)

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile: Profile) -> bool:
            self.calibration_profile = profile
            return True

        def create_timing_cache(self, data: bytes) -> TimingCache:
            return TimingCache(data)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            record(("set_timing_cache", cache.data, ignore_mismatch))
            self.timing_cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            assert self.timing_cache is not None
            return self.timing_cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int) -> Network:
            record(("create_network", flags))
            return Network(flags)

        def create_builder_config(self) -> Config:
            trt.config = Config()
            return trt.config

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            calibrated = 0
            if "INT8" in config.flags:
                calibrator = config.int8_calibrator
                assert config.calibration_profile is not None and calibrator.get_batch_size() == 1
                if calibrator.read_calibration_cache() is None:
                    names = [t.name for t in network.inputs]
                    while calibrator.get_batch(names) is not None:
                        calibrated += 1
                    calibrator.write_calibration_cache(b"calibration-table")
            record(("build", sorted(config.flags), calibrated))
            profile = config.profiles[0].shapes
            tensors = []
            for t in network.inputs:
                dtype = "INT32" if narrow_int64 and t.dtype.name == "INT64" else t.dtype.name
                tensors.append({"name": t.name, "input": True, "dtype": dtype, "shape": t.shape,
                                "profile": [list(s) for s in profile[t.name]]})
            for t in network.outputs:
                tensors.append({"name": t.name, "input": False, "dtype": t.dtype.name, "shape": t.shape})
            return json.dumps({"onnx": network.path, "tensors": tensors}).encode()

    class TensorIOMode:
        INPUT = "INPUT"
        OUTPUT = "OUTPUT"

    class Engine:
        def __init__(self, data: dict[str, Any]) -> None:
            self.data = data
            self.by_name = {t["name"]: t for t in data["tensors"]}

        @property
        def num_io_tensors(self) -> int:
            return len(self.data["tensors"])

        def get_tensor_name(self, i: int) -> str:
            return self.data["tensors"][i]["name"]

        def get_tensor_mode(self, name: str) -> str:
            return TensorIOMode.INPUT if self.by_name[name]["input"] else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> DataType:
            return TYPES[self.by_name[name]["dtype"]]

        def get_tensor_shape(self, name: str) -> list[int]:
            return self.by_name[name]["shape"]

        def get_tensor_profile_shape(self, name: str, index: int) -> list[list[int]]:
            assert index == 0
            return self.by_name[name]["profile"]

        def create_execution_context(self) -> Context:
            return Context(self)

    class Context:
        """Runs the ONNX file the engine was "built" from with ONNX Runtime, on the fake device memory."""

        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}
            self.results: dict[str, np.ndarray] | None = None

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            profile = self.engine.by_name[name]["profile"]
            assert all(lo <= s <= hi for lo, s, hi in zip(profile[0], shape, profile[2], strict=True)), \
                f"{name} {shape} outside the profile {profile}"
            self.shapes[name] = tuple(shape)
            return True

        def set_tensor_address(self, name: str, pointer: int) -> bool:
            self.addresses[name] = pointer
            return True

        def get_tensor_address(self, name: str) -> int:
            return self.addresses[name]

        def _run(self) -> dict[str, np.ndarray]:
            if self.results is None:
                import onnxruntime as ort

                session = ort.InferenceSession(self.engine.data["onnx"], providers=["CPUExecutionProvider"])
                onnx_types = {i.name: i.type for i in session.get_inputs()}
                feeds = {}
                for name in self.shapes:
                    array = trt.cuda.memory[self.addresses[name]].reshape(self.shapes[name])
                    wanted = {"tensor(int64)": np.int64, "tensor(float)": np.float32}.get(onnx_types[name])
                    feeds[name] = array.astype(wanted) if wanted else array
                names = [o.name for o in session.get_outputs()]
                self.results = dict(zip(names, session.run(names, feeds), strict=True))
            return self.results

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return self._run()[name].shape

        def execute_async_v3(self, stream: int) -> bool:
            for name, value in self._run().items():
                trt.cuda.memory[self.addresses[name]] = value.astype(TYPES[self.engine.by_name[name]["dtype"]].np)
            return True

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine:
            return Engine(json.loads(bytes(data)))

    trt.Logger = Logger
    trt.Builder = Builder
    trt.OnnxParser = OnnxParser
    trt.Runtime = Runtime
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.TensorIOMode = TensorIOMode
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.nptype = lambda dtype: dtype.np
    trt.DataType = types.SimpleNamespace(**TYPES)
    trt.cuda = FakeCuda()
    return trt
