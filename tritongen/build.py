"""`build`: checkpoint to a verified, versioned Triton model repository.

options (BuildOptions) --plan_build--> BuildPlan (tritongen.plan: every option checked, nothing loaded yet)
  --execute--> load the checkpoint, bind the inputs by name and find the outputs (tritongen.introspect),
  export ONNX once, simplify, check parity, convert the precision, then per target format write its version
  (tritongen.formats), render and check its config, save reference data and the manifest, install.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tritongen import __version__
from tritongen.checkpoint import CheckpointKind, LoadedCheckpoint, load_checkpoint
from tritongen.config import ModelConfig, parse_config, render_config
from tritongen.errors import CheckFailed
from tritongen.export.onnx import OnnxExport, example_lengths, onnx_from_module, onnx_output_specs
from tritongen.export.parity import onnx_parity
from tritongen.export.simplify import onnx_files, simplify_onnx
from tritongen.export.simplify import writes_files as simplify_writes_files
from tritongen.formats import Exported, VersionJob, WrittenVersion
from tritongen.introspect import (
    BoundModel,
    OutputSelection,
    at_workable_lengths,
    bound_model,
    inputs_for_module,
    inputs_for_program,
    select_outputs,
    selected_outputs,
    with_value_domains,
)
from tritongen.pipeline.design import check_pipeline_interface
from tritongen.pipeline.summary import pipeline_summary
from tritongen.plan import BuildOptions, BuildPlan, Target, check_spec, plan_build
from tritongen.precision import CastingRunner, cast_feeds, onnx_with_precision
from tritongen.repository import (
    CONFIG,
    META_DIR,
    RepositoryBuild,
    building,
    save_reference,
    write_manifest,
    write_text_atomic,
)
from tritongen.runners.forked import ForkedCases, cases_in_background
from tritongen.runners.torch import TorchRunner
from tritongen.samples import Examples, read_examples
from tritongen.spec import ModelSpec, random_inputs, spec_to_dict
from tritongen.verify import ParityReport, Tolerance, parity_cases

__all__ = ["ArtifactResult", "BuildOptions", "BuildPlan", "BuildResult", "build_model", "execute", "plan_build"]

Step = Callable[[str], AbstractContextManager[Any]]
SCRATCH = ".scratch"  # inside the build workspace; a model name cannot start with "."
SOURCE_DIR = "source"  # <version>/tritongen/source/: the checkpoint's preprocessing files (tokenizer, processor)


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
    pipeline: dict[str, Any] | None = None  # with --pipeline: its models, interface, end-to-end parity, client code

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
            "pipeline": self.pipeline,
        }


class _Log:
    """The build's warnings and timings, and the caller's progress hook."""

    def __init__(self, step: Step | None, warn: Callable[[str], None] | None) -> None:
        self.progress: Step = step or (lambda _desc: contextlib.nullcontext())
        self.warn = warn
        self.warnings: list[str] = []
        self.seconds: dict[str, float] = {}

    def note(self, message: str) -> None:
        self.warnings.append(message)
        if self.warn:
            self.warn(message)

    @contextlib.contextmanager
    def step(self, description: str, key: str) -> Iterator[None]:
        start = time.perf_counter()
        with self.progress(description):
            yield
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class _Export:
    """The shared steps' result: what every format gets, and how the ONNX model was made (for the manifest)."""

    exported: Exported
    onnx: OnnxExport
    simplification: str
    domains: dict[str, str]  # where each input's example values come from
    reference_inputs: dict[str, np.ndarray]  # as the served ONNX model takes them
    reference_outputs: dict[str, np.ndarray]  # PyTorch FP32 on them


def build_model(options: BuildOptions, step: Step | None = None, warn: Callable[[str], None] | None = None) -> BuildResult:
    """Plan the build from `options`, then execute it; raises TritongenError on bad input, CheckFailed on parity."""
    return execute(plan_build(options), step, warn)


def execute(plan: BuildPlan, step: Step | None = None, warn: Callable[[str], None] | None = None) -> BuildResult:
    """Load, export, simplify, verify, then write, check and install every target of the plan."""
    log = _Log(step, warn)
    started = time.perf_counter()
    for message in plan.notes:
        log.note(message)
    with log.step("loading checkpoint", "load"):
        loaded = load_checkpoint(plan.checkpoint, model_class=plan.load.model_class,
                                 model_kwargs=plan.load.model_kwargs, pythonpath=plan.load.pythonpath,
                                 trust=plan.load.trust, task=plan.load.task, imports=plan.load.imports)
    for message in loaded.notes:
        log.note(message)
    with log.step("finding the model's inputs and outputs", "introspect"):
        plan, model, interface = _introspect(plan, loaded, log)
    # The versions are chosen again under the models' locks, which are held until every target is installed.
    with building(plan.repository, [t.model for t in plan.targets], version=plan.version, force=plan.force,
                  note=log.note) as work:
        plan = replace(plan, targets=tuple(replace(t, version=v) for t, v in zip(plan.targets, work.versions,
                                                                                   strict=True)))
        shared = _export(plan, loaded, model, interface, work.workspace / SCRATCH, log)
        if plan.pipeline is not None:
            shared = _check_pipeline(plan, loaded, shared, work.workspace / SCRATCH / "pipeline", log)
        staged = [_stage_target(plan, target, loaded, shared, work, log) for target in plan.targets]
        work.install()
    deploy_files: list[Path] = []
    if plan.deploy:
        from tritongen.deploy import write_deploy

        deploy_files = list(write_deploy(plan.repository, image=plan.deploy_image, public=plan.public))
    log.seconds["total"] = time.perf_counter() - started
    artifacts = [artifact for _, artifact in staged]
    check = shared.exported.pipeline
    # The version of the model the user named: the ensemble's, with --pipeline.
    version = next((t.version for t in plan.targets if t.model == plan.name), plan.targets[0].version)
    return BuildResult(plan.name, version, plan.repository, artifacts[0].config, shared.exported.spec,
                       artifacts, shared.onnx.exporter, shared.onnx.opset, shared.simplification, log.warnings,
                       deploy_files, log.seconds, shared.exported.precision_report,
                       pipeline_summary(check.design, check.report) if check is not None else None)


@dataclass(frozen=True)
class _Interface:
    """What introspection found besides the spec: which outputs are served, where each input's values come from, the
    user's example inputs."""

    selection: OutputSelection
    domains: dict[str, str]
    examples: Examples | None


def _introspect(plan: BuildPlan, loaded: LoadedCheckpoint, log: _Log) -> tuple[BuildPlan, BoundModel, _Interface]:
    """The model's interface: inputs bound by name (the checkpoint's own where no --input is given), the values each
    takes, then its outputs found by running it twice, at lengths it takes."""
    defaults = loaded.defaults
    given = plan.inputs or (defaults.inputs if defaults else ())
    if loaded.kind is CheckpointKind.EXPORTED_PROGRAM:
        inputs = inputs_for_program(loaded.exported_program, plan.inputs, plan.max_batch_size)
    else:
        inputs = inputs_for_module(loaded.module, given, log.note)
    spec = ModelSpec(inputs=inputs, max_batch_size=plan.max_batch_size, padding=defaults.padding if defaults else "right")
    default_lengths = {a: n for a, n in (defaults.axis_lengths if defaults else {}).items() if a in spec.dynamic_axes}
    spec = replace(spec, axis_lengths={**default_lengths, **plan.axis_lengths})
    check_spec(plan, spec)
    model = bound_model(loaded.module, spec, loaded.exported_program)
    preferred = defaults.outputs if defaults and not plan.outputs else ()

    def run(candidate: ModelSpec) -> tuple[ModelSpec, OutputSelection, dict[str, str]]:
        candidate, domains = with_value_domains(model, candidate, loaded.exported_program)
        outputs, selection = select_outputs(model, candidate, plan.outputs, log.note, preferred)
        return candidate.with_outputs(outputs), selection, domains

    _, (spec, selection, domains) = at_workable_lengths(run, spec, set(plan.axis_lengths), log.note)
    if plan.pipeline is not None:  # before the export: a model no step can feed or read is refused now
        check_pipeline_interface(spec, loaded.source)
    examples = read_examples(plan.example_inputs, spec) if plan.example_inputs is not None else None
    return replace(plan, spec=spec), model.selecting(selection), _Interface(selection, domains, examples)


def _export(plan: BuildPlan, loaded: LoadedCheckpoint, model: BoundModel, interface: _Interface, scratch: Path,
            log: _Log) -> _Export:
    """The ONNX model every format starts from: exported once, simplified, checked against PyTorch, converted."""
    assert plan.spec is not None
    spec = plan.spec
    onnx_path = scratch / "export" / "model.onnx"
    atol, rtol = plan.tolerance
    # A model that returns more than is served (a cache, outputs not selected) is exported through a wrapper that
    # returns the served outputs only.
    module, program = loaded.module, loaded.exported_program
    if not interface.selection.whole:
        module, program = selected_outputs(model), None
    examples = interface.examples.batches(spec) if interface.examples else []
    reference = TorchRunner(model, [t.name for t in spec.inputs], [t.name for t in spec.outputs], batched=spec.batched)
    cases = parity_cases(spec, examples)
    # PyTorch's outputs for the parity cases are computed in a forked child while this process exports: the export
    # is mostly single-threaded Python, so the reference costs next to no wall time on a machine with 2+ cores.
    with cases_in_background(reference, cases, scratch / "reference") as pytorch:
        with log.step("exporting ONNX", "export"):
            # Weights in a .data file when onnxsim writes the served model with them inline anyway (quicker).
            export = onnx_from_module(module, spec, onnx_path, opset=plan.opset, exported_program=program,
                                      external_data=plan.simplify and simplify_writes_files(), on_warning=log.note)
        spec = spec.with_outputs(onnx_output_specs(onnx_path, spec))
        if [t.name for t in spec.outputs] != reference.output_names:  # the graph names them otherwise: run here
            pytorch.cancel()
            reference = TorchRunner(model, reference.input_names, [t.name for t in spec.outputs], batched=spec.batched)
            pytorch = ForkedCases(reference, cases, scratch / "reference", fork=False)
        simplification, simplified = "skipped (--no-simplify)", None
        if plan.simplify:
            with log.step("simplifying with onnxsim", "simplify"):
                # Checked by the parity step below, against PyTorch: no separate comparison with the export.
                simplified = simplify_onnx(onnx_path, spec, check=False)
            simplification = simplified.message
            if not simplified.applied:
                log.note(simplified.message)
        with log.step("checking parity: PyTorch vs ONNX Runtime", "parity"):
            parity, kept_exported = onnx_parity(pytorch, onnx_path, cases, spec, Tolerance(atol, rtol), simplified)
        if kept_exported:
            simplification = kept_exported
            log.note(kept_exported)
    for message in parity.notes():
        log.note(message)
    if not parity.passed:
        raise CheckFailed(
            f"ONNX Runtime does not match PyTorch: {parity.failures()}",
            "if the model has data-dependent control flow (if on tensor values), the export froze one branch: "
            "rewrite it with torch.where / torch.cond; for precision-sensitive models loosen --atol/--rtol",
        )

    # validate compares every position of the reference: it pads on the right, where every position sees a real token.
    ref_inputs = interface.examples.reference(spec) if interface.examples else random_inputs(
        replace(spec, padding="right"), min(4, spec.max_batch_size) if spec.batched else None, example_lengths(spec),
        np.random.default_rng(7))
    calibration = None
    if plan.needs_calibration():  # read once, for ONNX Runtime's static quantization and TensorRT's calibrator alike
        from tritongen.precision import calibration_for

        calibration = calibration_for(plan.precision, spec, log.note)
    # Lower precision: the ONNX-serving formats serve the converted model; a TensorRT plan converts on its own.
    served_spec, served_files, served_parity, precision_report = spec, onnx_files(onnx_path), parity, None
    if plan.converts_onnx():
        t0 = time.perf_counter()
        converted = onnx_with_precision(onnx_path, spec, reference, plan.precision, scratch / "precision", ref_inputs,
                                        atol=plan.atol, rtol=plan.rtol, note=log.note, step=log.progress,
                                        calibration=calibration)
        served_spec, served_files, served_parity = converted.spec, converted.files, converted.parity
        precision_report = {**converted.report.to_dict(), "fp32_export_parity": parity.to_dict()}
        log.seconds["precision"] = time.perf_counter() - t0
    # The reference inputs as the served model takes them (FP16 with --fp16-io), and PyTorch FP32 on them.
    ref_inputs = cast_feeds(ref_inputs, {t.name: t.dtype for t in served_spec.inputs})
    ref_outputs = CastingRunner(reference, {t.name: t.dtype for t in spec.inputs}).infer(ref_inputs)
    exported = Exported(onnx_path, spec, reference, parity, tuple(served_files), served_spec, served_parity,
                        precision_report, calibration)
    return _Export(exported, export, simplification, interface.domains, ref_inputs, ref_outputs)


def _check_pipeline(plan: BuildPlan, loaded: LoadedCheckpoint, shared: _Export, work_dir: Path, log: _Log) -> _Export:
    """The pipeline designed around the served network, and checked end to end against transformers + PyTorch."""
    from tritongen.pipeline import check_pipeline, design_pipeline
    from tritongen.verify import Tolerance

    assert plan.pipeline is not None and loaded.source is not None
    exported = shared.exported
    with log.step("designing the pipeline's pre- and post-processing", "pipeline_design"):
        design = design_pipeline(plan.name, plan.targets[0].model, plan.pipeline, exported.served_spec, loaded.source,
                                 plan.checkpoint, plan.load.trust)
    tolerance = Tolerance(exported.served_parity.atol, exported.served_parity.rtol)
    with log.step(f"checking the pipeline end to end: {design.kind} in, answers out, against transformers + PyTorch",
                  "pipeline_parity"):
        check = check_pipeline(design, exported.served_files[0], exported.reference,
                               {t.name: t.dtype for t in exported.spec.inputs}, tolerance, work_dir, log.note)
    return replace(shared, exported=replace(exported, pipeline=check))


def _stage_target(plan: BuildPlan, target: Target, loaded: LoadedCheckpoint, shared: _Export, work: RepositoryBuild,
                  log: _Log) -> tuple[Path, ArtifactResult]:
    """Write one target's model folder into the build workspace: its version, config, reference data, manifest."""
    model_stage = work.staged(target.model)
    version_dir = model_stage / str(target.version)
    version_dir.mkdir(parents=True)
    written = target.format.write_version(VersionJob(plan, target.model, shared.exported, version_dir,
                                                     work.workspace / SCRATCH / target.model, log.progress, log.note))
    text = written.config_text or render_config(_intent(plan, target, written.spec))
    target.format.check_config(parse_config(text), version_dir, written)
    write_text_atomic(model_stage / CONFIG, text)
    inputs, outputs = written.reference or (
        cast_feeds(shared.reference_inputs, {t.name: t.dtype for t in written.spec.inputs}), shared.reference_outputs)
    save_reference(version_dir, inputs, outputs)
    # A copy of the config with each version: the model-level config.pbtxt follows the latest build.
    shutil.copy2(model_stage / CONFIG, version_dir / META_DIR / CONFIG)
    # The checkpoint's preprocessing files (a tokenizer, an image processor) stay with the version they belong to.
    if loaded.keep_files:
        (version_dir / META_DIR / SOURCE_DIR).mkdir(parents=True, exist_ok=True)
        for path in loaded.keep_files:
            shutil.copy2(path, version_dir / META_DIR / SOURCE_DIR / path.name)
    write_manifest(version_dir, _manifest(plan, loaded, shared, target, written, version_dir, log.warnings))
    artifact = ArtifactResult(target.format.name, target.model, target.version,
                              plan.repository / target.model / str(target.version) / target.format.artifact
                              if target.format.artifact else plan.repository / target.model / str(target.version),
                              plan.repository / target.model / CONFIG, written.parity)
    return model_stage, artifact


def _intent(plan: BuildPlan, target: Target, spec: ModelSpec) -> ModelConfig:
    """What config.pbtxt says for one target, whose served interface is `spec`."""
    from tritongen.accelerators import execution_accelerators, spec_profile_shapes

    requests = plan.accelerators if target.format.ort_accelerators else ()
    preferred = plan.config.preferred_batch_sizes
    entries = execution_accelerators(
        requests, target.model, cache_dir=plan.config.ort_engine_cache,
        profile_shapes=spec_profile_shapes(spec, plan.dynamic_ranges, preferred)
        if any(a.name == "tensorrt" for a in requests) else None)
    # A plan's profile may end below --max-batch-size; preferred sizes above it would not be formed anyway.
    return ModelConfig(name=target.model, spec=spec, format=target.format.name, instance_count=plan.config.instances,
                       kind=plan.config.kind, max_queue_delay_us=plan.config.max_queue_delay_us,
                       preferred_batch_sizes=tuple(b for b in preferred if b <= spec.max_batch_size),
                       source=plan.checkpoint.name, accelerators=entries, queue=plan.config.queue,
                       priority_levels=plan.config.priority_levels, response_cache=plan.config.response_cache)


def _versions() -> dict[str, str]:
    out = {"tritongen": __version__, "python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime", "onnxsim", "tritonclient", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _manifest(plan: BuildPlan, loaded: LoadedCheckpoint, shared: _Export, target: Target, written: WrittenVersion,
              version_dir: Path, warnings: list[str]) -> dict[str, Any]:
    from tritongen.checkpoint import sha256_of

    artifacts = {p.relative_to(version_dir).as_posix(): sha256_of(p)
                 for p in sorted(version_dir.rglob("*")) if p.is_file() and META_DIR not in p.relative_to(version_dir).parts}
    return {
        "model": target.model,
        "version": target.version,
        "format": target.format.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": plan.command,  # None when built from Python
        "checkpoint": {"path": str(plan.checkpoint.resolve()), "sha256": loaded.sha256, "kind": loaded.kind.value,
                       "loaded_as": loaded.how},
        "spec": spec_to_dict(written.spec),
        "input_values": shared.domains,  # where the values of each input's examples come from
        # What the checkpoint says about itself: a Hugging Face folder's task, labels, maximum length and files
        # (copied to tritongen/source/), for pipelines built on this version.
        "source": loaded.source,
        "example_inputs": str(plan.example_inputs.resolve()) if plan.example_inputs else None,
        "export": {"exporter": shared.onnx.exporter, "opset": shared.onnx.opset,
                   "simplification": shared.simplification},
        "artifacts": artifacts,
        # The tolerance parity was checked at, which validate reuses: it depends on the precision.
        "tolerance": {"atol": written.parity.atol, "rtol": written.parity.rtol},
        "parity": written.parity.to_dict(),
        "versions": _versions(),
        "warnings": list(warnings),
    } | written.manifest
