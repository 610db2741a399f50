"""`build`'s options resolved once into a frozen BuildPlan: every option checked before anything is loaded or written.

`plan_build(options)` parses and checks what the command line gave (formats, names, versions, inputs, axis lengths,
dynamic ranges, tolerances, precision, accelerators, opset, where the repository is); `check_spec(plan, spec)`
checks what depends on the model's inputs once the checkpoint is loaded, and the plan then carries the model's
interface (`plan.spec`). `tritongen.build` executes the plan; nothing after planning parses an option again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritongen import defaults, formats
from tritongen.config import ModelConfig, QueuePolicy, check_intent, check_model_name, instances_for, model_name_from_path
from tritongen.errors import TritongenError
from tritongen.formats.tensorrt.builder import TensorRTOptions
from tritongen.formats.tensorrt.profiles import DynamicRange, parse_dynamic_ranges
from tritongen.pipeline.options import PipelineOptions
from tritongen.precision import PrecisionOptions
from tritongen.repository import check_repository_dir, resolve_version
from tritongen.spec import ModelSpec, TensorSpec, check_example_size, check_unique_names, parse_input_spec
from tritongen.verify import tolerance_for

if TYPE_CHECKING:
    from tritongen.formats import Format


@dataclass(frozen=True)
class BuildOptions:
    """Everything `tritongen build` takes; None means "the default", resolved by `plan_build`."""

    checkpoint: Path
    name: str | None = None
    inputs: tuple[str, ...] = ()  # NAME:SHAPE:DTYPE
    outputs: tuple[str, ...] = ()
    axis_lengths: tuple[str, ...] = ()  # AXIS=A,B
    model_class: str | None = None
    model_kwargs: str | None = None
    pythonpath: tuple[Path, ...] = ()
    trust_checkpoint: bool = False
    task: str | None = None  # a Hugging Face folder's task (default: the one it was saved for)
    imports: tuple[str, ...] = ()  # modules imported before loading (the user's pytree types)
    example_inputs: Path | None = None  # an .npz (or a folder of them) with real inputs
    max_batch_size: int = defaults.MAX_BATCH_SIZE
    instances: int | None = None  # None: 1, or 2 with a queue policy (`config.instances_for`)
    kind: str = "auto"
    max_queue_delay_us: int = defaults.MAX_QUEUE_DELAY_US
    preferred_batch_sizes: tuple[int, ...] = ()
    queue: QueuePolicy = field(default_factory=QueuePolicy)  # the dynamic batcher's default queue policy
    priority_levels: int = 0
    response_cache: bool = False
    formats: tuple[str, ...] = ("onnx",)
    opset: int | None = None
    simplify: bool = True
    atol: float | None = None  # None: the precision's default (1e-4 for fp32, 1e-2 for fp16, measured for int8)
    rtol: float | None = None
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)
    ort_accelerators: tuple[str, ...] = ()  # NAME[:PRECISION]: execution providers for the onnx format
    ort_engine_cache: str | None = None  # the TensorRT execution provider's cache directory on the server
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)
    repository: Path = defaults.REPOSITORY
    version: int | None = None
    force: bool = False
    deploy: bool = True
    deploy_image: str | None = None  # auto | slim | nvidia | an image reference
    public: bool = False  # bind the deployment's ports on all interfaces
    command: str | None = None  # the command line, recorded in the manifest (the CLI passes it)
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)  # --pipeline and its options


@dataclass(frozen=True)
class LoadOptions:
    """How the checkpoint is loaded: the arguments of `tritongen.checkpoint.load_checkpoint` besides its path."""

    model_class: str | None
    model_kwargs: str | None
    pythonpath: tuple[Path, ...]
    trust: bool
    task: str | None = None
    imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigOptions:
    """What config.pbtxt gets besides the model's interface."""

    instances: int
    kind: str
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    ort_engine_cache: str | None
    queue: QueuePolicy = QueuePolicy()
    priority_levels: int = 0
    response_cache: bool = False


@dataclass(frozen=True)
class Target:
    """One model the build writes: a format, its model name in the repository, and the version it gets."""

    format: Format
    model: str
    version: int


@dataclass(frozen=True)
class BuildPlan:
    """The build, resolved: what to load, what to write where, and how to check it."""

    checkpoint: Path
    load: LoadOptions
    name: str
    targets: tuple[Target, ...]
    inputs: tuple[TensorSpec, ...]  # --input as given; bound to the model's inputs by name once it is loaded
    outputs: tuple[str, ...]
    max_batch_size: int
    axis_lengths: dict[str, tuple[int, ...]]
    dynamic_ranges: dict[str, DynamicRange]
    tolerance: tuple[float, float]  # (atol, rtol) of the FP32 export's parity
    atol: float | None  # as given: converted precisions and TensorRT derive their own defaults from them
    rtol: float | None
    precision: PrecisionOptions
    accelerators: tuple[Any, ...]  # tritongen.accelerators.AcceleratorRequest
    config: ConfigOptions
    opset: int | None
    simplify: bool
    tensorrt: TensorRTOptions
    repository: Path
    deploy: bool
    deploy_image: str | None
    public: bool
    command: str | None
    example_inputs: Path | None = None  # --example-inputs: checked against the model's inputs once it is loaded
    version: int | None = None  # --version as given (the targets hold the versions chosen)
    force: bool = False
    notes: tuple[str, ...] = ()  # warnings found while planning, shown before the build starts
    spec: ModelSpec | None = None  # the model's interface, once the checkpoint is loaded
    pipeline: PipelineOptions | None = None  # with --pipeline: the targets are the network, its steps, the ensemble

    def needs_calibration(self) -> bool:
        return any(t.format.needs_calibration(self.precision) for t in self.targets)

    def converts_onnx(self) -> bool:
        """Whether the ONNX model is converted to a lower precision (for the formats that serve it)."""
        return self.precision.precision != "fp32" and any(t.format.serves_onnx for t in self.targets)


def plan_build(options: BuildOptions) -> BuildPlan:
    """Check every option and resolve the defaults; raises TritongenError naming the first bad one."""
    from tritongen.checkpoint import CheckpointKind, kind_of_checkpoint, parse_model_kwargs
    from tritongen.export.onnx import check_opset

    notes: list[str] = []
    checkpoint = Path(options.checkpoint)
    kind = kind_of_checkpoint(checkpoint)
    _check_source_options(options, checkpoint, kind)
    parse_model_kwargs(options.model_kwargs)
    fmts = tuple(formats.get(f) for f in dict.fromkeys(f.lower() for f in options.formats) or ("onnx",))
    name = check_model_name(options.name if options.name is not None else model_name_from_path(checkpoint))
    model_names = [name if i == 0 else check_model_name(f"{name}_{f.name}") for i, f in enumerate(fmts)]
    pipeline = _check_pipeline(options, checkpoint, kind, fmts)
    parts: list[tuple[Format, str]] = []
    if pipeline is not None:  # the ensemble gets the name; the network and the steps are models beside it
        model_names = [check_model_name(f"{name}_model")]
        parts = [(formats.get(p), check_model_name(name if p == "ensemble" else f"{name}_{p}"))
                 for p in formats.PIPELINE_PARTS]
    tolerance = _check_tolerances(options.atol, options.rtol)
    inputs = tuple(parse_input_spec(s) for s in options.inputs)
    check_unique_names(inputs, "input")
    outputs = _check_output_names(options.outputs)
    lengths = parse_axis_lengths(options.axis_lengths)
    check_opset(options.opset, legacy=kind is CheckpointKind.TORCHSCRIPT)
    dynamic_ranges = parse_dynamic_ranges(options.tensorrt.dynamic_ranges)
    examples = Path(options.example_inputs) if options.example_inputs is not None else None
    if examples is not None:
        from tritongen.samples import npz_files

        npz_files(examples, "--example-inputs")
    precision, accelerators = _precision_and_accelerators(options, [f.name for f in fmts], name, notes, examples)
    instances, instances_note = instances_for(options.instances, options.queue, options.priority_levels)
    if instances_note:
        notes.append(instances_note)
    config = ConfigOptions(instances, options.kind, options.max_queue_delay_us,
                           tuple(options.preferred_batch_sizes), options.ort_engine_cache, options.queue,
                           options.priority_levels, options.response_cache)
    # Intent errors (batch sizes, kind) and the sizes of the example inputs come before the slow steps.
    probe = ModelSpec(inputs=inputs, max_batch_size=options.max_batch_size, axis_lengths=lengths)
    for fmt in fmts:
        check_intent(ModelConfig(name, probe, format=fmt.name, instance_count=config.instances, kind=config.kind,
                                 max_queue_delay_us=config.max_queue_delay_us,
                                 preferred_batch_sizes=config.preferred_batch_sizes, queue=config.queue,
                                 priority_levels=config.priority_levels, response_cache=config.response_cache))
    if inputs:
        if kind is not CheckpointKind.EXPORTED_PROGRAM:  # a program names the axes of inputs not given itself
            check_axis_lengths(probe, lengths)
        check_example_size(probe)
    repository = Path(options.repository)
    check_repository_dir(repository)
    if options.deploy:
        from tritongen.deploy import check_deploy_writable

        check_deploy_writable(repository)
    draft = BuildPlan(
        checkpoint=checkpoint,
        load=LoadOptions(options.model_class, options.model_kwargs, tuple(Path(p) for p in options.pythonpath),
                         options.trust_checkpoint, options.task, tuple(options.imports)),
        name=name, targets=tuple(Target(f, m, 0) for f, m in [*zip(fmts, model_names, strict=True), *parts]),
        inputs=inputs, outputs=outputs, max_batch_size=options.max_batch_size, axis_lengths=lengths,
        dynamic_ranges=dynamic_ranges, tolerance=tolerance, atol=options.atol, rtol=options.rtol,
        precision=precision, accelerators=accelerators, config=config, opset=options.opset,
        simplify=options.simplify, tensorrt=options.tensorrt, repository=repository, deploy=options.deploy,
        deploy_image=options.deploy_image, public=options.public, command=options.command, notes=tuple(notes),
        example_inputs=examples, version=options.version, force=options.force, pipeline=pipeline)
    for target in draft.targets:
        target.format.check_plan(draft)
    versions = _choose_versions(repository, [t.model for t in draft.targets], options.version, options.force)
    return replace(draft, targets=tuple(replace(t, version=v) for t, v in zip(draft.targets, versions, strict=True)))


def check_spec(plan: BuildPlan, spec: ModelSpec) -> None:
    """The options that depend on the loaded model's inputs, checked before the model runs or is exported."""
    check_axis_lengths(spec, plan.axis_lengths)
    check_example_size(spec)
    for target in plan.targets:
        target.format.check_spec(plan, spec)


def _check_source_options(options: BuildOptions, checkpoint: Path, kind: Any) -> None:
    """Options that only some checkpoint kinds take."""
    from tritongen.checkpoint import CheckpointKind

    if kind is CheckpointKind.HF_FOLDER:
        from tritongen.sources.hf import read_hf_folder, task_of

        if options.model_class:
            raise TritongenError(f"--model-class does not apply to a Hugging Face folder ('{checkpoint}' names its "
                                 "class in config.json)", "leave out --model-class, or choose the head with --task")
        task_of(read_hf_folder(checkpoint), options.task)  # an unknown or unsupported task fails before loading
    elif options.task is not None:
        raise TritongenError(f"--task applies to Hugging Face model folders, and '{checkpoint}' is a {kind.value} file",
                             "leave out --task, or pass the save_pretrained folder")


def _check_pipeline(options: BuildOptions, checkpoint: Path, kind: Any, fmts: tuple[Format, ...]
                    ) -> PipelineOptions | None:
    """The pipeline options when --pipeline is given (checked against the folder), else None (and no pipeline
    option may be given)."""
    from tritongen.checkpoint import CheckpointKind
    from tritongen.pipeline.options import check_pipeline_plan, check_without_pipeline

    if not options.pipeline.enabled:
        check_without_pipeline(options.pipeline)
        return None
    check_pipeline_plan(options.pipeline, checkpoint, kind is CheckpointKind.HF_FOLDER, tuple(f.name for f in fmts),
                        options.max_batch_size, options.task)
    return options.pipeline


def _choose_versions(repository: Path, model_names: list[str], requested: int | None, force: bool) -> tuple[int, ...]:
    """An early answer for the version each model gets (a taken --version fails before the slow steps); the build
    chooses again under the models' locks (tritongen.repository.building)."""
    return tuple(resolve_version(repository / m, requested, force) for m in model_names)


def _check_tolerances(atol: float | None, rtol: float | None) -> tuple[float, float]:
    for flag, value in (("--atol", atol), ("--rtol", rtol)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise TritongenError(f"{flag} {value} is not a tolerance: it must be a finite number of 0 or more",
                                 f"e.g. {flag} 1e-3")
    tolerance = tolerance_for("fp32", "onnxruntime", atol, rtol)
    return tolerance.atol, tolerance.rtol


def _check_output_names(names: tuple[str, ...]) -> tuple[str, ...]:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TritongenError(f"output name '{repeated[0]}' is given twice", "give each output a distinct name")
    empty = [n for n in names if not n.strip()]
    if empty:
        raise TritongenError("an --output name is empty", "name each output, e.g. --output logits")
    return tuple(names)


def parse_axis_lengths(items: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """`--axis-length AXIS=SHORT,LONG` values by axis."""
    lengths: dict[str, tuple[int, ...]] = {}
    for item in items:
        axis, _, values = item.partition("=")
        try:
            nums = tuple(int(v) for v in values.split(","))
        except ValueError:
            nums = ()
        if not axis or len(nums) != 2 or min(nums) < 1:
            raise TritongenError(f"malformed --axis-length '{item}'", "use AXIS=SHORT,LONG, e.g. --axis-length seq=8,32")
        if axis in lengths:
            raise TritongenError(f"--axis-length gives axis '{axis}' twice", "give each axis one --axis-length")
        lengths[axis] = nums
    return lengths


def check_axis_lengths(spec: ModelSpec, lengths: dict[str, tuple[int, ...]]) -> None:
    unknown = [a for a in lengths if a not in spec.dynamic_axes]
    if unknown:
        raise TritongenError(f"--axis-length names axis '{unknown[0]}', which no input has",
                             f"dynamic axes are: {', '.join(spec.dynamic_axes) or 'none'}")


def _precision_and_accelerators(options: BuildOptions, format_names: list[str], name: str, notes: list[str],
                                examples: Path | None = None) -> tuple[PrecisionOptions, tuple[Any, ...]]:
    """Precision and accelerator options checked before the slow steps; returns the resolved ones. INT8 calibrates
    on the example inputs unless told otherwise."""
    from tritongen.accelerators import engine_cache_note, parse_ort_accelerators
    from tritongen.precision import check_precision_options

    precision = options.precision
    if examples is not None and precision.calibration_data is None and precision.calibration != "random" \
            and precision.precision == "int8" and precision.quantize == "static":
        precision = replace(precision, calibration_data=examples)
    notes += check_precision_options(precision)
    accelerators = parse_ort_accelerators(options.ort_accelerators, kind=options.kind, precision=precision.precision,
                                          quantize=precision.quantize, formats=format_names)
    if any(a.name == "tensorrt" and a.precision == "int8" for a in accelerators):
        # TensorRT runs only symmetric (zero-point 0) INT8: quantize the activations that way.
        precision = replace(precision, symmetric_activations=True)
    cache_note = engine_cache_note(accelerators, name, options.ort_engine_cache)
    if cache_note:
        notes.append(cache_note)
    return precision, accelerators
