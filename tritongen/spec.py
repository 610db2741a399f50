"""What a model takes and returns: tensor specs, named dynamic axes, and the one dtype table."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tritongen import defaults
from tritongen.errors import TritongenError

BATCH_AXIS = "batch"
# What an input's values mean, where a random value would not do (see `random_inputs`):
# "mask": 1 for real positions then 0 for padding along its last axis, at least one real position per row;
# "positions": 0, 1, 2, ... along its last axis.
ROLES = ("mask", "positions")
PADDING_SIDES = ("right", "left")  # where masks pad: encoders pad on the right, decoder-only models on the left
# The example inputs of the largest parity case (max batch, longest lengths) must fit in memory several times over.
MAX_EXAMPLE_BYTES = 2 << 30


@dataclass(frozen=True)
class DType:
    """One element type under every name the toolchain uses for it."""

    short: str  # our CLI name: fp32
    torch: str  # attribute of the torch module: float32
    numpy: str  # numpy dtype name ("bfloat16" comes from ml_dtypes)
    onnx: int  # onnx.TensorProto enum value
    triton: str  # config.pbtxt data_type: TYPE_FP32
    client: str  # tritonclient / KServe v2 datatype: FP32
    tensorrt: str  # tensorrt.DataType member name: FLOAT

    @property
    def is_float(self) -> bool:
        return self.short in ("fp32", "fp16", "bf16", "fp64")

    @property
    def np_dtype(self) -> np.dtype:
        if self.numpy == "bfloat16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(self.numpy)

    @property
    def torch_dtype(self):  # noqa: ANN201 - torch is imported lazily to keep the CLI fast
        import torch

        return getattr(torch, self.torch)


# onnx.TensorProto values, written out so this module does not import onnx.
DTYPES: tuple[DType, ...] = (
    DType("fp32", "float32", "float32", 1, "TYPE_FP32", "FP32", "FLOAT"),
    DType("fp16", "float16", "float16", 10, "TYPE_FP16", "FP16", "HALF"),
    DType("bf16", "bfloat16", "bfloat16", 16, "TYPE_BF16", "BF16", "BF16"),
    DType("fp64", "float64", "float64", 11, "TYPE_FP64", "FP64", "DOUBLE"),
    DType("int64", "int64", "int64", 7, "TYPE_INT64", "INT64", "INT64"),
    DType("int32", "int32", "int32", 6, "TYPE_INT32", "INT32", "INT32"),
    DType("int16", "int16", "int16", 5, "TYPE_INT16", "INT16", "INT16"),
    DType("int8", "int8", "int8", 3, "TYPE_INT8", "INT8", "INT8"),
    DType("uint8", "uint8", "uint8", 2, "TYPE_UINT8", "UINT8", "UINT8"),
    DType("bool", "bool", "bool", 9, "TYPE_BOOL", "BOOL", "BOOL"),
    # Byte strings (a pipeline's text and encoded images): numpy object arrays of `bytes`; no torch or TensorRT type.
    DType("bytes", "", "object", 8, "TYPE_STRING", "BYTES", ""),
)
# The dtypes a user may name on the command line (the others appear only as outputs).
CLI_DTYPES = ("fp32", "fp16", "bf16", "int64", "int32", "int8", "uint8", "bool")
_ALIASES = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
            "float64": "fp64", "double": "fp64", "long": "int64", "int": "int32"}


def dtype_from_name(name: str) -> DType:
    """Look up a dtype by our short name or a common alias (`fp32`, `float32`, `int64`)."""
    key = _ALIASES.get(name.lower(), name.lower())
    for dt in DTYPES:
        if dt.short == key:
            return dt
    raise TritongenError(f"unknown dtype '{name}'", f"use one of {', '.join(CLI_DTYPES)}")


def _lookup(attr: str, value: object) -> DType:
    for dt in DTYPES:
        if getattr(dt, attr) == value:
            return dt
    raise TritongenError(f"unsupported tensor element type {value!r}", "use one of " + ", ".join(CLI_DTYPES))


def dtype_from_torch(torch_dtype: object) -> DType:
    return _lookup("torch", str(torch_dtype).removeprefix("torch."))


def dtype_from_onnx(elem_type: int) -> DType:
    return _lookup("onnx", elem_type)


def dtype_from_triton(triton_type: str) -> DType:
    return _lookup("triton", triton_type)


def dtype_from_numpy(np_dtype: object) -> DType:
    return _lookup("numpy", np.dtype(np_dtype).name)


Dim = int | str  # an int is a fixed size (or -1: dynamic, unnamed); a str names a dynamic axis


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, dtype and per-item shape (without the batch axis)."""

    name: str
    dtype: DType
    shape: tuple[Dim, ...]
    # Inclusive range of valid values for integer inputs (token ids below the vocabulary size, ...).
    value_range: tuple[int, int] | None = None
    role: str | None = None  # one of ROLES, or None: values drawn at random (within value_range)

    @property
    def triton_dims(self) -> list[int]:
        """Dims as config.pbtxt writes them: -1 for every dynamic axis."""
        return [d if isinstance(d, int) else -1 for d in self.shape]

    @property
    def axis_names(self) -> list[str]:
        return [d for d in self.shape if isinstance(d, str)]

    def describe(self) -> str:
        """`NAME:SHAPE:DTYPE` as --input takes it (dims joined by `x`, or by `,` where an axis name would be split)."""
        if not self.shape:
            return f"{self.name}:scalar:{self.dtype.short}"
        dims = [str(d) for d in self.shape]
        joined = "x".join(dims)
        return f"{self.name}:{joined if split_dims(joined) == dims else ','.join(dims)}:{self.dtype.short}"


@dataclass(frozen=True)
class ModelSpec:
    """The model's interface, with one description of dynamic axes from which ONNX, Triton and TensorRT shapes derive."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()
    max_batch_size: int = defaults.MAX_BATCH_SIZE
    # Representative lengths to export and test each named axis at; filled in with defaults where absent.
    axis_lengths: dict[str, tuple[int, ...]] = field(default_factory=dict)
    padding: str = "right"  # one of PADDING_SIDES: where the "mask" inputs of random examples pad

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    @property
    def dynamic_axes(self) -> list[str]:
        """Named dynamic axes across all inputs, in first-seen order (the batch axis not included)."""
        seen: list[str] = []
        for t in self.inputs:
            for a in t.axis_names:
                if a not in seen:
                    seen.append(a)
        return seen

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise KeyError(name)

    def lengths(self, axis: str) -> tuple[int, ...]:
        """Two test lengths for a dynamic axis: the user's, or a short and a longer default."""
        return self.axis_lengths.get(axis, defaults.AXIS_LENGTHS)

    def with_outputs(self, outputs: tuple[TensorSpec, ...]) -> ModelSpec:
        return replace(self, outputs=outputs)


_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_AXIS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def split_dims(text: str) -> list[str]:
    """The dims of a SHAPE: separated by `,`, or by `x` where the `x` stands between two complete dims.

    An `x` separates when a number is on either side of it (`3x224x224`, `Tx5`, `seqx768`) or a one-letter axis name
    on both (`HxW`); elsewhere it is part of an axis name (`max_len`, `box`). `,` always separates (`seq,hidden`).
    """
    if "," in text:
        return [d.strip() for d in text.split(",")]
    pieces = text.split("x")
    dims = [pieces[0]]
    for right in pieces[1:]:
        left = dims[-1]
        number = re.fullmatch(r"-1|\d+", left) or re.fullmatch(r"-1|\d+", right)
        letters = len(left) == 1 and len(right) == 1 and left.isalpha() and right.isalpha()
        if left and right and (number or letters):
            dims.append(right)
        else:
            dims[-1] += "x" + right
    return dims


def parse_input_spec(text: str) -> TensorSpec:
    """Parse `NAME:SHAPE:DTYPE`, e.g. `image:3x224x224:fp32`, `tokens:seq:int64`, `x:3xHxW:fp32`.

    SHAPE is the per-item shape (no batch axis), dims joined by `x` or `,` (see `split_dims`); a dim is an integer,
    -1, or a word naming a dynamic axis. An optional fourth part gives integer inputs an inclusive value range:
    `tokens:seq:int64:0-999`, or a role: `mask:seq:int64:mask` (1s then 0s of padding), `pos:seq:int64:positions`
    (0, 1, 2, ...). An empty SHAPE (`NAME::DTYPE`) is a scalar per item.
    """
    example = "use NAME:SHAPE:DTYPE, e.g. --input image:3x224x224:fp32 or --input tokens:seq:int64"
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise TritongenError(f"malformed --input '{text}': expected 3 parts separated by ':', got {len(parts)}", example)
    name, shape_text, dtype_text = parts[:3]
    if not _NAME_RE.match(name):
        raise TritongenError(f"malformed --input '{text}': '{name}' is not a valid tensor name", example)
    if dtype_text.lower() not in CLI_DTYPES and dtype_text.lower() not in _ALIASES:
        raise TritongenError(f"malformed --input '{text}': unknown dtype '{dtype_text}'",
                             f"use one of {', '.join(CLI_DTYPES)}")
    dtype = dtype_from_name(dtype_text)
    shape: list[Dim] = []
    for raw in split_dims(shape_text) if shape_text else []:
        dim = raw.strip()
        if re.fullmatch(r"-1|\d+", dim):
            value = int(dim)
            if value == 0:
                raise TritongenError(f"malformed --input '{text}': a dim cannot be 0", example)
            shape.append(value)
        elif _AXIS_RE.match(dim):
            if dim == BATCH_AXIS:
                raise TritongenError(f"malformed --input '{text}': the batch axis is implicit",
                                     "give the per-item shape without the batch dim; set --max-batch-size for batching")
            shape.append(dim)
        else:
            raise TritongenError(f"malformed --input '{text}': dim '{raw}' is not an integer, -1 or an axis name",
                                 example + "; separate dims with ',' when an axis name contains an x (max_len,16)")
    role = parts[3] if len(parts) == 4 and parts[3] in ROLES else None
    if role and not shape:
        raise TritongenError(f"malformed --input '{text}': a {role} input needs an axis to run along", example)
    value_range = _parse_value_range(text, parts[3], dtype) if len(parts) == 4 and not role else None
    # An unnamed -1 dim gets a name of its own, so every dynamic axis has one name everywhere.
    named = tuple(d if d != -1 else f"{name}_dim{i + 1}" for i, d in enumerate(shape))
    return TensorSpec(name, dtype, named, value_range, role)


def _parse_value_range(text: str, part: str, dtype: DType) -> tuple[int, int]:
    m = re.fullmatch(r"(-?\d+)-(-?\d+)", part)
    if not m or dtype.is_float or dtype.short == "bool":
        raise TritongenError(f"malformed --input '{text}': value range '{part}' is not LOW-HIGH for an integer input, "
                             f"nor a role ({', '.join(ROLES)})",
                             "e.g. --input tokens:seq:int64:0-999 or --input mask:seq:int64:mask")
    low, high = int(m.group(1)), int(m.group(2))
    if low > high:
        raise TritongenError(f"--input '{text}': the value range {low}-{high} is empty (LOW is above HIGH)",
                             f"write it as LOW-HIGH, e.g. {high}-{low}")
    info = np.iinfo(dtype.np_dtype)
    if low < info.min or high > info.max:
        raise TritongenError(f"--input '{text}': the value range {low}-{high} does not fit {dtype.short} "
                             f"({info.min} to {info.max})", "give a range the dtype holds, or a wider integer dtype")
    return low, high


def check_unique_names(specs: tuple[TensorSpec, ...], what: str) -> None:
    seen = set()
    for t in specs:
        if t.name in seen:
            raise TritongenError(f"{what} name '{t.name}' is given twice", f"give each {what} a distinct name")
        seen.add(t.name)


def check_example_size(spec: ModelSpec) -> None:
    """The largest inputs parity runs (max batch, longest lengths) fit in memory: an absurd dim is refused up front."""
    batch = spec.max_batch_size if spec.batched else None
    lengths = {a: max(spec.lengths(a)) for a in spec.dynamic_axes}
    sizes = {t.name: int(np.prod(concrete_shape(t, spec, batch, lengths), dtype=object)) * t.dtype.np_dtype.itemsize
             for t in spec.inputs}
    total = sum(sizes.values())
    if total > MAX_EXAMPLE_BYTES:
        name = max(sizes, key=lambda n: sizes[n])
        at = f"batch {batch}" if batch else "one item"
        raise TritongenError(
            f"the example inputs would take {total / 2**30:,.1f} GiB at {at} (input '{name}': "
            f"{spec.input(name).describe()}), more than the {MAX_EXAMPLE_BYTES >> 30} GiB tritongen checks parity with",
            "check the --input shape; parity runs at the largest batch and longest --axis-length, so lower "
            "--max-batch-size or --axis-length for a model this large")


def concrete_shape(tensor: TensorSpec, spec: ModelSpec, batch: int | None, lengths: dict[str, int]) -> tuple[int, ...]:
    """The full shape of one test tensor: batch (if batched), then per-item dims with axes resolved."""
    dims = tuple(d if isinstance(d, int) else lengths[d] for d in tensor.shape)
    return ((batch,) if spec.batched and batch is not None else ()) + dims


def random_inputs(spec: ModelSpec, batch: int | None, lengths: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random feeds valid for the model: normal floats, integers within each input's value range, masks that pad
    rows to different lengths (the same for every mask on one axis), positions that count."""
    feeds: dict[str, np.ndarray] = {}
    real: dict[tuple[str | int, tuple[int, ...]], np.ndarray] = {}  # real lengths per (padded axis, rows)
    for t in spec.inputs:
        shape = concrete_shape(t, spec, batch, lengths)
        if t.role == "mask":
            axis = t.shape[-1]
            if (axis, shape[:-1]) not in real:
                real[(axis, shape[:-1])] = real_lengths(shape[:-1], shape[-1], rng)
            arr = padding_mask(real[(axis, shape[:-1])], shape[-1], spec.padding).astype(t.dtype.np_dtype)
        elif t.role == "positions":
            arr = np.broadcast_to(np.arange(shape[-1]), shape).astype(t.dtype.np_dtype)
        elif t.dtype.short == "bool":
            arr = rng.random(shape) < 0.5
        elif t.dtype.is_float:
            arr = rng.standard_normal(shape).astype(np.float32).astype(t.dtype.np_dtype)
        else:
            low, high = t.value_range or default_int_range(t.dtype)
            arr = rng.integers(low, high + 1, size=shape, dtype=np.int64).astype(t.dtype.np_dtype)
        feeds[t.name] = arr
    return feeds


def real_lengths(rows: tuple[int, ...], length: int, rng: np.random.Generator) -> np.ndarray:
    """How many real (unpadded) positions each row has: 1 to `length`, and with several rows the first one full, as
    in a batch padded to its longest row."""
    counts = np.asarray(rng.integers(1, length + 1, size=rows))
    if counts.size > 1:
        counts.reshape(-1)[0] = length
    return counts


def padding_mask(counts: np.ndarray, length: int, side: str = "right") -> np.ndarray:
    """1 for real positions, 0 for padding: each row has `counts` real positions, padded on `side`."""
    index = np.arange(length)
    real = index < counts[..., None] if side == "right" else index >= (length - counts)[..., None]
    return real.astype(np.int64)


def default_int_range(dtype: DType) -> tuple[int, int]:
    """A cautious default range for integer inputs when nothing better is known."""
    return (0, 255) if dtype.short == "uint8" else (0, 100)


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """The spec as the manifest records it: per tensor name, dtype, Triton dims and axis names."""
    def tensor(t: TensorSpec) -> dict[str, Any]:
        return {"name": t.name, "dtype": t.dtype.short, "dims": t.triton_dims,
                "axes": [d if isinstance(d, str) else None for d in t.shape],
                **({"value_range": list(t.value_range)} if t.value_range else {}),
                **({"role": t.role} if t.role else {})}

    return {"inputs": [tensor(t) for t in spec.inputs], "outputs": [tensor(t) for t in spec.outputs],
            "max_batch_size": spec.max_batch_size,
            "axis_lengths": {a: list(spec.lengths(a)) for a in spec.dynamic_axes}, "padding": spec.padding}


def spec_from_dict(raw: Mapping[str, Any]) -> ModelSpec:
    """The inverse of `spec_to_dict`: the ModelSpec a manifest recorded."""
    def tensor(entry: Mapping[str, Any]) -> TensorSpec:
        dims = entry.get("dims") or []
        axes = entry.get("axes") or [None] * len(dims)
        shape = tuple(a if a else int(d) for d, a in zip(dims, axes, strict=True))
        value_range = (int(entry["value_range"][0]), int(entry["value_range"][1])) if entry.get("value_range") else None
        role = entry.get("role") if entry.get("role") in ROLES else None
        return TensorSpec(str(entry["name"]), dtype_from_name(str(entry["dtype"])), shape, value_range, role)

    lengths = {k: tuple(int(x) for x in v) for k, v in (raw.get("axis_lengths") or {}).items()}
    padding = raw.get("padding") if raw.get("padding") in PADDING_SIDES else "right"
    return ModelSpec(tuple(tensor(t) for t in raw.get("inputs", [])), tuple(tensor(t) for t in raw.get("outputs", [])),
                     int(raw.get("max_batch_size", 0)), lengths, padding)


def spec_from_config(config: Any) -> ModelSpec:
    """A ModelSpec from a Triton config alone (a model tritongen did not build): every -1 dim is an axis of its own."""
    from tritonclient.grpc import model_config_pb2

    def tensor(entry: Any) -> TensorSpec:
        dtype = dtype_from_triton(model_config_pb2.DataType.Name(entry.data_type))
        dims = list(entry.reshape.shape) if entry.HasField("reshape") else list(entry.dims)
        shape = tuple(d if d != -1 else f"{entry.name}_dim{i + 1}" for i, d in enumerate(dims))
        return TensorSpec(entry.name, dtype, shape)

    return ModelSpec(tuple(tensor(t) for t in config.input), tuple(tensor(t) for t in config.output),
                     int(config.max_batch_size))
