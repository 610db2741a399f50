"""Staging a repository for a server with fewer backends: ONNX models served by the python runner, others skipped.

The staged copy is a directory of symlinks to the original files plus rewritten configs, so nothing big is copied
and the original repository is never touched.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritongen.errors import TritongenError
from tritongen.repository import models_in

PYTHON_RUNNER = "python-runner (onnxruntime backend not in this server)"
# Platforms name their backend implicitly; Triton maps them like this.
_PLATFORM_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "tensorrt_plan": "tensorrt",
    "pytorch_libtorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
    "ensemble": "ensemble",
}


@dataclass(frozen=True)
class StagedModel:
    """How one model of the original repository is (or is not) served by the staged one."""

    name: str
    served_by: str | None  # None when skipped
    skipped_reason: str | None = None
    onnx_filename: str | None = None  # set when the python runner wraps an ONNX file


@dataclass(frozen=True)
class StagedRepository:
    path: Path
    models: tuple[StagedModel, ...]
    source: Path  # the user's repository the staged one links to

    @contextlib.contextmanager
    def naming_original_paths(self) -> Iterator[None]:
        """Errors raised inside (server logs included) name the user's files, not the staged links to them."""
        try:
            yield
        except TritongenError as exc:
            staged, source = str(self.path), str(self.source)
            exc.message = exc.message.replace(staged, source)
            exc.hint = exc.hint.replace(staged, source) if exc.hint else exc.hint
            exc.details = exc.details.replace(staged, source) if exc.details else exc.details
            raise

    def model(self, name: str) -> StagedModel:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def served(self) -> list[str]:
        return [m.name for m in self.models if m.served_by is not None]


def read_config(model_dir: Path) -> model_config_pb2.ModelConfig:
    """Parse `<model>/config.pbtxt` with Triton's own schema."""
    path = model_dir / "config.pbtxt"
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except OSError as exc:
        raise TritongenError(f"cannot read {path}: {exc.strerror}", "check the repository path") from exc
    except text_format.ParseError as exc:
        raise TritongenError(f"{path} is not a valid Triton model config: {exc}",
                             "fix the file or rebuild the model with `tritongen build`") from exc


def select_models(repository: Path, wanted: Sequence[str] | None) -> list[str]:
    """The models to work on: all of the repository's, or the ones asked for (each must exist)."""
    available = [p.name for p in models_in(repository)]
    if not available:
        raise TritongenError(f"'{repository}' holds no model (no <model>/config.pbtxt)",
                             "point at a model repository written by `tritongen build`")
    for name in wanted or ():
        if name not in available:
            raise TritongenError(f"model '{name}' is not in '{repository}' (it has: {', '.join(available)})",
                                 "use one of those model names")
    return list(wanted) if wanted else available


def backend_of(config: model_config_pb2.ModelConfig) -> str:
    """The backend a config needs: its `backend`, or the one its `platform` implies."""
    if config.backend:
        return config.backend
    return _PLATFORM_BACKENDS.get(config.platform, config.platform or "unknown")


def served_by(config: model_config_pb2.ModelConfig) -> str:
    """How a config is served when the server has its backend."""
    return f"{backend_of(config)} backend"


def stage_repository(repository: Path, dest: Path, *, backends: Iterable[str],
                     models: Sequence[str] | None = None) -> StagedRepository:
    """Write into `dest` a repository the server with `backends` can load, and say how each model is served."""
    available = frozenset(backends)
    repository = repository.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    staged: list[StagedModel] = []
    for name in select_models(repository, models):
        config = read_config(repository / name)
        backend = backend_of(config)
        if backend in available or backend == "ensemble":
            _link_entries(repository / name, dest / name)
            staged.append(StagedModel(name, served_by(config)))
        elif backend == "onnxruntime" and "python" in available:
            staged.append(_stage_onnx_as_python(repository / name, dest / name, config))
        else:
            have = ", ".join(sorted(available)) or "none"
            staged.append(StagedModel(name, None, f"needs the {backend} backend, which this server does not have "
                                                   f"(it has: {have}); serve it with --server docker or a full Triton"))
    return StagedRepository(dest, tuple(staged), repository)


@contextlib.contextmanager
def staged_repository(repository: str | Path, *, backends: Iterable[str],
                      models: Sequence[str] | None = None) -> Iterator[StagedRepository]:
    """`stage_repository` into a temporary directory that is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="tritongen-stage-") as tmp:
        yield stage_repository(Path(repository), Path(tmp) / "repository", backends=backends, models=models)


def _link_entries(source: Path, dest: Path) -> None:
    # A real directory of linked entries: files can be added (model.py) without touching the original.
    dest.mkdir(parents=True)
    for entry in source.iterdir():
        (dest / entry.name).symlink_to(entry)


def _stage_onnx_as_python(source: Path, dest: Path, config: model_config_pb2.ModelConfig) -> StagedModel:
    from tritongen.formats.python import write_python_model

    onnx_filename = config.default_model_filename or "model.onnx"
    python_config = model_config_pb2.ModelConfig()
    python_config.CopyFrom(config)
    # Only what selects the backend changes; dims, batching, instances and warmup stay as written.
    python_config.platform = ""
    python_config.backend = "python"
    python_config.ClearField("default_model_filename")
    python_config.ClearField("cc_model_filenames")
    dest.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name == "config.pbtxt":
            continue
        if entry.is_dir() and entry.name.isdigit():
            _link_entries(entry, dest / entry.name)
            if (entry / onnx_filename).exists():
                write_python_model(dest / entry.name, onnx_filename=onnx_filename)
        else:
            (dest / entry.name).symlink_to(entry)
    (dest / "config.pbtxt").write_text(text_format.MessageToString(python_config))
    return StagedModel(source.name, PYTHON_RUNNER, onnx_filename=onnx_filename)
