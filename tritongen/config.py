"""Model configuration: the intent, rendering through templates/config.pbtxt.j2, and validation.

Every string that enters the template is escaped (`pbtxt_str`), so a file or tensor name cannot add a field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritongen import __version__, defaults, formats
from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_onnx

KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
TIMEOUT_ACTIONS = {"reject": "REJECT", "delay": "DELAY"}
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


@dataclass(frozen=True)
class ExecutionAccelerator:
    """One `optimization.execution_accelerators` entry: an execution provider of the onnxruntime backend."""

    name: str  # tensorrt | cuda | openvino
    device: str  # gpu | cpu: which list it goes in
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class QueuePolicy:
    """The dynamic batcher's `default_queue_policy`: how many requests may wait, for how long, and what happens then.

    The defaults are Triton's own (no limit, no timeout, no per-request deadline), and a config with them has no queue
    policy at all: any policy costs throughput (see `batches_prefetched`).
    """

    max_queue_size: int = defaults.MAX_QUEUE_SIZE  # 0: unbounded; above it requests are refused at once
    timeout_us: int = defaults.QUEUE_TIMEOUT_US  # 0: requests wait as long as it takes
    timeout_action: str = "reject"  # reject | delay (run it anyway, after the others)
    allow_timeout_override: bool = False  # clients may set a shorter timeout per request

    @property
    def active(self) -> bool:
        """Whether the policy bounds anything (only then is it written; a timeout action alone bounds nothing)."""
        return bool(self.max_queue_size or self.timeout_us or self.allow_timeout_override)


# With a queue policy or priority levels, the next instances default to this many (see `batches_prefetched`).
QUEUE_POLICY_INSTANCES = 2
QUEUE_POLICY_COST = ("Triton's dynamic batcher stops preparing the next batch while one runs and waits for an idle "
                     "instance instead, and Triton 2.51 can miss that wake-up for up to 500 ms "
                     "(benchmarks/queue_policy_cost.py, small CNN: with one instance 4,072 inf/s became 182 at "
                     "concurrency 16 and the p99 went from 7.6 ms to 505 ms; with two, throughput stays within 0.8x "
                     "to 1.0x but a request still waits up to 500 ms now and then)")


def batches_prefetched(queue: QueuePolicy, priority_levels: int) -> bool:
    """Whether Triton's dynamic batcher prepares the next batch while one runs (Triton core, PriorityQueue:
    `support_prefetching_`). Any queue policy (a size limit, a timeout, per-request timeouts) or priority levels turn
    it off; the cost is `QUEUE_POLICY_COST`."""
    return not queue.active and priority_levels == 0


def instances_for(requested: int | None, queue: QueuePolicy, priority_levels: int) -> tuple[int, str | None]:
    """The instance count a build writes (the one asked for, else the default) and what the user should know."""
    prefetched = batches_prefetched(queue, priority_levels)
    if requested is None:
        if prefetched:
            return defaults.INSTANCES, None
        return QUEUE_POLICY_INSTANCES, (f"{QUEUE_POLICY_INSTANCES} instances (not {defaults.INSTANCES}): with a queue "
                                        f"policy or priority levels, {QUEUE_POLICY_COST}; pass --instances 1 to keep "
                                        "one (it also holds the model once in memory)")
    if requested == 1 and not prefetched:
        return requested, (f"--instances 1 with a queue policy or priority levels: {QUEUE_POLICY_COST}; use "
                           f"--instances {QUEUE_POLICY_INSTANCES} or more")
    return requested, None


@dataclass(frozen=True)
class ModelConfig:
    """What we want Triton to serve; `render_config` turns it into config.pbtxt text."""

    name: str
    spec: ModelSpec
    format: str = "onnx"  # a name in tritongen.formats
    instance_count: int = defaults.INSTANCES
    kind: str = "auto"  # auto | cpu | gpu
    max_queue_delay_us: int = defaults.MAX_QUEUE_DELAY_US
    preferred_batch_sizes: tuple[int, ...] = ()
    warmup: bool = True
    parameters: dict[str, str] = field(default_factory=dict)
    source: str = "a PyTorch checkpoint"
    accelerators: tuple[ExecutionAccelerator, ...] = ()  # onnx format only
    queue: QueuePolicy = QueuePolicy()
    priority_levels: int = 0  # 0: one queue; N: requests carry a priority 1 (first) .. N (the default)
    response_cache: bool = False  # identical requests answered from Triton's cache (the server needs --cache-config)


def check_model_name(name: str) -> str:
    if not _MODEL_NAME_RE.match(name) or name in (".", ".."):
        raise TritongenError(
            f"invalid model name '{name}': Triton model names are used as directory names and URL parts",
            "use letters, digits, '_', '-' and '.', starting with a letter, digit or '_' (e.g. --name resnet18)")
    return name


def model_name_from_path(path: Path) -> str:
    """A valid model name from a file or folder name: `My Model (v2).pt` -> `My_Model_v2`, `bert-base/` -> `bert-base`."""
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", path.name if path.is_dir() else path.stem).strip("_.-")
    return name or "model"


def check_intent(cfg: ModelConfig) -> None:
    """User-level mistakes in the batching options, reported before anything is exported."""
    mbs = cfg.spec.max_batch_size
    if mbs < 0:
        raise TritongenError(f"--max-batch-size {mbs} is negative", "use 0 (no batching) or a positive number")
    if cfg.instance_count < 1:
        raise TritongenError(f"--instances {cfg.instance_count} must be at least 1", "e.g. --instances 2")
    if cfg.kind not in KINDS:
        raise TritongenError(f"--kind {cfg.kind} is not one of {', '.join(KINDS)}", "use --kind auto, cpu or gpu")
    if cfg.preferred_batch_sizes and mbs == 0:
        raise TritongenError("--preferred-batch-size needs batching, but --max-batch-size is 0",
                             "drop --preferred-batch-size or set --max-batch-size")
    bad = [b for b in cfg.preferred_batch_sizes if b < 1 or b > mbs]
    if bad:
        raise TritongenError(f"--preferred-batch-size {bad[0]} is outside 1..max batch size {mbs}",
                             "give preferred sizes no larger than --max-batch-size")
    if cfg.max_queue_delay_us < 0:
        raise TritongenError(f"--max-queue-delay-us {cfg.max_queue_delay_us} is negative", "use 0 or more")
    _check_queue(cfg)
    fmt = formats.get(cfg.format)
    if cfg.accelerators and not fmt.ort_accelerators:
        raise TritongenError(f"execution accelerators apply to the onnxruntime backend, not the {cfg.format} format",
                             "use --ort-accelerator with --format onnx")
    fmt.check_intent(cfg)


def _check_queue(cfg: ModelConfig) -> None:
    queue = cfg.queue
    for flag, value in (("--max-queue-size", queue.max_queue_size), ("--queue-timeout-us", queue.timeout_us),
                        ("--priority-levels", cfg.priority_levels)):
        if value < 0:
            raise TritongenError(f"{flag} {value} is negative", "use 0 (the default: no limit) or more")
    if queue.timeout_action not in TIMEOUT_ACTIONS:
        raise TritongenError(f"--timeout-action {queue.timeout_action} is not one of {', '.join(TIMEOUT_ACTIONS)}",
                             "use --timeout-action reject or delay")
    asked = [flag for flag, on in (("--max-queue-size", queue.max_queue_size), ("--queue-timeout-us", queue.timeout_us),
                                   ("--priority-levels", cfg.priority_levels)) if on]
    if asked and cfg.spec.max_batch_size == 0:
        raise TritongenError(f"{asked[0]} needs batching: the queue policy belongs to the dynamic batcher, and "
                             "--max-batch-size is 0", f"drop {asked[0]}, or set --max-batch-size")


def _tensor_ctx(t: TensorSpec) -> dict[str, Any]:
    named = [d for d in t.shape if isinstance(d, str)]
    comment = "dynamic: " + ", ".join(dict.fromkeys(named)) if named else ""
    return {"name": t.name, "data_type": t.dtype.triton, "dims": t.triton_dims or [1], "comment": comment,
            "scalar": not t.shape}


def render_config(cfg: ModelConfig) -> str:
    """config.pbtxt text for the intent; undefined template variables are errors."""
    from tritongen.render import render

    check_intent(cfg)
    fmt = formats.get(cfg.format)
    spec = cfg.spec
    warmup = []
    for t in spec.inputs:
        dims = [d if isinstance(d, int) else spec.lengths(d)[0] for d in t.shape] or [1]
        # Integers get zeros: random ints could be out of range for an embedding and fail the load.
        warmup.append({"name": t.name, "data_type": t.dtype.triton, "dims": dims,
                       "data": "random_data" if t.dtype.is_float else "zero_data"})
    ctx = {
        "tritongen_version": __version__,
        "source": cfg.source,
        "name": cfg.name,
        "backend": fmt.backend,
        "platform": fmt.platform,
        "max_batch_size": spec.max_batch_size,
        "inputs": [_tensor_ctx(t) for t in spec.inputs],
        "outputs": [_tensor_ctx(t) for t in spec.outputs],
        "instance_count": cfg.instance_count,
        "instance_kind": fmt.instance_kind(cfg.kind),
        "dynamic_batching": spec.batched,
        "preferred_batch_sizes": list(cfg.preferred_batch_sizes),
        "max_queue_delay_us": cfg.max_queue_delay_us,
        "warmup": warmup if cfg.warmup else [],
        "warmup_batch_size": 1 if spec.batched else 0,
        "parameters": cfg.parameters,
        "gpu_accelerators": [a for a in cfg.accelerators if a.device == "gpu"],
        "cpu_accelerators": [a for a in cfg.accelerators if a.device == "cpu"],
        "queue": cfg.queue,
        "timeout_action": TIMEOUT_ACTIONS[cfg.queue.timeout_action],
        "queue_policy_instances": QUEUE_POLICY_INSTANCES,
        "priority_levels": cfg.priority_levels,
        "response_cache": cfg.response_cache,
    }
    return render("config.pbtxt.j2", ctx)


def parse_config(text: str) -> Any:
    """Parse config.pbtxt text with Triton's own schema; an error names the offending line."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    proto = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        lines = text.splitlines()
        m = re.match(r"(\d+):(\d+)", str(exc))
        where = ""
        if m and 0 < int(m.group(1)) <= len(lines):
            where = f" at line {m.group(1)}: `{lines[int(m.group(1)) - 1].strip()}`"
        raise TritongenError(f"config.pbtxt does not match Triton's schema{where} ({exc})",
                             "fix that line (field names are in model_config.proto)") from exc
    return proto


def read_config(path: Path) -> Any:
    """The one config reader: parse a model's config.pbtxt (`path`: the file, or the model folder holding it) with
    Triton's own schema; an unreadable or invalid file is one error naming it."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.pbtxt"
    try:
        text = path.read_text()
    except OSError as exc:
        raise TritongenError(f"cannot read {path}: {exc.strerror}", "check the repository path") from exc
    try:
        return parse_config(text)
    except TritongenError as exc:
        where = exc.message.removeprefix("config.pbtxt does not match Triton's schema").strip()
        raise TritongenError(f"{path} is not a valid Triton model config" + (f" {where}" if where else ""),
                             "fix the file or rebuild the model with `tritongen build`", details=exc.details) from exc


def check_config_against_onnx(proto: Any, onnx_path: Path) -> None:
    """Names, dtypes, ranks and the batch axis of the config match the ONNX graph (the common load failures)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    graph = {
        "input": {i.name: i for i in model.graph.input if i.name not in initializers},
        "output": {o.name: o for o in model.graph.output},
    }
    batched = proto.max_batch_size > 0
    problems: list[str] = []
    for kind, entries in (("input", proto.input), ("output", proto.output)):
        seen = set()
        for entry in entries:
            seen.add(entry.name)
            value = graph[kind].get(entry.name)
            if value is None:
                problems.append(f"{kind} '{entry.name}' is in the config but not in the ONNX graph "
                                f"(graph has {', '.join(graph[kind]) or 'none'})")
                continue
            tensor_type = value.type.tensor_type
            onnx_dtype = dtype_from_onnx(tensor_type.elem_type)
            from tritonclient.grpc import model_config_pb2

            cfg_dtype = model_config_pb2.DataType.Name(entry.data_type)
            if onnx_dtype.triton != cfg_dtype:
                problems.append(f"{kind} '{entry.name}' is {cfg_dtype} in the config but {onnx_dtype.triton} in the graph")
            if not tensor_type.HasField("shape"):
                continue  # unknown rank (some outputs): nothing more to compare
            dims = list(tensor_type.shape.dim)
            cfg_dims = list(entry.dims)
            if batched:
                if not dims:
                    problems.append(f"{kind} '{entry.name}' is a scalar in the graph but the config batches it")
                    continue
                batch_dim, dims = dims[0], dims[1:]
                if batch_dim.HasField("dim_value"):
                    problems.append(f"{kind} '{entry.name}' has a fixed first axis ({batch_dim.dim_value}) in the graph "
                                    f"but max_batch_size is {proto.max_batch_size}")
            if cfg_dims == [1] and not dims:
                continue  # Triton's way of writing a per-item scalar
            if len(dims) != len(cfg_dims):
                problems.append(f"{kind} '{entry.name}' has {len(cfg_dims)} dims in the config but {len(dims)} in the graph"
                                + (" (without the batch axis)" if batched else ""))
                continue
            for i, (c, d) in enumerate(zip(cfg_dims, dims, strict=True)):
                if d.HasField("dim_value") and c != d.dim_value:
                    problems.append(f"{kind} '{entry.name}' dim {i} is {c} in the config but {d.dim_value} in the graph")
                elif not d.HasField("dim_value") and c != -1 and kind == "input":
                    problems.append(f"{kind} '{entry.name}' dim {i} is {c} in the config but dynamic in the graph")
        missing = [n for n in graph[kind] if n not in seen]
        if missing:
            problems.append(f"graph {kind}s {', '.join(missing)} are missing from the config")
    if proto.HasField("dynamic_batching"):
        too_big = [b for b in proto.dynamic_batching.preferred_batch_size if b > proto.max_batch_size]
        if too_big:
            problems.append(f"preferred batch size {too_big[0]} > max_batch_size {proto.max_batch_size}")
        if not batched:
            problems.append("dynamic_batching is set but max_batch_size is 0")
    raise_config_mismatch(problems, "the ONNX model")


def raise_config_mismatch(problems: list[str], artifact: str) -> None:
    """One error for every way config.pbtxt disagrees with `artifact`: the first in the line, all in the details."""
    if problems:
        raise TritongenError(f"config.pbtxt does not match {artifact}: {problems[0]}"
                             + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
                             "this is a tritongen bug if you did not edit the files; please report it",
                             details="\n".join(problems) if len(problems) > 1 else None)
