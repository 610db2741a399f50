"""A pipeline's design: its models, their interfaces, what each step does (step.json) and how the ensemble wires them.

    "text" | "image" (TYPE_STRING) ──<name>_preprocess──▶ the network's inputs ──<name>_model──▶ its outputs
        ──<name>_postprocess──▶ label, score, logits, top_k_* | embedding | logits (last token)

The ensemble is served under the user's model name; its steps are models beside it. Settings come from the folder
as transformers resolves them (the tokenizer it runs, the image processor's attributes with its class defaults), so
the steps do what the folder's own pre-processing does; `check_pipeline_interface` refuses a model whose inputs or
outputs no step here produces or reads, before the export.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError
from tritongen.pipeline.options import PIPELINE_TASKS, PipelineOptions
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name

# Network inputs the text step produces, and what each holds.
TEXT_INPUTS = {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "type_ids"}
IMAGE_INPUT = "pixel_values"
RAW_INPUTS = {"text": "text", "image": "image"}  # kind -> the ensemble's input
# Where the network's outputs travel inside the ensemble (an ensemble tensor name must not be one of its outputs).
NETWORK_TENSOR = "network_{}"
STEP_FILE = "step.json"
TOKENIZER_FILE = "tokenizer.json"
BYTES = dtype_from_name("bytes")
FP32 = dtype_from_name("fp32")


@dataclass(frozen=True)
class StepDesign:
    """One python-backend step: its model name, interface, code (a module of tritongen/pipeline/steps/) and settings."""

    role: str  # preprocess | postprocess
    model: str
    spec: ModelSpec
    code: str  # text | image | post
    params: dict[str, Any]  # written as step.json beside model.py
    files: dict[str, str] = field(default_factory=dict)  # more files beside model.py (the tokenizer), by name

    @property
    def step_class(self) -> str:
        return {"text": "TextPreprocess", "image": "ImagePreprocess", "post": "Postprocess"}[self.code]


@dataclass(frozen=True)
class EnsembleStep:
    """One step of `ensemble_scheduling`: the model and its tensors mapped to the ensemble's (step name -> ensemble)."""

    model: str
    input_map: tuple[tuple[str, str], ...]
    output_map: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PipelineDesign:
    name: str  # the ensemble, under the user's model name
    kind: str  # text | image
    task: str  # the Hugging Face task
    purpose: str  # classification | embedding | last-token
    network: str  # the network's model name
    network_spec: ModelSpec  # as served (dtypes after --precision)
    preprocess: StepDesign
    postprocess: StepDesign
    spec: ModelSpec  # the ensemble's interface
    folder: Path  # the Hugging Face folder (the reference loads its tokenizer or image processor)
    trust: bool  # whether transformers may run the folder's own code (--trust-checkpoint)

    @property
    def raw_input(self) -> str:
        return RAW_INPUTS[self.kind]

    @property
    def models(self) -> tuple[str, ...]:
        return (self.preprocess.model, self.network, self.postprocess.model, self.name)

    @property
    def steps(self) -> tuple[EnsembleStep, ...]:
        pre, post, net = self.preprocess, self.postprocess, self.network_spec
        network_inputs = tuple((t.name, t.name) for t in net.inputs)
        read = [n for n in post.params["inputs"] if n in {t.name for t in net.outputs}]
        return (
            EnsembleStep(pre.model, ((self.raw_input, self.raw_input),), tuple((t.name, t.name) for t in pre.spec.outputs)),
            EnsembleStep(self.network, network_inputs, tuple((n, NETWORK_TENSOR.format(n)) for n in read)),
            EnsembleStep(post.model, tuple((n, NETWORK_TENSOR.format(n) if n in read else n)
                                           for n in post.params["inputs"]),
                         tuple((t.name, t.name) for t in post.spec.outputs)),
        )

    def to_dict(self) -> dict[str, Any]:
        """What each pipeline model's manifest records under `pipeline`."""
        return {"ensemble": self.name, "kind": self.kind, "task": self.task, "purpose": self.purpose,
                "input": self.raw_input, "preprocess": self.preprocess.model, "model": self.network,
                "postprocess": self.postprocess.model, "outputs": [t.name for t in self.spec.outputs]}


def check_pipeline_interface(spec: ModelSpec, source: dict[str, Any] | None) -> str:
    """The pipeline's kind (text | image) for a network with this interface; refused (before the export) when no step
    here produces its inputs or reads its outputs."""
    if not source or source.get("kind") != "huggingface":
        raise TritongenError("a pipeline needs what a Hugging Face folder records (task, tokenizer or processor)",
                             "pass the save_pretrained folder")
    names = [t.name for t in spec.inputs]
    if IMAGE_INPUT in names:
        kind, unknown = "image", [n for n in names if n != IMAGE_INPUT]
    else:
        kind, unknown = "text", [n for n in names if n not in TEXT_INPUTS]
        if "input_ids" not in names:
            unknown = unknown or names
        elif not unknown and "attention_mask" not in names:
            raise TritongenError("a text pipeline pads the strings of a request to one length, and the network takes no "
                                 "attention_mask to tell padding from text (its answers would change with the padding)",
                                 "leave out --input so the folder's own inputs (with attention_mask) are used")
    if unknown:
        raise TritongenError(f"a pipeline cannot feed the network's input '{unknown[0]}' (its pre-processing makes "
                             f"{', '.join(TEXT_INPUTS)} from text, or {IMAGE_INPUT} from an image)",
                             "build without --pipeline, or leave out --input so the folder's own inputs are used")
    purpose = PIPELINE_TASKS[source["task"]]
    wanted = "logits" if purpose in ("classification", "last-token") else "last_hidden_state"
    if wanted not in [t.name for t in spec.outputs]:
        raise TritongenError(f"the {source['task']} pipeline reads the network's '{wanted}', which is not served "
                             f"(outputs: {', '.join(t.name for t in spec.outputs)})",
                             f"leave out --output, or add --output {wanted}")
    return kind


def design_pipeline(name: str, network: str, options: PipelineOptions, spec: ModelSpec, source: dict[str, Any],
                    folder: Path, trust: bool) -> PipelineDesign:
    """The pipeline for the network `network` (served with `spec`) built from the Hugging Face `folder`."""
    kind = check_pipeline_interface(spec, source)
    purpose = PIPELINE_TASKS[source["task"]]
    pre = _text_step(name, spec, source, folder, trust, options) if kind == "text" else _image_step(name, spec, folder,
                                                                                                    trust)
    post = _post_step(name, spec, source, purpose, options)
    raw = TensorSpec(RAW_INPUTS[kind], BYTES, (1,))
    ensemble = ModelSpec(inputs=(raw,), outputs=post.spec.outputs, max_batch_size=spec.max_batch_size)
    return PipelineDesign(name, kind, source["task"], purpose, network, spec, pre, post, ensemble, Path(folder), trust)


BUCKET_STEP = 16


def default_buckets(max_length: int) -> tuple[int, ...]:
    """Every 16 tokens up to the maximum length (16, 32, 48, ..., max_length).

    A coarser ladder batches more but pads more, and on a CPU the padding costs about what the batching saves:
    measured with benchmarks/pipeline_overhead.py (2 CPUs at load average 4, a BERT-like network of 4 layers, hidden
    128, single-string requests of 7 to 90 tokens, concurrency 16), powers of two ran 1.38 requests per execution of
    the network at 0.91x the requests/s of no buckets (1.01 per execution), steps of 16 ran 1.20 at 0.98x. On a GPU,
    where a batch costs little more than one item, batching gains more (not measured here).
    """
    return (*range(BUCKET_STEP, max_length, BUCKET_STEP), max_length)


def _text_step(name: str, spec: ModelSpec, source: dict[str, Any], folder: Path, trust: bool,
               options: PipelineOptions) -> StepDesign:
    from tritongen.sources.hf import quiet_transformers

    with quiet_transformers() as transformers:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                                   trust_remote_code=trust)
        except Exception as exc:
            raise TritongenError(f"transformers cannot load the tokenizer of '{folder}': {type(exc).__name__}: "
                                 f"{str(exc)[:200]}", "check the folder's tokenizer files") from exc
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TritongenError(f"the tokenizer of '{folder}' ({type(tokenizer).__name__}) has no `tokenizers` version "
                             "(no tokenizer.json, and transformers cannot convert it)",
                             "save a fast tokenizer into the folder (tokenizer.json)")
    max_length = int(source.get("max_length") or 0) or 512
    buckets = default_buckets(max_length) if options.length_buckets is None else tuple(options.length_buckets)
    if buckets and buckets[-1] > max_length:
        raise TritongenError(f"--length-buckets {','.join(map(str, buckets))} goes past the model's maximum length "
                             f"({max_length} tokens)", f"give buckets of at most {max_length}")
    # Padded positions are masked out, so any token will do where the tokenizer has no pad token (GPT-2).
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, source.get("pad_token_id"))
                   if i is not None), 0)
    inputs = [t for t in spec.inputs if t.name in TEXT_INPUTS]
    params = {
        "input": "text", "tokenizer": TOKENIZER_FILE, "max_length": max_length, "buckets": list(buckets),
        "pad_token_id": int(pad_id), "pad_token_type_id": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        # The pipeline pads on the right, whatever side the tokenizer pads: with a mask, every real position of an
        # encoder or a causal model then gets the same output at any padded length (left padding would shift the
        # positions of a decoder that does not take position ids from the mask).
        "padding_side": "right", "truncation_side": getattr(tokenizer, "truncation_side", "right") or "right",
        "outputs": {t.name: TEXT_INPUTS[t.name] for t in inputs},
        "dtypes": {t.name: t.dtype.numpy for t in inputs},
        "tokenizer_class": type(tokenizer).__name__,
    }
    step_spec = ModelSpec(inputs=(TensorSpec("text", BYTES, (1,)),),
                          outputs=tuple(replace(t, role=None, value_range=None) for t in inputs),
                          max_batch_size=spec.max_batch_size)
    return StepDesign("preprocess", f"{name}_preprocess", step_spec, "text", params, {TOKENIZER_FILE: backend.to_str()})


def _image_step(name: str, spec: ModelSpec, folder: Path, trust: bool) -> StepDesign:
    from tritongen.sources.hf import quiet_transformers

    with quiet_transformers() as transformers:
        from transformers.image_processing_backends import PilBackend

        try:
            processor = transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True,
                                                                        trust_remote_code=trust, backend="pil")
        except Exception as exc:
            raise TritongenError(f"transformers cannot load the image processor of '{folder}': "
                                 f"{type(exc).__name__}: {str(exc)[:200]}",
                                 "check the folder's preprocessor_config.json") from exc
    cls = type(processor)
    own = [m for m in ("_preprocess", "resize", "center_crop", "rescale", "normalize", "process_image")
           if getattr(cls, m, None) is not getattr(PilBackend, m, None)]
    if not isinstance(processor, PilBackend) or own:
        raise TritongenError(f"the folder's image processor ({cls.__name__}) does its own processing "
                             f"({', '.join(own) or 'not the PIL backend'}), which tritongen's image step does not "
                             "reproduce", "build without --pipeline and pre-process on the client")
    if getattr(processor, "do_pad", None):
        raise TritongenError(f"the folder's image processor ({cls.__name__}) pads images, which tritongen's image step "
                             "does not do", "build without --pipeline and pre-process on the client")
    tensor = spec.input(IMAGE_INPUT)
    channels, height, width = tensor.shape
    size = {k: v for k, v in dict(processor.size or {}).items() if v is not None}
    crop = {k: v for k, v in dict(processor.crop_size or {}).items() if v is not None}
    out = (crop.get("height"), crop.get("width")) if processor.do_center_crop else (size.get("height"), size.get("width"))
    if not processor.do_resize or set(size) - {"height", "width", "shortest_edge"} or out != (height, width):
        raise TritongenError(f"the folder's image processor ({cls.__name__}) does not give every image the network's "
                             f"size {height}x{width} (resize {dict(size)}, center crop "
                             f"{dict(crop) if processor.do_center_crop else 'off'})",
                             "build without --pipeline, or fix preprocessor_config.json")
    if channels not in (1, 3):
        raise TritongenError(f"the network takes {channels}-channel images; the image step makes RGB (3) or grey (1)",
                             "build without --pipeline and pre-process on the client")
    mean = processor.image_mean if processor.do_normalize else None
    std = processor.image_std if processor.do_normalize else None
    params = {
        "input": "image", "output": IMAGE_INPUT, "dtype": tensor.dtype.numpy, "channels": channels,
        "do_resize": True, "size": size, "resample": int(processor.resample if processor.resample is not None else 2),
        "do_center_crop": bool(processor.do_center_crop), "crop_size": crop if processor.do_center_crop else {},
        "do_rescale": bool(processor.do_rescale), "rescale_factor": float(processor.rescale_factor or 1 / 255),
        "do_normalize": bool(processor.do_normalize),
        "image_mean": [float(m) for m in _per_channel(mean, channels)] if mean is not None else None,
        "image_std": [float(s) for s in _per_channel(std, channels)] if std is not None else None,
        "image_processor_class": cls.__name__,
    }
    step_spec = ModelSpec(inputs=(TensorSpec("image", BYTES, (1,)),), outputs=(replace(tensor, role=None),),
                          max_batch_size=spec.max_batch_size)
    return StepDesign("preprocess", f"{name}_preprocess", step_spec, "image", params)


def _per_channel(values: Any, channels: int) -> list[float]:
    values = list(values) if isinstance(values, list | tuple) else [values] * channels
    if len(values) != channels:
        raise TritongenError(f"the image processor normalizes {len(values)} channels but the network takes {channels}",
                             "fix image_mean / image_std in preprocessor_config.json")
    return values


def _post_step(name: str, spec: ModelSpec, source: dict[str, Any], purpose: str,
               options: PipelineOptions) -> StepDesign:
    mask = "attention_mask" if "attention_mask" in [t.name for t in spec.inputs] else None
    if purpose == "classification":
        network_output = spec.outputs[[t.name for t in spec.outputs].index("logits")]
        labels = _labels(source.get("id2label") or {}, network_output)
        classes = len(labels)
        outputs = [TensorSpec("label", BYTES, (1,)), TensorSpec("score", FP32, (1,)),
                   TensorSpec("logits", FP32, (classes,))]
        if options.top_k:
            outputs += [TensorSpec("top_k_labels", BYTES, (options.top_k,)),
                        TensorSpec("top_k_scores", FP32, (options.top_k,))]
        params: dict[str, Any] = {"task": purpose, "source": "logits", "mask": None, "labels": labels,
                                  "top_k": options.top_k, "inputs": ["logits"]}
        inputs = [network_output]
    else:
        source_name = "last_hidden_state" if purpose == "embedding" else "logits"
        network_output = spec.outputs[[t.name for t in spec.outputs].index(source_name)]
        width = network_output.shape[-1]
        if not isinstance(width, int):
            raise TritongenError(f"the network's '{source_name}' has a dynamic last axis ('{width}')",
                                 "a pipeline needs a fixed hidden or vocabulary size")
        answer = "embedding" if purpose == "embedding" else "logits"
        outputs = [TensorSpec(answer, FP32, (width,))]
        params = {"task": purpose, "source": source_name, "mask": mask, "normalize": options.normalize,
                  "inputs": [source_name] + ([mask] if mask else [])}
        inputs = [network_output] + ([replace(spec.input(mask), role=None, value_range=None)] if mask else [])
    step_spec = ModelSpec(inputs=tuple(inputs), outputs=tuple(outputs), max_batch_size=spec.max_batch_size)
    return StepDesign("postprocess", f"{name}_postprocess", step_spec, "post", params)


def _labels(id2label: dict[str, Any], logits: TensorSpec) -> list[str]:
    classes = logits.shape[-1] if logits.shape else None
    if not isinstance(classes, int):
        raise TritongenError("the network's 'logits' has no fixed number of classes", "a classifier needs one")
    labels = [str(id2label.get(str(i), f"LABEL_{i}")) for i in range(classes)]
    return labels
