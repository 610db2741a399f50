"""What a loaded Hugging Face model takes and serves for its task, from the model and its config (no per-architecture
tables): text models `input_ids`, `attention_mask` and `token_type_ids` where the model uses them, on a `sequence`
axis; vision models `pixel_values` of the configured size; audio models `input_values` (raw samples) or Whisper's
`input_features`. And what the manifest records for the pipelines built on top: task, labels, maximum length, the
preprocessing files.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

from tritongen.checkpoint import SourceDefaults, sha256_of
from tritongen.errors import TritongenError
from tritongen.introspect.inputs import inputs_of_module
from tritongen.sources.hf import HfFolder, HfModel
from tritongen.spec import TensorSpec, dtype_from_name

SEQUENCE, SAMPLES = "sequence", "samples"
CLASSIFICATION = ("text-classification", "token-classification", "image-classification", "audio-classification")
_HUGE = 1_000_000  # tokenizer_config.json says 1e30 when it sets no limit


def defaults_of(hf: HfModel, folder: HfFolder) -> SourceDefaults:
    """The inputs, served outputs, axis lengths and padding side of the model for its task."""
    module, config = hf.module, hf.config
    takes = inputs_of_module(module).names
    main = getattr(module, "main_input_name", "input_ids")
    int64, fp32 = dtype_from_name("int64"), dtype_from_name("fp32")
    padding = "left" if hf.task.name == "text-generation" else "right"
    if main == "input_ids":
        inputs = [TensorSpec("input_ids", int64, (SEQUENCE,))]
        if "attention_mask" in takes:
            inputs.append(TensorSpec("attention_mask", int64, (SEQUENCE,), role="mask"))
        if "token_type_ids" in takes and (getattr(config, "type_vocab_size", 0) or 0) > 1:
            inputs.append(TensorSpec("token_type_ids", int64, (SEQUENCE,)))
        longest = max_length(config, folder) or 512
        lengths = {SEQUENCE: (8, 16) if longest >= 16 else (max(1, longest // 2), longest)}
        return SourceDefaults(tuple(inputs), hf.task.outputs, lengths, padding)
    if main == "pixel_values":
        channels, height, width = image_shape(config, folder)
        return SourceDefaults((TensorSpec("pixel_values", fp32, (channels, height, width)),), hf.task.outputs, {},
                              padding)
    if main == "input_values":
        rate = int(_preprocessor(folder).get("sampling_rate") or 16000)
        inputs = [TensorSpec("input_values", fp32, (SAMPLES,))]
        if _preprocessor(folder).get("return_attention_mask") and "attention_mask" in takes:
            inputs.append(TensorSpec("attention_mask", int64, (SAMPLES,), role="mask"))
        # 0.1 s and 0.2 s of audio: long enough for the feature encoder's convolutions, short enough to check fast.
        return SourceDefaults(tuple(inputs), hf.task.outputs, {SAMPLES: (rate // 10, rate // 5)}, padding)
    if main == "input_features" and getattr(config, "max_source_positions", None) and getattr(config, "num_mel_bins",
                                                                                               None):
        # Whisper's encoder takes exactly 2 × max_source_positions frames (30 s of audio), padded by its processor.
        frames = 2 * int(config.max_source_positions)
        return SourceDefaults((TensorSpec("input_features", fp32, (int(config.num_mel_bins), frames)),),
                              hf.task.outputs, {}, padding)
    raise TritongenError(f"tritongen does not know the input layout of a {type(module).__name__} (its main input is "
                         f"'{main}')", f"pass --input NAME:SHAPE:DTYPE for each input (forward() takes "
                         f"{', '.join(takes[:6])})")


def max_length(config: Any, folder: HfFolder) -> int | None:
    """The longest sequence the model takes: the tokenizer's limit, else the position table's."""
    tokenizer = _json(folder.path / "tokenizer_config.json")
    limit = tokenizer.get("model_max_length")
    if isinstance(limit, int | float) and 0 < limit < _HUGE:
        return int(limit)
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            if "roberta" in str(getattr(config, "model_type", "")):  # positions start after the padding index
                value -= int(getattr(config, "pad_token_id", 1) or 1) + 1
            return value
    return None


def image_shape(config: Any, folder: HfFolder) -> tuple[int, int, int]:
    """(channels, height, width) the model takes: its config, else the folder's image processor."""
    vision = getattr(config, "vision_config", None) or config
    channels = int(getattr(vision, "num_channels", 3) or 3)
    size = getattr(vision, "image_size", None)
    if size is None:
        processor = _preprocessor(folder)
        size = processor.get("crop_size") or processor.get("size")
        if isinstance(size, dict):
            size = [size.get("height") or size.get("shortest_edge"), size.get("width") or size.get("shortest_edge")]
    if isinstance(size, int):
        return channels, size, size
    if isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return channels, int(size[0]), int(size[1])
    raise TritongenError(f"the folder's config gives no image size for {getattr(config, 'model_type', 'the model')}",
                         "pass --input pixel_values:3xHxW:fp32 with the model's image size")


def source_record(hf: HfModel, folder: HfFolder) -> dict[str, Any]:
    """What the manifest records about the folder: how it was loaded, and what pipelines need from it."""
    config = hf.config
    files = {p.name: sha256_of(p) for p in folder.files}
    record: dict[str, Any] = {
        "kind": "huggingface",
        "task": hf.task.name,
        "architecture": folder.architecture,
        "model_class": type(hf.module).__name__,
        "model_type": getattr(config, "model_type", None),
        "transformers": _version("transformers"),
        "tokenizers": _version("tokenizers"),
        "weights_format": folder.weights_format,
        "tokenizer": "tokenizer.json" if "tokenizer.json" in files else None,
        "image_processor": "preprocessor_config.json" if "preprocessor_config.json" in files else None,
        "files": files,  # kept in tritongen/source/ of every version
        "max_length": max_length(config, folder),
        "pad_token_id": getattr(config, "pad_token_id", None),
        "padding_side": "left" if hf.task.name == "text-generation" else "right",
    }
    if hf.task.name in CLASSIFICATION:
        record["id2label"] = {str(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    return record


def _preprocessor(folder: HfFolder) -> dict[str, Any]:
    return _json(folder.path / "preprocessor_config.json")


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
