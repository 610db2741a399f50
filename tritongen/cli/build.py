"""`tritongen build`: argument handling and printing around tritongen.build.build_model."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tritongen import defaults
from tritongen.cli import main
from tritongen.cli.common import common_options, emit_json, progress, stderr_console, stdout_console
from tritongen.formats import NAMES as FORMAT_NAMES
from tritongen.formats import PIPELINE_PARTS
from tritongen.sources.hf import TASKS

if TYPE_CHECKING:
    from tritongen.build import BuildOptions, BuildResult

HF_TASKS = tuple(TASKS)


@main.command("build")
@click.argument("checkpoint", type=click.Path(path_type=Path), metavar="CHECKPOINT|FOLDER", required=False)
@click.option("-f", "--file", "project_file", type=click.Path(path_type=Path), metavar="TRITONGEN.TOML",
              help="Build every model a project file lists into one repository (each [[model]] takes the options "
                   "below by their long names).")
@click.option("--name", help="Model name in the repository (default: the checkpoint's file name).")
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE:DTYPE",
              help="An input of the model, by its name in forward(), per item (no batch axis): image:3x224x224:fp32, "
                   "tokens:seq:int64, x:3xHxW:fp32 (dims joined by x, or by , when an axis name has an x: "
                   "ids:max_len,4:int64). The same axis word on two inputs is one axis. Integer inputs take a value "
                   "range: tokens:seq:int64:0-999.")
@click.option("--output", "outputs", multiple=True, metavar="NAME",
              help="Outputs to serve, by the keys the model returns (logits); for a model returning unnamed tensors, "
                   "their names in order.")
@click.option("--axis-length", "axis_lengths", multiple=True, metavar="AXIS=SHORT,LONG",
              help="Lengths a dynamic axis is exported and checked at (default "
                   f"{','.join(map(str, defaults.AXIS_LENGTHS))}; batch is set by --max-batch-size).")
@click.option("--model-class", metavar="MODULE:CLASS", help="The model's class, for state_dict checkpoints.")
@click.option("--model-kwargs", metavar="JSON", help="Constructor arguments for --model-class, as a JSON object.")
@click.option("--pythonpath", multiple=True, type=click.Path(path_type=Path), help="Directory with the model's code.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow loading a full pickled model (or a Hugging Face folder's own code). Pickles can run arbitrary "
                   "code: only for files you trust.")
@click.option("--task", type=click.Choice(HF_TASKS),
              help="For a Hugging Face folder: the head and outputs to build (default: the one config.json's "
                   "architecture was saved for).")
@click.option("--import", "imports", multiple=True, metavar="MODULE",
              help="Import MODULE before loading (a .pt2 whose inputs or outputs are your own registered pytree types).")
@click.option("--example-inputs", type=click.Path(path_type=Path), metavar="NPZ|DIR",
              help="Real inputs: an .npz with one array per input (items along axis 0), or a folder of them (one per "
                   "length). Checked for parity, saved as the reference data, and INT8's default calibration data.")
@click.option("--pipeline", is_flag=True,
              help="For a Hugging Face folder: also build a Triton ensemble NAME that takes raw text or images "
                   "(TYPE_STRING) and answers with labels, scores or embeddings: NAME_preprocess -> NAME_model -> "
                   "NAME_postprocess, checked end to end against transformers + PyTorch.")
@click.option("--top-k", type=click.IntRange(min=1), help="With --pipeline, classification: also return the K best "
                                                          "labels and their scores (top_k_labels, top_k_scores).")
@click.option("--normalize", is_flag=True, help="With --pipeline, feature extraction: L2-normalize the embedding.")
@click.option("--length-buckets", metavar="N,N,...|none",
              help="With --pipeline, text: lengths requests are padded to, so that requests of similar lengths "
                   "batch together (default: every 16 tokens up to the maximum length; none: to the longest "
                   "item of each request).")
@click.option("--format", "formats", multiple=True, type=click.Choice(FORMAT_NAMES),
              default=("onnx",),
              show_default=True, help="Formats to write; the first gets NAME, others NAME_<format>.")
@click.option("--max-batch-size", type=click.IntRange(min=0), default=defaults.MAX_BATCH_SIZE, show_default=True,
              help="Largest batch Triton forms; 0 means the model does not batch.")
@click.option("--instances", type=click.IntRange(min=1), default=None, show_default="1; 2 with a queue policy",
              help="Model instances.")
@click.option("--kind", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
              help="Instance kind (auto: GPU where the server has one).")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=defaults.MAX_QUEUE_DELAY_US, show_default=True,
              help="How long the dynamic batcher waits to fill a batch.")
@click.option("--preferred-batch-size", "preferred", multiple=True, type=int, help="Preferred batch sizes.")
@click.option("--max-queue-size", type=click.IntRange(min=0), default=defaults.MAX_QUEUE_SIZE, show_default=True,
              help="Requests allowed to wait in the model's queue; beyond it requests are refused at once (HTTP 503, "
                   "gRPC UNAVAILABLE) instead of waiting ever longer under overload. 0: no limit.")
@click.option("--queue-timeout-us", type=click.IntRange(min=0), default=defaults.QUEUE_TIMEOUT_US, show_default=True,
              help="How long a request may wait in the queue before --timeout-action (0: no limit).")
@click.option("--timeout-action", type=click.Choice(["reject", "delay"]), default="reject", show_default=True,
              help="What happens to a request that waited past its timeout: refused, or run after the others.")
@click.option("--allow-timeout-override", is_flag=True,
              help="Clients may give a request its own queue deadline (the `timeout` request parameter).")
@click.option("--priority-levels", type=click.IntRange(min=0), default=0, show_default=True,
              help="Request priorities 1 (first) .. N; requests without one get N. 0: one queue.")
@click.option("--response-cache", is_flag=True,
              help="Answer identical requests from Triton's response cache (the deployment gets --cache-config).")
@click.option("--opset", type=int, help="ONNX opset (default: the exporter's).")
@click.option("--no-simplify", is_flag=True, help="Skip onnxsim.")
@click.option("--atol", type=float, help="Absolute tolerance for parity (default 1e-4; fp16: 1e-2; int8: measured).")
@click.option("--rtol", type=float, help="Relative tolerance for parity (default 1e-3; fp16: 1e-2).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="Precision of the served model: FP16 conversion or INT8 quantization of the ONNX model (and the "
                   "TensorRT plan's precision with --format tensorrt).")
@click.option("--fp16-io", is_flag=True, help="With --precision fp16: FP16 inputs and outputs too (default FP32).")
@click.option("--quantize", type=click.Choice(["static", "dynamic"]), default="static", show_default=True,
              help="INT8 method: static (QDQ, per-channel weights, calibrated) or dynamic (no calibration; "
                   "transformer-like models).")
@click.option("--calibration-data", type=click.Path(path_type=Path), metavar="NPZ|DIR",
              help="Calibration inputs for INT8: an .npz with one array per input (items along axis 0), or a folder "
                   "of them.")
@click.option("--calibration", "calibration_source", type=click.Choice(["data", "random"]), default="data",
              show_default=True, help="random: calibrate on random inputs (for testing only).")
@click.option("--calibration-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="ONNX Runtime's calibrator for static INT8.")
@click.option("--calibration-items", type=click.IntRange(min=1), default=defaults.CALIBRATION_ITEMS, show_default=True,
              help="At most this many calibration items are used.")
@click.option("--max-relative-error", type=float,
              help="Fail when an output's max error exceeds this share of its range (default fp16 0.01, int8 0.1).")
@click.option("--min-top1-agreement", type=float,
              help="Fail when a classifier-like output's top-1 agrees with PyTorch on fewer items (default fp16 "
                   "0.99, int8 0.9).")
@click.option("--accept-fidelity", is_flag=True, help="Keep a converted model that misses the fidelity thresholds.")
@click.option("--no-speed", is_flag=True, help="Do not time ONNX Runtime before and after conversion.")
@click.option("--ort-accelerator", "ort_accelerators", multiple=True,
              metavar="tensorrt[:fp16|:int8]|cuda|openvino",
              help="Execution provider for Triton's onnxruntime backend (format onnx).")
@click.option("--ort-engine-cache", metavar="DIR",
              help="TensorRT execution provider's engine cache on the server (default /models/NAME/trt_cache).")
@click.option("--trt-image", metavar="IMAGE",
              help="Build the TensorRT plan inside this image (NVIDIA's TensorRT image of your Triton release).")
@click.option("--dynamic-range", "dynamic_ranges", multiple=True, metavar="AXIS:MIN:OPT:MAX",
              help="Optimization profile range of a dynamic axis for TensorRT (batch defaults to 1:MAX:MAX).")
@click.option("--trt-workspace-mb", type=click.IntRange(min=1), default=defaults.TRT_WORKSPACE_MB, show_default=True,
              help="TensorRT builder workspace limit.")
@click.option("--timing-cache", type=click.Path(path_type=Path), help="TensorRT timing cache file (reused across builds).")
@click.option("--builder-optimization-level", type=click.IntRange(0, 5), help="TensorRT builder optimization level.")
@click.option("--repository", type=click.Path(path_type=Path), default=defaults.REPOSITORY, show_default=True)
@click.option("--version", "version", type=int, help="Version to write (default: the next free one).")
@click.option("--force", is_flag=True, help="Replace an existing --version.")
@click.option("--no-deploy", is_flag=True, help="Do not write deploy/ next to the repository.")
@click.option("--deploy-image", metavar="auto|slim|nvidia|IMAGE",
              help="Image for deploy/docker-compose.yml (default auto: the slim CPU image when it can serve every "
                   "model, NVIDIA's Triton image otherwise).")
@click.option("--public", is_flag=True,
              help="Bind the deployment's ports on all interfaces (Triton has no authentication: see deploy/README.md).")
@common_options
def build_command(checkpoint: Path | None, project_file: Path | None, as_json: bool, **_options: Any) -> None:
    """Export CHECKPOINT (or a Hugging Face save_pretrained FOLDER) to a verified, versioned Triton model repository;
    with -f, every model of a tritongen.toml."""
    from tritongen.build import build_model

    params = click.get_current_context().params
    if project_file is not None:
        _build_project(project_file, as_json)
        return
    if checkpoint is None:
        raise click.UsageError("give CHECKPOINT|FOLDER, or -f tritongen.toml")
    options = options_from_params(params, command=shlex.join(["tritongen", *sys.argv[1:]]))
    err = stderr_console()
    result = build_model(options, step=lambda desc: progress(desc), warn=lambda m: err.print(f"[yellow]warning:[/] {m}",
                                                                                              highlight=False))
    if as_json:
        emit_json(result.to_dict())
        return
    print_result(result)
    stdout_console().print(f"Next: tritongen validate {result.repository}", highlight=False)
    if result.pipeline:
        print_client(result.pipeline)


def print_result(result: BuildResult) -> None:
    out = stdout_console()
    spec = result.spec
    out.print(f"[bold green]Built[/] {result.model} v{result.version} in {result.seconds['total']:.1f}s "
              f"({result.exporter} exporter, opset {result.opset}; {result.simplification})", highlight=False)
    out.print("  inputs:  " + ", ".join(t.describe() for t in spec.inputs), highlight=False)
    out.print("  outputs: " + ", ".join(t.describe() for t in spec.outputs), highlight=False)
    out.print(f"  batching: max_batch_size {spec.max_batch_size}" + (" (dynamic batching on)" if spec.batched else ""),
              highlight=False)
    network = [a for a in result.artifacts if a.format not in PIPELINE_PARTS]
    for a in network:
        out.print(f"  [bold]{a.format}[/]: {a.path}  (config {a.config})", highlight=False)
        for o in a.parity.outputs:
            mark = "[green]✓[/]" if o.passed else "[red]✗[/]"
            out.print(f"    {mark} parity {o.name}: max abs err {o.max_abs_err:.2e}, max rel err {o.max_rel_err:.2e}",
                      highlight=False)
    if result.precision:
        from tritongen.precision import precision_summary

        for line in precision_summary(result.precision):
            out.print(f"  {line}", highlight=False)
    out.print(f"  checked on {len(network[0].parity.cases)} input sets "
              f"(atol {network[0].parity.atol:g}, rtol {network[0].parity.rtol:g})", highlight=False)
    if result.pipeline:
        _print_pipeline(result.pipeline)
    if result.deploy_files:
        out.print(f"  deploy files: {result.deploy_files[0].parent}", highlight=False)
    if result.warnings:
        out.print(f"  [yellow]{len(result.warnings)} warning(s)[/] (shown above)", highlight=False)


def _print_pipeline(pipeline: dict) -> None:
    out = stdout_console()
    out.print(f"  [bold]pipeline[/] {pipeline['ensemble']} (ensemble): {pipeline['input']} in -> "
              f"{pipeline['preprocess']} -> {pipeline['model']} -> {pipeline['postprocess']} -> "
              f"{', '.join(pipeline['outputs'])}", highlight=False, markup=True)
    out.print("    takes " + ", ".join(pipeline["inputs"]) + "; answers " + ", ".join(pipeline["answers"]),
              markup=False, highlight=False)
    parity = pipeline["parity"]
    for name, o in parity["outputs"].items():
        mark = "[green]✓[/]" if o["passed"] else "[red]✗[/]"
        detail = "equal" if o["max_abs_err"] == 0 else f"max abs err {o['max_abs_err']:.2e}"
        out.print(f"    {mark} vs transformers + PyTorch {name}: {detail}", highlight=False)
    out.print(f"    checked on {', '.join(parity['cases'])} (atol {parity['atol']:g}, rtol {parity['rtol']:g})",
              markup=False, highlight=False)


def print_client(pipeline: dict) -> None:
    """The ready-to-run client for a pipeline, between two rules so it can be copied."""
    out = stdout_console()
    out.print(f"Client for {pipeline['ensemble']} (tritonclient, HTTP and gRPC; save as client.py, run "
              f"`python client.py{' IMAGE...' if pipeline['kind'] == 'image' else ''}`):", markup=False,
              highlight=False)
    out.print("-" * 80, markup=False, highlight=False)
    out.print(pipeline["client_example"].rstrip(), markup=False, highlight=False)
    out.print("-" * 80, markup=False, highlight=False)


def _build_project(path: Path, as_json: bool) -> None:
    """`build -f tritongen.toml`: each entry's options parsed as this command's, then built into one repository."""
    from tritongen.errors import CheckFailed, TritongenError
    from tritongen.project import build_project, read_project

    ctx = click.get_current_context()
    given = [name for name, value in ctx.params.items() if name not in ("project_file", "as_json", "debug")
             and ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
    if given:
        flag = "--" + given[0].replace("_", "-") if given[0] != "checkpoint" else "CHECKPOINT"
        raise TritongenError(f"{flag} cannot be combined with -f", f"put it in {path.name} (top level, or in a "
                             "[[model]] table)")
    project = read_project(path)
    options = []
    for entry in project.entries:
        try:
            sub = build_command.make_context("build", list(entry.arguments), parent=ctx.parent)
        except click.ClickException as exc:
            raise TritongenError(f"{path}, {entry.label}: {exc.format_message()}",
                                 "use the long names of `tritongen build --help` options") from exc
        options.append(options_from_params(sub.params, command=f"tritongen build -f {path} ({entry.label})"))
    err = stderr_console()
    result = build_project(project, options, step=lambda desc: progress(desc),
                           warn=lambda m: err.print(f"[yellow]warning:[/] {m}", highlight=False),
                           on_model=lambda entry: err.print(f"[bold]{entry.label}[/]", highlight=False))
    if as_json:
        emit_json(result.to_dict())
    else:
        for _entry, built in result.built:
            print_result(built)
        out = stdout_console()
        for entry, exc in result.failed:
            out.print(f"[red]✗[/] {entry.label} failed: ", end="", highlight=False)
            out.print(exc.one_line(), markup=False, highlight=False)
        if result.deploy_files:
            out.print(f"deploy files: {result.deploy_files[0].parent}", highlight=False)
        out.print(f"Built {len(result.built)} of {len(project.entries)} model(s) into {project.repository}. "
                  f"Next: tritongen validate {project.repository}", highlight=False)
    if result.failed:
        first = result.failed[0][1]
        sys.exit(1 if isinstance(first, CheckFailed) else 2)


def options_from_params(params: dict, command: str | None) -> BuildOptions:
    """BuildOptions from the parsed options of `build` (the command line, or a project file's entry)."""
    from tritongen.build import BuildOptions
    from tritongen.config import QueuePolicy
    from tritongen.formats.tensorrt.builder import TensorRTOptions
    from tritongen.pipeline import PipelineOptions, parse_length_buckets
    from tritongen.precision import PrecisionOptions

    p = dict(params)
    precision_options = PrecisionOptions(
        precision=p["precision"], fp16_io=p["fp16_io"], quantize=p["quantize"], calibration_data=p["calibration_data"],
        calibration=p["calibration_source"], calibration_method=p["calibration_method"],
        max_calibration_items=p["calibration_items"], max_relative_error=p["max_relative_error"],
        min_top1_agreement=p["min_top1_agreement"], accept_fidelity=p["accept_fidelity"],
        measure_speed=not p["no_speed"])
    tensorrt_options = TensorRTOptions(image=p["trt_image"], workspace_mb=p["trt_workspace_mb"],
                                       timing_cache=p["timing_cache"], dynamic_ranges=p["dynamic_ranges"],
                                       builder_optimization_level=p["builder_optimization_level"])
    pipeline_options = PipelineOptions(enabled=p["pipeline"], top_k=p["top_k"] or 0, normalize=p["normalize"],
                                       length_buckets=parse_length_buckets(p["length_buckets"]))
    return BuildOptions(
        checkpoint=p["checkpoint"], name=p["name"], inputs=p["inputs"], outputs=p["outputs"],
        axis_lengths=p["axis_lengths"], model_class=p["model_class"], model_kwargs=p["model_kwargs"],
        pythonpath=p["pythonpath"], trust_checkpoint=p["trust_checkpoint"], task=p["task"], imports=p["imports"],
        example_inputs=p["example_inputs"], max_batch_size=p["max_batch_size"], instances=p["instances"],
        kind=p["kind"], max_queue_delay_us=p["max_queue_delay_us"], preferred_batch_sizes=p["preferred"],
        queue=QueuePolicy(p["max_queue_size"], p["queue_timeout_us"], p["timeout_action"],
                          p["allow_timeout_override"]),
        priority_levels=p["priority_levels"], response_cache=p["response_cache"], formats=p["formats"],
        opset=p["opset"], simplify=not p["no_simplify"], atol=p["atol"], rtol=p["rtol"],
        precision=precision_options, ort_accelerators=p["ort_accelerators"], ort_engine_cache=p["ort_engine_cache"],
        tensorrt=tensorrt_options, repository=p["repository"], version=p["version"], force=p["force"],
        deploy=not p["no_deploy"], deploy_image=p["deploy_image"], public=p["public"], pipeline=pipeline_options,
        command=command)
