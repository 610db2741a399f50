"""Telling checkpoint kinds apart without running pickle code, and loading each kind safely."""

from __future__ import annotations

import contextlib
import enum
import hashlib
import importlib
import json
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError
from tritongen.sources.archive import Archive, open_archive

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


class CheckpointKind(str, enum.Enum):
    TORCHSCRIPT = "torchscript"
    EXPORTED_PROGRAM = "pt2"  # torch.export.save
    TORCH_SAVE = "torch.save"  # a state_dict, a dict holding one, or a full pickled module
    SAFETENSORS = "safetensors"  # weights only, for --model-class
    HF_FOLDER = "huggingface"  # a save_pretrained folder: config.json + weights


@dataclass(frozen=True)
class SourceDefaults:
    """What a checkpoint says about its own interface (a Hugging Face folder does): used where no option says."""

    inputs: tuple[Any, ...]  # TensorSpec, as --input would give them
    outputs: tuple[str, ...]  # output keys served where the model returns them (the task's)
    axis_lengths: dict[str, tuple[int, ...]]
    padding: str = "right"  # where example masks pad


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A ready-to-run module and what we learnt about it from the file."""

    module: Any  # torch.nn.Module (or the module of an ExportedProgram)
    kind: CheckpointKind
    path: Path
    sha256: str
    exported_program: Any = None  # torch.export.ExportedProgram for .pt2
    how: str = ""  # a short phrase for the summary: "state_dict into mypkg.Net"
    defaults: SourceDefaults | None = None
    source: dict[str, Any] | None = None  # recorded in the manifest (a Hugging Face folder: task, labels, files)
    keep_files: tuple[Path, ...] = ()  # files kept with every version (a folder's tokenizer and processor files)
    notes: tuple[str, ...] = ()  # warnings found while loading


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def kind_of_checkpoint(path: Path) -> CheckpointKind:
    """Tell the checkpoint kind: a folder with config.json, a safetensors header, or zip member names; no pickle code
    runs, and no member is inflated whole."""
    path = Path(path)
    kind = _check_readable(path)
    if kind is not None:
        return kind
    with open_archive(path) as archive:
        return _kind_of_archive(archive)


def _check_readable(path: Path) -> CheckpointKind | None:
    """The kind, for a folder or a safetensors file (checked complete); None for a zip archive, still to be opened."""
    if not path.exists():
        raise TritongenError(f"checkpoint '{path}' does not exist", "check the path")
    if path.is_dir():
        from tritongen.sources.hf import read_hf_folder

        read_hf_folder(path)  # an incomplete folder is an error here, before any work
        return CheckpointKind.HF_FOLDER
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        raise TritongenError(f"cannot read checkpoint '{path}': {exc.strerror}", "check the file's permissions") from exc
    from tritongen.sources.safetensors import header_tensors, is_safetensors

    if is_safetensors(path):
        header_tensors(path)
        return CheckpointKind.SAFETENSORS
    if not zipfile.is_zipfile(path):
        raise TritongenError(
            f"'{path}' is not a PyTorch checkpoint (not a zip archive as torch.save, torch.jit.save and "
            "torch.export.save write, nor a safetensors file)",
            "pass a file written by torch.save (state_dict), torch.jit.save, torch.export.save or safetensors, or a "
            "save_pretrained folder",
        )
    return None


def _kind_of_archive(archive: Archive) -> CheckpointKind:
    # torch's own marker is three bytes: a short prefix is all that is ever read of it.
    if archive.has("archive_format") and archive.read_prefix("archive_format", 16).strip() == b"pt2":
        return CheckpointKind.EXPORTED_PROGRAM
    names = archive.names
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        return CheckpointKind.TORCHSCRIPT
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return CheckpointKind.TORCH_SAVE
    raise TritongenError(
        f"'{archive.path}' is a zip archive but not a PyTorch checkpoint (no data.pkl, TorchScript code or pt2 archive)",
        "pass a file written by torch.save, torch.jit.save or torch.export.save",
    )


@contextmanager
def user_code_paths(pythonpath: tuple[Path, ...] = ()) -> Iterator[None]:
    """--pythonpath directories first on sys.path and the current directory last (as `python -m` would) while the
    block runs; afterwards sys.path is as it was. Modules imported inside stay in sys.modules, so the model's classes
    keep working after the block."""
    front = [p for p in dict.fromkeys(str(Path(p).resolve()) for p in pythonpath) if p not in sys.path]
    cwd = str(Path.cwd())
    back = [cwd] if cwd not in sys.path and cwd not in front else []
    sys.path[:0] = front
    sys.path.extend(back)
    try:
        yield
    finally:
        for entry in front + back:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def import_model_class(spec: str, pythonpath: tuple[Path, ...] = ()) -> type:
    """Import `package.module:ClassName` with the user's code directories on sys.path (only while importing)."""
    if ":" not in spec:
        raise TritongenError(f"--model-class '{spec}' is not MODULE:CLASS", "e.g. --model-class mypkg.models:ResNet")
    module_name, _, class_name = spec.partition(":")
    try:
        with user_code_paths(pythonpath):
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TritongenError(
            f"cannot import module '{module_name}' for --model-class: {exc}",
            "pass --pythonpath DIR with the directory that holds your model code",
        ) from exc
    except Exception as exc:  # the user's module raised while importing
        raise TritongenError(f"importing '{module_name}' failed: {type(exc).__name__}: {exc}",
                             "fix the error in your model code") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise TritongenError(f"module '{module_name}' has no class '{class_name}'",
                             f"check the class name in --model-class {spec}")
    return cls


def parse_model_kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TritongenError(f"--model-kwargs is not valid JSON ({exc.msg} at char {exc.pos})",
                             "e.g. --model-kwargs '{\"num_classes\": 10}'") from exc
    if not isinstance(value, dict):
        raise TritongenError("--model-kwargs must be a JSON object", "e.g. --model-kwargs '{\"num_classes\": 10}'")
    return value


def import_modules(names: tuple[str, ...], pythonpath: tuple[Path, ...] = ()) -> None:
    """`--import MODULE`: modules imported before the checkpoint loads (they register the user's pytree types or
    custom operators), with the user's code directories on sys.path."""
    for name in names:
        try:
            with user_code_paths(pythonpath):
                importlib.import_module(name)
        except ImportError as exc:
            raise TritongenError(f"cannot import --import {name}: {exc}",
                                 "pass --pythonpath DIR with the directory that holds it") from exc
        except Exception as exc:
            raise TritongenError(f"importing --import {name} failed: {type(exc).__name__}: {exc}",
                                 "fix the error in that module") from exc


def load_checkpoint(
    path: Path,
    *,
    model_class: str | None = None,
    model_kwargs: str | None = None,
    pythonpath: tuple[Path, ...] = (),
    trust: bool = False,
    task: str | None = None,
    imports: tuple[str, ...] = (),
) -> LoadedCheckpoint:
    """Load any supported checkpoint kind on the CPU, in eval mode (`task`: a Hugging Face folder's task)."""
    path = Path(path)
    kind = _check_readable(path)
    import_modules(imports, pythonpath)
    if kind is CheckpointKind.HF_FOLDER:
        return _load_hf_folder(path, task, trust)
    if kind is CheckpointKind.SAFETENSORS:
        from tritongen.sources.safetensors import load_safetensors

        return _into_model_class(load_safetensors(path), path, sha256_of(path), kind, model_class, model_kwargs,
                                 pythonpath)
    with open_archive(path) as archive:  # a zip bomb is refused here, before torch is even imported
        kind = _kind_of_archive(archive)
        import torch

        if kind is CheckpointKind.EXPORTED_PROGRAM:
            from tritongen.sources.pt2 import load_exported_program

            ep, module, how = load_exported_program(archive, trust, imported=imports)
            return LoadedCheckpoint(module, kind, path, sha256_of(path), exported_program=ep, how=how)
    digest = sha256_of(path)
    if kind is CheckpointKind.TORCHSCRIPT:
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise TritongenError(f"cannot load TorchScript file '{path}': {_first_line(exc)}",
                                 "re-save it with torch.jit.save from the same PyTorch major version") from exc
        module.eval()
        return LoadedCheckpoint(module, kind, path, digest, how="TorchScript module")

    with user_code_paths(pythonpath):  # a trusted full pickle imports the model's classes while it loads
        obj = _torch_load(path, trust)
    if isinstance(obj, torch.nn.Module):
        obj.eval()
        return LoadedCheckpoint(obj, kind, path, digest, how=f"full pickled {type(obj).__name__} (trusted)")
    state_dict = _find_state_dict(obj)
    if state_dict is None:
        raise TritongenError(
            f"'{path}' holds a {type(obj).__name__}, neither a module nor a state_dict "
            f"(keys: {', '.join(map(str, list(obj)[:6])) if isinstance(obj, dict) else 'n/a'})",
            "save model.state_dict() or the module itself",
        )
    return _into_model_class(state_dict, path, digest, kind, model_class, model_kwargs, pythonpath)


def _into_model_class(state_dict: dict[str, Any], path: Path, digest: str, kind: CheckpointKind,
                      model_class: str | None, model_kwargs: str | None, pythonpath: tuple[Path, ...]
                      ) -> LoadedCheckpoint:
    """Weights (a state_dict, a safetensors file) loaded into `--model-class`, strictly."""
    what = "a state_dict" if kind is CheckpointKind.TORCH_SAVE else "a safetensors file"
    if not model_class:
        raise TritongenError(
            f"'{path}' is {what} ({len(state_dict)} tensors), which holds weights but not the model's code",
            "pass --model-class MODULE:CLASS (and --pythonpath DIR if the code is not installed)"
            + ("; a Hugging Face model's folder (config.json + model.safetensors) needs neither"
               if kind is CheckpointKind.SAFETENSORS else ""),
        )
    cls = import_model_class(model_class, pythonpath)
    kwargs = parse_model_kwargs(model_kwargs)
    from tritongen.sources.hf_class import is_hf_class, load_into_hf_class

    if is_hf_class(cls):  # configured by the config.json beside the weights, not by constructor arguments
        module, how = load_into_hf_class(cls, state_dict, path, kwargs)
        return LoadedCheckpoint(module, kind, path, digest, how=how)
    try:
        with user_code_paths(pythonpath):  # a constructor may import more of the user's code
            module = cls(**kwargs)
    except Exception as exc:
        raise TritongenError(f"constructing {model_class}(**{kwargs}) failed: {type(exc).__name__}: {exc}",
                             "pass the constructor arguments with --model-kwargs JSON") from exc
    _load_state_dict_strict(module, _strip_prefix(state_dict), model_class)
    module.eval()
    source = "state_dict" if kind is CheckpointKind.TORCH_SAVE else "safetensors weights"
    return LoadedCheckpoint(module, kind, path, digest, how=f"{source} into {model_class}")


def _load_hf_folder(path: Path, task: str | None, trust: bool) -> LoadedCheckpoint:
    from tritongen.sources.hf import folder_digest, load_hf_model, read_hf_folder, task_of
    from tritongen.sources.hf_inputs import defaults_of, source_record

    folder = read_hf_folder(path)
    hf = load_hf_model(folder, task_of(folder, task), trust)
    return LoadedCheckpoint(hf.module, CheckpointKind.HF_FOLDER, path, folder_digest(folder), how=hf.how,
                            defaults=defaults_of(hf, folder), source=source_record(hf, folder),
                            keep_files=folder.files, notes=hf.notes)


def _torch_load(path: Path, trust: bool) -> Any:
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            try:
                imports = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))))
            except Exception:  # listing is best effort; the refusal stands either way
                imports = []
            shown = ", ".join(imports[:6]) + (f" and {len(imports) - 6} more" if len(imports) > 6 else "")
            raise TritongenError(
                f"'{path}' is a full pickle that would import {shown or 'arbitrary code'} when loaded, "
                "and loading a pickle can run any code",
                "if you trust this file pass --trust-checkpoint, or save model.state_dict() and pass --model-class",
            ) from exc
    except Exception as exc:
        raise TritongenError(f"cannot load '{path}': {_first_line(exc)}", "check that the file is not truncated") from exc
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as exc:
        raise TritongenError(f"the pickled model in '{path}' needs code that cannot be imported: {exc}",
                             "pass --pythonpath DIR with the directory that holds the model's code") from exc
    except Exception as exc:
        raise TritongenError(f"cannot load '{path}': {_first_line(exc)}", "check that the file is not truncated") from exc


def _is_tensor_dict(obj: Any) -> bool:
    import torch

    # An empty OrderedDict is the state_dict of a model without weights.
    return isinstance(obj, dict) and (bool(obj) or type(obj).__name__ == "OrderedDict") and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _find_state_dict(obj: Any) -> dict[str, Any] | None:
    if _is_tensor_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if _is_tensor_dict(obj.get(key)):
                return obj[key]
    return None


def _strip_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop the `module.` prefix DataParallel / DistributedDataParallel add to every key."""
    for prefix in ("module.", "_orig_mod."):  # _orig_mod: torch.compile'd models
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def _load_state_dict_strict(module: Any, state_dict: dict[str, Any], model_class: str) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}" + (f" (+{len(missing) - 3})" if len(missing) > 3 else ""))
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:3])}"
                        + (f" (+{len(unexpected) - 3})" if len(unexpected) > 3 else ""))
    if wrong_shape:
        problems.append(f"shape checkpoint vs class: {'; '.join(wrong_shape[:3])}"
                        + (f" (+{len(wrong_shape) - 3})" if len(wrong_shape) > 3 else ""))
    if problems:
        raise TritongenError(
            f"the state_dict does not match {model_class}: {' | '.join(problems)}",
            "check --model-class and --model-kwargs (layer sizes) match the model that was trained",
        )
    module.load_state_dict(state_dict, strict=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
