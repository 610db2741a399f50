"""Hugging Face model folders (`save_pretrained`): what the folder holds, which task, loading it from the folder only.

A folder holds `config.json` and weights: `model.safetensors`, sharded safetensors with `model.safetensors.index.json`,
or `pytorch_model.bin` (read with `weights_only=True`, as every pickle here). It is loaded by `transformers` from the
folder alone: nothing is ever downloaded, and a folder that lacks a file says which. The folder's preprocessing files
(tokenizer, image or audio processor) are recorded and kept with every version, for pipelines to use.
`hf_inputs.py` says what the loaded model takes and returns for its task.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError

CONFIG = "config.json"
SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
PYTORCH_BIN, PYTORCH_BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
# What a pre- or post-processing step needs from the folder: kept with every version the folder is built into.
PREPROCESSING_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                       "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                       "tokenizer.model", "preprocessor_config.json", "processor_config.json",
                       "generation_config.json", "chat_template.jinja")
NO_DOWNLOAD = ("tritongen never downloads from the Hugging Face hub: download the whole model folder first "
               "(e.g. `hf download ORG/NAME --local-dir DIR`) and pass DIR")
INSTALL = "install the Hugging Face extra: pip install 'tritongen[hf]'"


@dataclass(frozen=True)
class Task:
    """A task: the transformers class that loads the model with its head, and the outputs it serves."""

    name: str
    auto_class: str
    outputs: tuple[str, ...]  # ModelOutput keys served, those the model has


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("feature-extraction", "AutoModel", ("last_hidden_state", "pooler_output")),
    Task("text-classification", "AutoModelForSequenceClassification", ("logits",)),
    Task("token-classification", "AutoModelForTokenClassification", ("logits",)),
    Task("fill-mask", "AutoModelForMaskedLM", ("logits",)),
    Task("question-answering", "AutoModelForQuestionAnswering", ("start_logits", "end_logits")),
    Task("text-generation", "AutoModelForCausalLM", ("logits",)),  # the cache is turned off
    Task("image-classification", "AutoModelForImageClassification", ("logits",)),
    Task("audio-classification", "AutoModelForAudioClassification", ("logits",)),
    Task("automatic-speech-recognition", "AutoModelForCTC", ("logits",)),  # CTC heads; no generation loop
)}
# The task a folder was saved for, from the end of its class name (config.architectures).
_ARCHITECTURE_TASKS = (("ForSequenceClassification", "text-classification"),
                       ("ForTokenClassification", "token-classification"), ("ForMaskedLM", "fill-mask"),
                       ("ForQuestionAnswering", "question-answering"), ("ForCausalLM", "text-generation"),
                       ("LMHeadModel", "text-generation"), ("ForImageClassification", "image-classification"),
                       ("ForAudioClassification", "audio-classification"), ("ForCTC", "automatic-speech-recognition"),
                       ("Model", "feature-extraction"), ("Encoder", "feature-extraction"))


@dataclass(frozen=True)
class HfFolder:
    """A `save_pretrained` folder, read without transformers: its config, weight files and preprocessing files."""

    path: Path
    config: dict[str, Any]
    weights: tuple[Path, ...]
    weights_format: str  # "safetensors" or "pytorch_model.bin"
    files: tuple[Path, ...]  # the preprocessing files it holds

    @property
    def architecture(self) -> str | None:
        names = self.config.get("architectures") or []
        return str(names[0]) if names else None


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).is_file()


def read_hf_folder(path: Path) -> HfFolder:
    """The folder's config and files; an incomplete folder (no config, no weights, a missing shard) is an error."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        found = sorted(p.name for p in path.iterdir())[:6] if path.is_dir() else []
        raise TritongenError(f"'{path}' is a folder without {CONFIG}, so not a Hugging Face model folder"
                             + (f" (it holds {', '.join(found)})" if found else " (it is empty)"),
                             "pass a folder written by save_pretrained, or a checkpoint file")
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TritongenError(f"cannot read {path / CONFIG}: {exc}", "re-save the model with save_pretrained") from exc
    if not isinstance(config, dict) or "model_type" not in config:
        raise TritongenError(f"{path / CONFIG} is not a transformers model config (it has no model_type)",
                             "pass a folder written by a transformers model's save_pretrained")
    weights, kind = _weight_files(path)
    files = tuple(path / n for n in PREPROCESSING_FILES if (path / n).is_file())
    return HfFolder(path, config, weights, kind, files)


def _weight_files(path: Path) -> tuple[tuple[Path, ...], str]:
    for index, single, kind in ((SAFETENSORS_INDEX, SAFETENSORS, "safetensors"),
                                (PYTORCH_BIN_INDEX, PYTORCH_BIN, "pytorch_model.bin")):
        if (path / single).is_file():
            return (path / single,), kind
        if (path / index).is_file():
            try:
                weight_map = json.loads((path / index).read_text())["weight_map"]
                shards = sorted(set(weight_map.values()))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise TritongenError(f"cannot read the shard index {path / index}: {exc}",
                                     "re-save the model with save_pretrained") from exc
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise TritongenError(f"'{path}' is incomplete: {len(missing)} of the {len(shards)} weight shards that "
                                     f"{index} lists are missing ({', '.join(missing[:3])})", NO_DOWNLOAD)
            return tuple(path / s for s in shards), kind
    extra = sorted(p.name for p in path.glob("*.safetensors")) + sorted(p.name for p in path.glob("*.bin"))
    raise TritongenError(
        f"'{path}' has {CONFIG} but no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} with its shards, or {PYTORCH_BIN})"
        + (f"; it holds {', '.join(extra[:3])}, which save_pretrained does not name so" if extra else ""),
        NO_DOWNLOAD if not extra else "rename the weights file to model.safetensors, or pass the file itself with "
        "--model-class")


def check_weight_archives(folder: HfFolder) -> None:
    """`pytorch_model.bin` files are zip archives: refuse a zip bomb before torch reads one."""
    if folder.weights_format != "pytorch_model.bin":
        return
    from tritongen.sources.archive import open_archive

    for path in folder.weights:
        with open_archive(path):
            pass


def folder_digest(folder: HfFolder) -> str:
    """One sha256 for the model: over the config and every weight file, by name."""
    from tritongen.checkpoint import sha256_of

    h = hashlib.sha256()
    for path in (folder.path / CONFIG, *folder.weights):
        h.update(f"{path.name}\0{sha256_of(path)}\n".encode())
    return h.hexdigest()


def task_of(folder: HfFolder, requested: str | None) -> Task:
    """The task to build for: `--task`, else the one the folder's architecture was saved for."""
    if requested is not None:
        if requested not in TASKS:
            raise TritongenError(f"unknown --task '{requested}'", f"use one of {', '.join(TASKS)}")
        return TASKS[requested]
    arch = folder.architecture
    if arch is None:
        return TASKS["feature-extraction"]
    if arch.endswith(("ForConditionalGeneration", "ForSeq2SeqLM", "ForSpeechSeq2Seq")):
        raise TritongenError(f"'{folder.path}' is a {arch}, a sequence-to-sequence model that generates text in a "
                             "loop, which tritongen does not export", "pass --task feature-extraction to serve its "
                             "encoder (last_hidden_state)")
    for suffix, task in _ARCHITECTURE_TASKS:
        if arch.endswith(suffix):
            return TASKS[task]
    raise TritongenError(f"tritongen does not know the task of a {arch}", f"pass --task ({', '.join(TASKS)})")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[Any]:
    """transformers imported, its log lines and progress bars off while the block runs (restored after)."""
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise TritongenError("building a Hugging Face model folder needs transformers", INSTALL) from exc
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield transformers
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@dataclass(frozen=True)
class HfModel:
    """A folder loaded for a task: the module to export, what was loaded, and notes for the user."""

    module: Any
    config: Any  # the transformers config
    task: Task
    how: str
    notes: tuple[str, ...]


def load_hf_model(folder: HfFolder, task: Task, trust: bool) -> HfModel:
    """The folder's model with the task's head, in eval mode, FP32, on the CPU, its cache off; never a download."""
    import torch

    if folder.config.get("auto_map") and not trust:
        raise TritongenError(f"'{folder.path}' names its own model code in {CONFIG} (auto_map), and loading it runs "
                             "that code", "if you trust this folder pass --trust-checkpoint")
    check_weight_archives(folder)
    notes: list[str] = []
    with quiet_transformers() as transformers:
        try:
            config = transformers.AutoConfig.from_pretrained(str(folder.path), local_files_only=True,
                                                             trust_remote_code=trust)
        except (OSError, ValueError, KeyError) as exc:
            raise TritongenError(f"transformers cannot read {folder.path / CONFIG}: {_first_line(exc)}",
                                 f"check the folder was written by transformers {transformers.__version__} or older; "
                                 + NO_DOWNLOAD) from exc
        if task.name == "text-generation":
            config.use_cache = False  # a cache object is not a tensor Triton can serve
        auto = getattr(transformers, task.auto_class)
        if type(config) not in auto._model_mapping and not trust:
            raise TritongenError(f"transformers has no {task.name} model for '{config.model_type}'",
                                 f"pass --task with one it has: {', '.join(tasks_for(config, transformers)) or 'none'}")
        try:
            model, info = auto.from_pretrained(str(folder.path), config=config, local_files_only=True,
                                               output_loading_info=True, dtype=torch.float32, weights_only=True,
                                               use_safetensors=folder.weights_format == "safetensors",
                                               trust_remote_code=trust)
        except Exception as exc:
            from tritongen.errors import stop_if_interrupted

            stop_if_interrupted(exc)
            raise TritongenError(f"transformers cannot load '{folder.path}': {_first_line(exc)}", NO_DOWNLOAD) from exc
    missing = sorted(info.get("missing_keys") or ())
    if missing or info.get("mismatched_keys"):
        wrong = missing or sorted(str(k) for k in info["mismatched_keys"])
        raise TritongenError(
            f"'{folder.path}' has no weights for {', '.join(wrong[:4])}" + (f" (+{len(wrong) - 4})" if len(wrong) > 4
                                                                             else "")
            + f" of the {task.name} model ({type(model).__name__}), which would answer at random",
            f"pass the --task the folder was saved for ({folder.architecture or 'see config.json'}), or train the head")
    unused = sorted(info.get("unexpected_keys") or ())
    if unused:
        notes.append(f"the {task.name} model leaves {len(unused)} weight(s) of the folder unused "
                     f"({', '.join(unused[:3])}): the folder's own head is not part of this task")
    model.eval()
    module, how = model, f"{type(model).__name__} ({task.name}) from {', '.join(p.name for p in folder.weights[:2])}"
    # An encoder-decoder model (it takes decoder inputs) is served as its encoder; an encoder-decoder config with an
    # encoder-only head (Whisper's audio classifier) is served as it is.
    import inspect

    if "decoder_input_ids" in inspect.signature(model.forward).parameters:
        if task.name != "feature-extraction":
            raise TritongenError(f"a {type(model).__name__} is an encoder-decoder model; tritongen serves its encoder only",
                                 "pass --task feature-extraction")
        module = model.get_encoder()
        notes.append(f"{type(model).__name__} is an encoder-decoder model: its encoder ({type(module).__name__}) is "
                     "built; the decoder generates in a loop, which is not served")
        how = f"the encoder of {how}"
    return HfModel(module, config, task, how, tuple(notes))


def tasks_for(config: Any, transformers: Any) -> list[str]:
    """The tasks transformers has a model class for, for this config."""
    return [t.name for t in TASKS.values() if type(config) in getattr(transformers, t.auto_class)._model_mapping]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"
