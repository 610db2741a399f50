"""`build`: checkpoint to a verified, versioned Triton model repository."""

from __future__ import annotations

import contextlib
import inspect
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tritongen import __version__
from tritongen.checkpoint import CheckpointKind, LoadedCheckpoint, load_checkpoint
from tritongen.config import (
    ModelConfig,
    check_config_against_onnx,
    check_intent,
    check_model_name,
    model_name_from_path,
    parse_config,
    render_config,
)
from tritongen.errors import CheckFailed, TritongenError
from tritongen.export.onnx import example_batch, example_lengths, onnx_from_module, onnx_output_specs, simplify_onnx
from tritongen.formats.tensorrt.builder import TensorRTOptions
from tritongen.formats.tensorrt.profiles import axis_ranges, parse_dynamic_ranges
from tritongen.precision import (
    CastingRunner,
    PrecisionOptions,
    cast_feeds,
    model_files,
    onnx_with_precision,
)
from tritongen.repository import (
    CONFIG,
    META_DIR,
    building,
    check_repository_dir,
    resolve_version,
    save_reference,
    write_manifest,
    write_text_atomic,
)
from tritongen.runners.onnxruntime import OnnxRuntimeRunner
from tritongen.runners.torch import TorchRunner, flatten_outputs
from tritongen.spec import (
    BATCH_AXIS,
    ModelSpec,
    TensorSpec,
    check_unique_names,
    dtype_from_torch,
    parse_input_spec,
    random_inputs,
    spec_to_dict,
)
from tritongen.verify import ParityReport, parity_against, tolerance_for

FORMATS = ("onnx", "python", "tensorrt")
Step = Callable[[str], AbstractContextManager[Any]]


@dataclass(frozen=True)
class BuildOptions:
    """Everything `tritongen build` takes; None means "the default", resolved here."""

    checkpoint: Path
    name: str | None = None
    inputs: tuple[str, ...] = ()  # NAME:SHAPE:DTYPE
    outputs: tuple[str, ...] = ()
    axis_lengths: tuple[str, ...] = ()  # AXIS=A,B
    model_class: str | None = None
    model_kwargs: str | None = None
    pythonpath: tuple[Path, ...] = ()
    trust_checkpoint: bool = False
    max_batch_size: int = 32
    instances: int = 1
    kind: str = "auto"
    max_queue_delay_us: int = 100
    preferred_batch_sizes: tuple[int, ...] = ()
    formats: tuple[str, ...] = ("onnx",)
    opset: int | None = None
    simplify: bool = True
    atol: float | None = None  # None: the precision's default (1e-4 for fp32, 1e-2 for fp16, measured for int8)
    rtol: float | None = None
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)
    ort_accelerators: tuple[str, ...] = ()  # NAME[:PRECISION]: execution providers for the onnx format
    ort_engine_cache: str | None = None  # the TensorRT execution provider's cache directory on the server
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)
    repository: Path = Path("model_repository")
    version: int | None = None
    force: bool = False
    deploy: bool = True
    deploy_image: str | None = None  # auto | slim | nvidia | an image reference
    public: bool = False  # bind the deployment's ports on all interfaces
    command: str | None = None  # the command line, recorded in the manifest


@dataclass
class ArtifactResult:
    format: str
    model: str
    version: int
    path: Path
    config: Path
    parity: ParityReport

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "model": self.model, "version": self.version, "path": str(self.path),
                "config": str(self.config), "parity": self.parity.to_dict()}


@dataclass
class BuildResult:
    model: str
    version: int
    repository: Path
    config: Path
    spec: ModelSpec
    artifacts: list[ArtifactResult]
    exporter: str
    opset: int
    simplification: str
    warnings: list[str] = field(default_factory=list)
    deploy_files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    precision: dict[str, Any] | None = None  # the precision report (size, speed, fidelity) when not fp32

    @property
    def passed(self) -> bool:
        return all(a.parity.passed for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "model": self.model,
            "version": self.version,
            "repository": str(self.repository),
            "config": str(self.config),
            "exporter": self.exporter,
            "opset": self.opset,
            "simplification": self.simplification,
            "spec": spec_to_dict(self.spec),
            "artifacts": [a.to_dict() for a in self.artifacts],
            "deploy": [str(p) for p in self.deploy_files],
            "warnings": self.warnings,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "precision": self.precision,
        }


def build_model(options: BuildOptions, step: Step | None = None, warn: Callable[[str], None] | None = None) -> BuildResult:
    """Load, export, simplify, verify, configure and write one model; raises TritongenError on bad input."""
    step = step or (lambda _desc: contextlib.nullcontext())
    warnings: list[str] = []

    def note(msg: str) -> None:
        warnings.append(msg)
        if warn:
            warn(msg)

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    formats = _check_formats(options.formats)
    name = check_model_name(options.name or model_name_from_path(Path(options.checkpoint)))
    precision, accelerators = _check_precision_and_targets(options, formats, name, note)
    tolerance = tolerance_for("fp32", "onnxruntime", options.atol, options.rtol)
    atol, rtol = tolerance.atol, tolerance.rtol
    user_inputs = tuple(parse_input_spec(s) for s in options.inputs)
    check_unique_names(user_inputs, "input")
    lengths = _parse_axis_lengths(options.axis_lengths)
    repository = Path(options.repository)
    check_repository_dir(repository)
    if options.deploy:
        from tritongen.deploy import check_deploy_writable

        check_deploy_writable(repository)
    model_names = [name if i == 0 else f"{name}_{fmt}" for i, fmt in enumerate(formats)]
    # An early answer for a taken --version; `building` chooses again under the lock.
    versions = [resolve_version(repository / m, options.version, options.force) for m in model_names]
    # Intent errors (batch sizes, kind) come before the slow steps.
    probe_spec = ModelSpec(inputs=user_inputs, max_batch_size=options.max_batch_size)
    check_intent(_intent(options, name, probe_spec, formats[0]))

    with step("loading checkpoint"):
        loaded = load_checkpoint(Path(options.checkpoint), model_class=options.model_class,
                                 model_kwargs=options.model_kwargs, pythonpath=tuple(options.pythonpath),
                                 trust=options.trust_checkpoint)
    if loaded.kind is CheckpointKind.EXPORTED_PROGRAM:
        inputs = inputs_from_exported_program(loaded.exported_program, user_inputs, options.max_batch_size)
    else:
        inputs = _inputs_for_module(loaded, user_inputs)
    spec = ModelSpec(inputs=inputs, max_batch_size=options.max_batch_size, axis_lengths=lengths)
    _check_axis_lengths(spec, lengths)
    spec = spec.with_outputs(outputs_from_module(loaded.module, spec, options.outputs))
    check_unique_names(spec.outputs, "output")
    if "tensorrt" in formats:  # an axis without --dynamic-range fails here, not after the export
        axis_ranges(spec, parse_dynamic_ranges(options.tensorrt.dynamic_ranges), options.preferred_batch_sizes)
    seconds["load"] = time.perf_counter() - started

    with building(repository, model_names, version=options.version, force=options.force, note=note) as work:
        stage, versions = work.workspace, list(work.versions)
        onnx_path = stage / "export" / "model.onnx"
        t0 = time.perf_counter()
        with step("exporting ONNX"):
            export = onnx_from_module(loaded.module, spec, onnx_path, opset=options.opset,
                                      exported_program=loaded.exported_program, on_warning=note)
        seconds["export"] = time.perf_counter() - t0
        spec = spec.with_outputs(onnx_output_specs(onnx_path, spec))
        simplification = "skipped (--no-simplify)"
        if options.simplify:
            t0 = time.perf_counter()
            with step("simplifying with onnxsim"):
                result = simplify_onnx(onnx_path, spec, atol=atol, rtol=rtol)
            simplification = result.message
            if not result.applied:
                note(result.message)
            seconds["simplify"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        reference = TorchRunner(loaded.module, [t.name for t in spec.inputs], [t.name for t in spec.outputs],
                                batched=spec.batched)
        with step("checking parity: PyTorch vs ONNX Runtime"), OnnxRuntimeRunner(onnx_path) as ort_runner:
            parity = parity_against(reference, ort_runner, spec, atol=atol, rtol=rtol)
        seconds["parity"] = time.perf_counter() - t0
        if not parity.passed:
            raise CheckFailed(
                f"ONNX Runtime does not match PyTorch: {parity.failures()}",
                "if the model has data-dependent control flow (if on tensor values), the export froze one branch: "
                "rewrite it with torch.where / torch.cond; for precision-sensitive models loosen --atol/--rtol",
            )

        ref_inputs = random_inputs(spec, min(4, spec.max_batch_size) if spec.batched else None,
                                   example_lengths(spec), np.random.default_rng(7))
        # Lower precision: onnx/python formats serve the converted ONNX; a TensorRT plan converts on its own.
        served_spec, served_files, served_parity, precision_report = spec, export.files, parity, None
        calibration = _calibration(precision, formats, spec, note)
        if precision.precision != "fp32" and set(formats) & {"onnx", "python"}:
            t0 = time.perf_counter()
            converted = onnx_with_precision(onnx_path, spec, reference, precision, stage / "precision", ref_inputs,
                                            atol=options.atol, rtol=options.rtol, note=note, step=step,
                                            calibration=calibration)
            served_spec, served_files, served_parity = converted.spec, converted.files, converted.parity
            precision_report = {**converted.report.to_dict(), "fp32_export_parity": parity.to_dict()}
            seconds["precision"] = time.perf_counter() - t0
        # The reference inputs as the served model takes them (FP16 with --fp16-io), and PyTorch FP32 on them.
        ref_inputs = cast_feeds(ref_inputs, {t.name: t.dtype for t in served_spec.inputs})
        ref_outputs = CastingRunner(reference, {t.name: t.dtype for t in spec.inputs}).infer(ref_inputs)

        artifacts: list[ArtifactResult] = []
        for fmt, model_name, version in zip(formats, model_names, versions, strict=True):
            model_stage = work.staged(model_name)
            version_dir = model_stage / str(version)
            version_dir.mkdir(parents=True)
            fmt_spec, fmt_parity, fmt_files = served_spec, served_parity, served_files
            extra: dict[str, Any] = {"precision": precision_report} if precision_report else {}
            if fmt == "tensorrt":
                from tritongen.formats.tensorrt.engine import check_config_against_engine
                from tritongen.formats.tensorrt.job import PlanJob
                from tritongen.formats.tensorrt.step import plan_into_version_dir

                job = PlanJob(model_files(onnx_path), spec, options.tensorrt, precision.precision,
                              parse_dynamic_ranges(options.tensorrt.dynamic_ranges), options.preferred_batch_sizes,
                              calibration[0] if calibration else None, precision.fp16_io, options.atol, options.rtol,
                              precision.accept_fidelity)
                plan = plan_into_version_dir(job, reference, version_dir, stage / "tensorrt", step=step)
                fmt_spec, fmt_parity, fmt_files = plan.spec, plan.parity, ()
                extra = {"tensorrt": plan.manifest, **({"precision": {"precision": precision.precision,
                                                                      "fidelity": plan.fidelity}}
                                                       if plan.fidelity else {})}
            for f in fmt_files:
                _link_or_copy(f, version_dir / f.name)
            intent = _intent(options, model_name, fmt_spec, fmt, source=Path(options.checkpoint).name,
                             accelerators=accelerators if fmt == "onnx" else ())
            text = render_config(intent)
            proto = parse_config(text)
            if fmt == "tensorrt":
                check_config_against_engine(proto, plan.meta)
            else:
                check_config_against_onnx(proto, version_dir / "model.onnx")
            write_text_atomic(model_stage / CONFIG, text)
            if fmt == "python":
                from tritongen.export.python_runner import write_python_model

                write_python_model(version_dir, fmt_spec)
            save_reference(version_dir, cast_feeds(ref_inputs, {t.name: t.dtype for t in fmt_spec.inputs}), ref_outputs)
            # A copy of the config with each version: the model-level config.pbtxt follows the latest build.
            shutil.copy2(model_stage / CONFIG, version_dir / META_DIR / CONFIG)
            manifest = _manifest(options, loaded, fmt_spec, export, simplification, fmt_parity, fmt, model_name, version,
                                 version_dir, warnings) | extra
            write_manifest(version_dir, manifest)
            artifact_file = "model.plan" if fmt == "tensorrt" else "model.onnx"
            artifacts.append(ArtifactResult(fmt, model_name, version, repository / model_name / str(version) / artifact_file,
                                            repository / model_name / CONFIG, fmt_parity))
        work.install()

    deploy_files: list[Path] = []
    if options.deploy:
        deploy_files = _write_deploy(repository, options)
    seconds["total"] = time.perf_counter() - started
    return BuildResult(name, versions[0], repository, artifacts[0].config, spec, artifacts, export.exporter,
                       export.opset, simplification, warnings, deploy_files, seconds, precision_report)


def _write_deploy(repository: Path, options: BuildOptions) -> list[Path]:
    from tritongen.deploy import write_deploy

    return list(write_deploy(repository, image=options.deploy_image, public=options.public))


def _intent(options: BuildOptions, name: str, spec: ModelSpec, fmt: str, source: str = "a PyTorch checkpoint",
            accelerators: tuple[Any, ...] = ()) -> ModelConfig:
    from tritongen.accelerators import execution_accelerators, spec_profile_shapes

    entries = execution_accelerators(
        accelerators, name, cache_dir=options.ort_engine_cache,
        profile_shapes=spec_profile_shapes(spec, parse_dynamic_ranges(options.tensorrt.dynamic_ranges),
                                           options.preferred_batch_sizes)
        if any(a.name == "tensorrt" for a in accelerators) else None)
    # A plan's profile may end below --max-batch-size; preferred sizes above it would not be formed anyway.
    preferred = tuple(b for b in options.preferred_batch_sizes if b <= spec.max_batch_size) if fmt == "tensorrt" \
        else tuple(options.preferred_batch_sizes)
    return ModelConfig(name=name, spec=spec, format=fmt, instance_count=options.instances, kind=options.kind,
                       max_queue_delay_us=options.max_queue_delay_us,
                       preferred_batch_sizes=preferred, source=source, accelerators=entries)


def _check_precision_and_targets(options: BuildOptions, formats: tuple[str, ...], name: str,
                                 note: Callable[[str], None]) -> tuple[PrecisionOptions, tuple[Any, ...]]:
    """Precision, accelerator and TensorRT options checked before the slow steps; returns the resolved ones."""
    from tritongen.accelerators import engine_cache_note, parse_ort_accelerators
    from tritongen.formats.tensorrt.builder import check_tensorrt_available
    from tritongen.precision import check_precision_options

    for msg in check_precision_options(options.precision):
        note(msg)
    precision = options.precision
    accelerators = parse_ort_accelerators(options.ort_accelerators, kind=options.kind, precision=precision.precision,
                                          quantize=precision.quantize, formats=formats)
    if any(a.name == "tensorrt" and a.precision == "int8" for a in accelerators):
        # TensorRT runs only symmetric (zero-point 0) INT8: quantize the activations that way.
        precision = replace(precision, symmetric_activations=True)
    cache_note = engine_cache_note(accelerators, name, options.ort_engine_cache)
    if cache_note:
        note(cache_note)
    parse_dynamic_ranges(options.tensorrt.dynamic_ranges)  # also used for the TensorRT execution provider's profiles
    if "tensorrt" in formats:
        if precision.precision == "int8" and precision.calibration_data is None and precision.calibration != "random":
            raise TritongenError("--format tensorrt --precision int8 needs calibration data: TensorRT calibrates the "
                                 "engine itself", "pass --calibration-data FILE.npz (or --calibration random for a "
                                 "test build)")
        check_tensorrt_available(options.tensorrt)
    return precision, accelerators


def _calibration(precision: PrecisionOptions, formats: tuple[str, ...], spec: ModelSpec,
                 note: Callable[[str], None]) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]] | None:
    """Calibration feeds, read once for ONNX Runtime's static quantization and TensorRT's calibrator alike."""
    from tritongen.precision import calibration_for

    onnx_static = precision.quantize == "static" and set(formats) & {"onnx", "python"}
    if precision.precision != "int8" or not (onnx_static or "tensorrt" in formats):
        return None
    return calibration_for(precision, spec, note)


def _check_formats(formats: tuple[str, ...]) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.lower() for f in formats)) or ("onnx",)
    for f in formats:
        if f not in FORMATS:
            raise TritongenError(f"unknown --format '{f}'", f"use one of {', '.join(FORMATS)}")
    return formats


def _parse_axis_lengths(items: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    lengths: dict[str, tuple[int, ...]] = {}
    for item in items:
        axis, _, values = item.partition("=")
        try:
            nums = tuple(int(v) for v in values.split(","))
        except ValueError:
            nums = ()
        if not axis or len(nums) != 2 or min(nums) < 1:
            raise TritongenError(f"malformed --axis-length '{item}'", "use AXIS=SHORT,LONG, e.g. --axis-length seq=8,32")
        lengths[axis] = nums
    return lengths


def _check_axis_lengths(spec: ModelSpec, lengths: dict[str, tuple[int, ...]]) -> None:
    unknown = [a for a in lengths if a not in spec.dynamic_axes]
    if unknown:
        raise TritongenError(f"--axis-length names axis '{unknown[0]}', which no input has",
                             f"dynamic axes are: {', '.join(spec.dynamic_axes) or 'none'}")


def forward_parameters(module: Any) -> list[str] | None:
    """Names of forward()'s positional parameters, or None when it takes *args."""
    try:
        schema = module.forward.schema  # TorchScript
        return [a.name for a in schema.arguments[1:]]
    except AttributeError:
        pass
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]


def _inputs_for_module(loaded: LoadedCheckpoint, user_inputs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    params = forward_parameters(loaded.module)
    if not user_inputs:
        wanted = ", ".join(params) if params else "each input"
        raise TritongenError(f"no --input given; the model's forward() takes ({wanted})",
                             "pass --input NAME:SHAPE:DTYPE once per input, e.g. --input image:3x224x224:fp32")
    if params is not None and len(user_inputs) != len(params):
        all_params = _all_forward_parameters(loaded.module)
        if not (len(params) <= len(user_inputs) <= len(all_params)):
            raise TritongenError(
                f"forward() takes {len(params)} input(s) ({', '.join(params)}) but {len(user_inputs)} --input "
                f"given ({', '.join(t.name for t in user_inputs)})",
                "pass one --input per forward() argument, in order")
    if any(t.dtype.short == "bf16" for t in user_inputs):
        raise TritongenError("bf16 inputs are not supported yet (ONNX Runtime's CPU kernels lack most bf16 ops)",
                             "declare the input as fp32 or fp16; the model can cast inside forward()")
    vocab = _embedding_range(loaded.module)
    return tuple(
        TensorSpec(t.name, t.dtype, t.shape, t.value_range or (vocab if not t.dtype.is_float and t.dtype.short != "bool"
                                                               else None))
        for t in user_inputs)


def _all_forward_parameters(module: Any) -> list[str]:
    try:
        return [p.name for p in inspect.signature(module.forward).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []


def _embedding_range(module: Any) -> tuple[int, int] | None:
    """A value range valid for every embedding table in the model: token ids below the smallest vocabulary."""
    import torch

    sizes = []
    for m in module.modules():
        if isinstance(m, torch.nn.Embedding | torch.nn.EmbeddingBag):
            sizes.append(m.num_embeddings)
        elif getattr(m, "original_name", "") in ("Embedding", "EmbeddingBag") and hasattr(m, "weight"):
            sizes.append(int(m.weight.shape[0]))  # TorchScript
    return (0, min(sizes) - 1) if sizes else None


def inputs_from_exported_program(ep: Any, user_inputs: tuple[TensorSpec, ...], max_batch_size: int) -> tuple[TensorSpec, ...]:
    """Input specs of a torch.export program: names from forward(), dtypes and dynamic axes from its example inputs.

    The program's symbolic dims (`s77`) become readable axis names: `batch` for a shared leading dim,
    else `<input>_dim<i>`; the same symbol on two inputs is the same axis. --input may rename them.
    """
    import torch

    names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    examples: list[Any] = []
    if ep.example_inputs is not None:
        args, kwargs = ep.example_inputs
        examples = list(args) + list(kwargs.values())
    metas = [placeholders[n].meta.get("val") for n in names]
    if user_inputs and len(user_inputs) != len(names):
        raise TritongenError(f"the exported program takes {len(names)} input(s) ({', '.join(names)}) but "
                             f"{len(user_inputs)} --input given", "leave out --input for .pt2 files, or give one per input")
    symbols_first_dim = {str(m.shape[0]) for m in metas if m is not None and len(m.shape) > 0}
    batched = max_batch_size > 0
    if batched:
        static = [n for n, m in zip(names, metas, strict=True)
                  if m is None or len(m.shape) == 0 or isinstance(m.shape[0], int)]
        if static:
            raise TritongenError(
                f"the exported program has a fixed batch size on input '{static[0]}', so it cannot batch",
                "re-export with dynamic_shapes={...: {0: torch.export.Dim('batch')}}, or pass --max-batch-size 0")
        if len(symbols_first_dim) != 1:
            raise TritongenError("the exported program's inputs have different leading dims, so they share no batch axis",
                                 "pass --max-batch-size 0")
    axis_names: dict[str, str] = {next(iter(symbols_first_dim)): BATCH_AXIS} if batched else {}
    specs = []
    for idx, (name, meta) in enumerate(zip(names, metas, strict=True)):
        user = user_inputs[idx] if user_inputs else None
        dtype = dtype_from_torch(meta.dtype)
        if user and user.dtype != dtype:
            raise TritongenError(f"input '{name}' is {dtype.short} in the exported program but --input says "
                                 f"{user.dtype.short}", f"pass --input {user.name}:...:{dtype.short}")
        dims = list(meta.shape)[1:] if batched else list(meta.shape)
        shape: list[int | str] = []
        for i, d in enumerate(dims):
            if isinstance(d, int) or (hasattr(d, "node") and d.node.is_constant()):
                shape.append(int(d))
                continue
            sym = str(d)
            wanted = user.shape[i] if user and i < len(user.shape) and isinstance(user.shape[i], str) else None
            axis_names.setdefault(sym, wanted or f"{user.name if user else name}_dim{i + (1 if batched else 0)}")
            shape.append(axis_names[sym])
        value_range = None
        example = examples[idx] if idx < len(examples) else None
        if not dtype.is_float and dtype.short != "bool" and isinstance(example, torch.Tensor) and example.numel():
            value_range = (int(example.min()), int(example.max()))
        specs.append(TensorSpec(user.name if user else name, dtype, tuple(shape), value_range))
    return tuple(specs)


def outputs_from_module(module: Any, spec: ModelSpec, names: tuple[str, ...]) -> tuple[TensorSpec, ...]:
    """Run the model at two batch sizes / axis lengths; name its outputs and find which of their dims vary."""
    runs = []
    for batch, which, seed in ((example_batch(spec), 0, 0), (3 if spec.batched else None, 1, 1)):
        feeds = random_inputs(spec, batch, example_lengths(spec, which), np.random.default_rng(seed))
        runs.append((batch, _run_module(module, spec, feeds, works_with=runs[0][0] if runs else None)))
    (b0, first), (b1, second) = runs
    keys = [k for k, _ in first]
    if names:
        if len(names) != len(first):
            raise TritongenError(f"{len(names)} --output name(s) given but the model returns {len(first)} tensor(s)",
                                 "pass one --output per returned tensor, in order")
        out_names = list(names)
    elif all(k is not None for k in keys):
        out_names = [str(k) for k in keys]
    else:
        out_names = ["output"] if len(first) == 1 else [f"output_{i}" for i in range(len(first))]
    specs = []
    for out_name, (_, a), (_, b) in zip(out_names, first, second, strict=True):
        shape_a, shape_b = tuple(a.shape), tuple(b.shape)
        if spec.batched:
            if not shape_a or shape_a[0] != b0 or shape_b[0] != b1:
                raise TritongenError(
                    f"output '{out_name}' does not have the batch as its first axis (shape {list(shape_a)} for a "
                    f"batch of {b0})", "return per-item results stacked along dim 0, or pass --max-batch-size 0")
            shape_a, shape_b = shape_a[1:], shape_b[1:]
        if len(shape_a) != len(shape_b):
            raise TritongenError(f"output '{out_name}' changes rank with the input shape", "return fixed-rank tensors")
        dims = tuple(x if x == y else _axis_matching(spec, x, y) or f"{out_name}_dim{i + 1}"
                     for i, (x, y) in enumerate(zip(shape_a, shape_b, strict=True)))
        specs.append(TensorSpec(out_name, dtype_from_torch(a.dtype), dims))
    return tuple(specs)


def _axis_matching(spec: ModelSpec, short: int, long: int) -> str | None:
    """The input axis an output dim follows, when its sizes in the two runs are that axis's two lengths."""
    return next((a for a in spec.dynamic_axes if spec.lengths(a)[:2] == (short, long)), None)


def _run_module(module: Any, spec: ModelSpec, feeds: dict[str, np.ndarray],
                works_with: int | None = None) -> list[tuple[str | None, Any]]:
    import torch

    args = [torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in spec.inputs]
    try:
        with torch.no_grad():
            result = module(*args)
    except Exception as exc:
        shapes = ", ".join(f"{t.name} {list(feeds[t.name].shape)} {t.dtype.short}" for t in spec.inputs)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        if works_with is not None:
            raise TritongenError(
                f"the model runs at batch {works_with} but fails at another batch size or axis length ({shapes}): "
                f"{type(exc).__name__}: {first}",
                "the model's code fixes a size (e.g. x.reshape(2, -1)): make it shape-generic (x.reshape(x.shape[0], "
                "-1)), or pass --max-batch-size 0 for a model that cannot batch") from exc
        raise TritongenError(f"the model fails on example inputs ({shapes}): {type(exc).__name__}: {first}",
                             "check --input shapes and dtypes (shape is per item, without the batch axis)") from exc
    return flatten_outputs(result)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _versions() -> dict[str, str]:
    out = {"tritongen": __version__, "python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime", "onnxsim", "tritonclient"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _manifest(options: BuildOptions, loaded: LoadedCheckpoint, spec: ModelSpec, export: Any, simplification: str,
              parity: ParityReport, fmt: str, model_name: str, version: int, version_dir: Path,
              warnings: list[str]) -> dict[str, Any]:
    from tritongen.checkpoint import sha256_of

    artifacts = {p.relative_to(version_dir).as_posix(): sha256_of(p)
                 for p in sorted(version_dir.rglob("*")) if p.is_file() and META_DIR not in p.relative_to(version_dir).parts}
    return {
        "model": model_name,
        "version": version,
        "format": fmt,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": options.command or shlex.join(sys.argv),
        "checkpoint": {"path": str(Path(options.checkpoint).resolve()), "sha256": loaded.sha256, "kind": loaded.kind.value,
                       "loaded_as": loaded.how},
        "spec": spec_to_dict(spec),
        "export": {"exporter": export.exporter, "opset": export.opset, "simplification": simplification},
        "artifacts": artifacts,
        # The tolerance parity was checked at, which validate reuses: it depends on the precision.
        "tolerance": {"atol": parity.atol, "rtol": parity.rtol},
        "parity": parity.to_dict(),
        "versions": _versions(),
        "warnings": list(warnings),
    }
