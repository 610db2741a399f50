"""config.pbtxt of a pipeline's models: the steps (templates/config_step.pbtxt.j2) and the ensemble
(templates/config_ensemble.pbtxt.j2), rendered through `tritongen.render` and parsed with Triton's schema like every
config; and the checks that a parsed config says what the design says (names, dtypes, dims, the ensemble's wiring).
"""

from __future__ import annotations

from typing import Any

from tritongen import __version__
from tritongen.config import parse_config, raise_config_mismatch
from tritongen.pipeline.design import PipelineDesign, StepDesign
from tritongen.spec import ModelSpec, TensorSpec

STEP_INSTANCES = 1  # a step is light next to the network; more instances: edit the config (or tune it)


def _tensor(t: TensorSpec) -> dict[str, Any]:
    named = [d for d in t.shape if isinstance(d, str)]
    return {"name": t.name, "data_type": t.dtype.triton, "dims": t.triton_dims or [1],
            "comment": "dynamic: " + ", ".join(dict.fromkeys(named)) if named else ""}


def step_config_text(design: PipelineDesign, step: StepDesign, max_queue_delay_us: int = 0) -> str:
    """config.pbtxt of a pre- or post-processing step, checked against Triton's schema. Its batcher waits for no one
    by default: each request is processed on its own, so waiting would only add latency (requests that queue while
    the step is busy still arrive together)."""
    from tritongen.render import render

    text = render("config_step.pbtxt.j2", {
        "tritongen_version": __version__, "role": step.role, "ensemble": design.name, "name": step.model,
        "max_batch_size": step.spec.max_batch_size, "inputs": [_tensor(t) for t in step.spec.inputs],
        "outputs": [_tensor(t) for t in step.spec.outputs], "instance_count": STEP_INSTANCES,
        "max_queue_delay_us": max_queue_delay_us})
    parse_config(text)
    return text


def ensemble_config_text(design: PipelineDesign) -> str:
    """config.pbtxt of the ensemble, checked against Triton's schema."""
    from tritongen.render import render

    summary = f"{design.task} from {design.kind} ({design.preprocess.model} -> {design.network} -> " \
              f"{design.postprocess.model})"
    text = render("config_ensemble.pbtxt.j2", {
        "tritongen_version": __version__, "name": design.name, "summary": summary, "kind": design.kind,
        "max_batch_size": design.spec.max_batch_size, "inputs": [_tensor(t) for t in design.spec.inputs],
        "outputs": [_tensor(t) for t in design.spec.outputs], "steps": design.steps})
    parse_config(text)
    return text


def interface_problems(proto: Any, spec: ModelSpec) -> list[str]:
    """How a parsed config's inputs and outputs differ from `spec` (names, order, dtypes, dims, batching)."""
    from tritonclient.grpc import model_config_pb2

    problems = []
    if proto.max_batch_size != spec.max_batch_size:
        problems.append(f"max_batch_size is {proto.max_batch_size}, the design says {spec.max_batch_size}")
    for kind, entries, tensors in (("input", proto.input, spec.inputs), ("output", proto.output, spec.outputs)):
        if [e.name for e in entries] != [t.name for t in tensors]:
            problems.append(f"{kind}s are {[e.name for e in entries]}, the design says {[t.name for t in tensors]}")
            continue
        for entry, tensor in zip(entries, tensors, strict=True):
            dtype = model_config_pb2.DataType.Name(entry.data_type)
            if dtype != tensor.dtype.triton:
                problems.append(f"{kind} '{entry.name}' is {dtype}, the design says {tensor.dtype.triton}")
            if list(entry.dims) != (tensor.triton_dims or [1]):
                problems.append(f"{kind} '{entry.name}' has dims {list(entry.dims)}, the design says "
                                f"{tensor.triton_dims or [1]}")
    return problems


def check_step_config(proto: Any, step: StepDesign) -> None:
    problems = interface_problems(proto, step.spec)
    if proto.backend != "python":
        problems.append(f"backend is '{proto.backend}', not 'python'")
    raise_config_mismatch(problems, f"the {step.role} step's design")


def check_ensemble_config(proto: Any, design: PipelineDesign) -> None:
    """The ensemble's interface, and its wiring: each step maps only tensors its model has, reads only tensors an
    earlier step (or the client) made, and every output of the ensemble is made by a step."""
    problems = interface_problems(proto, design.spec)
    if proto.platform != "ensemble":
        problems.append(f"platform is '{proto.platform}', not 'ensemble'")
    interfaces = {design.preprocess.model: design.preprocess.spec, design.network: design.network_spec,
                  design.postprocess.model: design.postprocess.spec}
    available = {t.name for t in design.spec.inputs}
    for step in proto.ensemble_scheduling.step:
        spec = interfaces.get(step.model_name)
        if spec is None:
            problems.append(f"step '{step.model_name}' is not a model of this pipeline")
            continue
        takes, gives = {t.name for t in spec.inputs}, {t.name for t in spec.outputs}
        for key, value in step.input_map.items():
            if key not in takes:
                problems.append(f"step '{step.model_name}' maps input '{key}', which it does not take")
            if value not in available:
                problems.append(f"step '{step.model_name}' reads '{value}' before any step makes it")
        missing = takes - set(step.input_map)
        if missing:
            problems.append(f"step '{step.model_name}' gets no '{sorted(missing)[0]}'")
        for key, value in step.output_map.items():
            if key not in gives:
                problems.append(f"step '{step.model_name}' maps output '{key}', which it does not give")
            available.add(value)
    for t in design.spec.outputs:
        if t.name not in available:
            problems.append(f"no step makes the ensemble's output '{t.name}'")
    raise_config_mismatch(problems, "the pipeline's design")
