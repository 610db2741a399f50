"""What a built engine says about itself, and the Triton config taken from it and checked against it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from tritongen.errors import TritongenError
from tritongen.spec import DTYPES, DType, ModelSpec, TensorSpec


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


def tensor_dict(t: EngineTensor) -> dict[str, Any]:
    """An engine tensor as the manifest records it."""
    return {"name": t.name, "dtype": t.dtype.short, "shape": list(t.shape), **({"profile": t.profile} if t.profile
                                                                                else {})}
