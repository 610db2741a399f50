"""What `build --pipeline` takes, and the checks that need only the options and the folder (before loading)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError

# The Hugging Face tasks a pipeline serves, and what its post-processing does with the network's output.
PIPELINE_TASKS = {"text-classification": "classification", "image-classification": "classification",
                  "feature-extraction": "embedding", "text-generation": "last-token"}
PIPELINE_FORMATS = ("onnx", "python")  # the network's formats a pipeline wires (TensorRT plans are not run here)


@dataclass(frozen=True)
class PipelineOptions:
    """`--pipeline` and its options; None means "the default", resolved once the folder is loaded."""

    enabled: bool = False  # --pipeline: build the ensemble with its pre- and post-processing steps
    top_k: int = 0  # classification: also return the K best labels and their scores
    normalize: bool = False  # feature extraction: L2-normalize the embedding
    # Text: the lengths requests are padded to (None: every 16 tokens up to the maximum length; (): none, each
    # request padded to its longest item).
    length_buckets: tuple[int, ...] | None = None


def parse_length_buckets(text: str | None) -> tuple[int, ...] | None:
    """`--length-buckets 8,16,32` | `none` | None (the default)."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        buckets = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        buckets = ()
    if not buckets or buckets[0] < 1:
        raise TritongenError(f"malformed --length-buckets '{text}'",
                             "give lengths in tokens joined by commas (e.g. --length-buckets 16,32,64), or none")
    return buckets


def check_pipeline_plan(options: PipelineOptions, checkpoint: Path, is_hf_folder: bool, formats: tuple[str, ...],
                        max_batch_size: int, task: str | None) -> None:
    """Refuse, before anything is loaded, a pipeline that cannot be built: not a Hugging Face folder, a task without
    pre- and post-processing here, no tokenizer or image processor, several formats, no batching."""
    if not is_hf_folder:
        raise TritongenError(f"--pipeline builds from a Hugging Face folder (it holds the tokenizer or image "
                             f"processor), and '{checkpoint}' is not one", "pass the save_pretrained folder")
    from tritongen.sources.hf import read_hf_folder, task_of

    folder = read_hf_folder(checkpoint)
    chosen = task_of(folder, task).name
    if chosen not in PIPELINE_TASKS:
        raise TritongenError(f"a pipeline for the task {chosen} is not supported (it has pre- and post-processing "
                             f"for {', '.join(PIPELINE_TASKS)})", "build without --pipeline to serve the network alone")
    names = {p.name for p in folder.files}
    kind = "image" if chosen == "image-classification" or ("preprocessor_config.json" in names
                                                           and "tokenizer.json" not in names
                                                           and "tokenizer_config.json" not in names) else "text"
    if kind == "text" and not names & {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json"}:
        raise TritongenError(f"'{checkpoint}' has no tokenizer (tokenizer.json), which a text pipeline needs",
                             "save the tokenizer into the folder (tokenizer.save_pretrained(folder))")
    if kind == "image" and "preprocessor_config.json" not in names:
        raise TritongenError(f"'{checkpoint}' has no image processor (preprocessor_config.json), which an image "
                             "pipeline needs", "save it into the folder (image_processor.save_pretrained(folder))")
    if len(formats) != 1 or formats[0] not in PIPELINE_FORMATS:
        raise TritongenError(f"a pipeline wires one network of format {' or '.join(PIPELINE_FORMATS)}, not "
                             f"{', '.join(formats)}", "pass one --format onnx or --format python with --pipeline")
    if max_batch_size < 1:
        raise TritongenError("a pipeline takes batches of strings or images, so --max-batch-size must be at least 1",
                             "leave out --max-batch-size 0")
    purpose = PIPELINE_TASKS[chosen]
    if options.top_k and purpose != "classification":
        raise TritongenError(f"--top-k applies to classification pipelines, and this one is {chosen}",
                             "leave out --top-k")
    labels = _label_count(folder.config)
    if options.top_k < 0 or (labels and options.top_k > labels):
        raise TritongenError(f"--top-k {options.top_k} is outside 1..{labels} (the model's number of labels)",
                             f"give --top-k between 1 and {labels}")
    if options.normalize and purpose != "embedding":
        raise TritongenError(f"--normalize applies to feature-extraction pipelines, and this one is {chosen}",
                             "leave out --normalize")
    if options.length_buckets is not None and kind != "text":
        raise TritongenError("--length-buckets applies to text pipelines (it pads token sequences)",
                             "leave out --length-buckets")


def check_without_pipeline(options: PipelineOptions) -> None:
    """The pipeline options given without --pipeline are a mistake, named."""
    for flag, given in (("--top-k", options.top_k), ("--normalize", options.normalize),
                        ("--length-buckets", options.length_buckets is not None)):
        if given:
            raise TritongenError(f"{flag} applies to pipelines", f"add --pipeline, or leave out {flag}")


def _label_count(config: dict[str, Any]) -> int | None:
    labels = config.get("id2label")
    if isinstance(labels, dict) and labels:
        return len(labels)
    count = config.get("num_labels")
    return int(count) if isinstance(count, int) else None
