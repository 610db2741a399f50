"""Staging: the copy of a repository that a server is given. Only what `build` wrote and the manifest vouches for is
in it; ONNX models become python-runner models on a server without the onnxruntime backend; models no backend of
the server can serve are left out, with the reason.

The staged copy is a directory of symlinks to the original files plus rewritten configs and rendered model.py
files, so nothing big is copied and the original repository is never touched.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritongen.config import read_config
from tritongen.errors import TritongenError
from tritongen.repository import CONFIG, META_DIR, models_in, read_manifest, versions_of
from tritongen.server.checks import artifact_problems, served_versions
from tritongen.server.processes import STAGING_DIR, owned_name

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
    served_by: str | None  # None when left out: skipped (no backend) or refused (files not as built)
    skipped_reason: str | None = None
    onnx_filename: str | None = None  # set when the python runner wraps an ONNX file
    config: Any = None  # the config the server is given (parsed), when served
    problems: tuple[str, ...] = ()  # why it is refused: its files differ from what the build wrote


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
    if not wanted:
        return available
    # An ensemble (a pipeline) loads only with the models its steps run: they come with it.
    chosen = list(dict.fromkeys(wanted))
    for name in chosen:  # grows while it runs: a step may be an ensemble too
        config = read_config(repository / name)
        for step in config.ensemble_scheduling.step if config.platform == "ensemble" else ():
            if step.model_name not in available:
                raise TritongenError(f"the ensemble '{name}' runs model '{step.model_name}', which is not in "
                                     f"'{repository}'", "build the whole pipeline again with `tritongen build "
                                     "--pipeline`")
            if step.model_name not in chosen:
                chosen.append(step.model_name)
    return chosen


def backend_of(config: model_config_pb2.ModelConfig) -> str:
    """The backend a config needs: its `backend`, or the one its `platform` implies."""
    if config.backend:
        return config.backend
    return _PLATFORM_BACKENDS.get(config.platform, config.platform or "unknown")


def served_by(config: model_config_pb2.ModelConfig) -> str:
    """How a config is served when the server has its backend (also the wording for a server we did not start)."""
    return f"{backend_of(config)} backend"


def verify_model(model_dir: Path, config: Any, every_version: bool = False) -> list[str]:
    """Problems with the served versions' files (see `artifact_problems`), or every version's; no version at all is
    one too."""
    versions = versions_of(model_dir) if every_version else served_versions(model_dir, config)
    if not versions:
        return [f"{model_dir} has no version directory"]
    return [p for v in versions for p in artifact_problems(model_dir / str(v))]


def stage_repository(repository: Path, dest: Path, *, backends: Iterable[str] | None,
                     models: Sequence[str] | None = None, every_version: bool = False) -> StagedRepository:
    """Write into `dest` a repository the server with `backends` (None: every backend) can load, and say how each
    model is served. Models whose files are not the ones the build wrote are refused (left out, with the problems).
    `every_version`: stage all versions, not only those the config serves (explicit model control can load any)."""
    available = None if backends is None else frozenset(backends)
    repository = repository.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    staged: list[StagedModel] = []
    for name in select_models(repository, models):
        source = repository / name
        config = read_config(source)
        backend = backend_of(config)
        servable = available is None or backend in available or backend == "ensemble"
        runner = not servable and backend == "onnxruntime" and "python" in (available or ())
        if not (servable or runner):
            have = ", ".join(sorted(available or ())) or "none"
            staged.append(StagedModel(name, None, f"needs the {backend} backend, which this server does not have "
                                                  f"(it has: {have}); serve it with --server docker or a full Triton"))
            continue
        problems = verify_model(source, config, every_version)
        if problems:
            staged.append(StagedModel(name, None, problems=tuple(problems)))
        elif runner:
            staged.append(_stage_onnx_as_python(source, dest / name, config, every_version))
        else:
            _link_model(source, dest / name, config, every_version=every_version)
            staged.append(StagedModel(name, served_by(config), config=config))
    return StagedRepository(dest, tuple(staged), repository)


@contextlib.contextmanager
def staged_repository(repository: str | Path, *, backends: Iterable[str] | None,
                      models: Sequence[str] | None = None, every_version: bool = False) -> Iterator[StagedRepository]:
    """`stage_repository` into a temporary directory that is removed afterwards (named after this process, so that
    the folder of a killed run can be swept)."""
    with tempfile.TemporaryDirectory(prefix=owned_name(STAGING_DIR)) as tmp:
        yield stage_repository(Path(repository), Path(tmp) / "repository", backends=backends, models=models,
                               every_version=every_version)


def _link_model(source: Path, dest: Path, config: Any, *, config_text: str | None = None,
                skip: Sequence[str] = (), every_version: bool = False) -> list[Path]:
    """The model's config (linked, or `config_text`) and its served versions: each a real folder holding links to
    the files the manifest lists and to tritongen/, nothing else. Returns the staged version folders."""
    dest.mkdir(parents=True)
    if config_text is None:
        (dest / CONFIG).symlink_to(source / CONFIG)
    else:
        (dest / CONFIG).write_text(config_text)
    staged = []
    for version in versions_of(source) if every_version else served_versions(source, config):
        version_dir, target = source / str(version), dest / str(version)
        target.mkdir()
        names = [n for n in read_manifest(version_dir)["artifacts"] if n not in skip]
        for name in [*names, META_DIR]:
            if (version_dir / name).exists():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                (target / name).symlink_to(version_dir / name)
        staged.append(target)
    return staged


def as_python_runner(config: model_config_pb2.ModelConfig) -> model_config_pb2.ModelConfig:
    """An `onnxruntime_onnx` config as the python runner serves it: only what selects the backend changes; dims,
    batching, instances and warmup stay as written."""
    python_config = model_config_pb2.ModelConfig()
    python_config.CopyFrom(config)
    python_config.platform = ""
    python_config.backend = "python"
    python_config.ClearField("default_model_filename")
    python_config.ClearField("cc_model_filenames")
    return python_config


def _stage_onnx_as_python(source: Path, dest: Path, config: model_config_pb2.ModelConfig,
                          every_version: bool = False) -> StagedModel:
    from tritongen.formats.python import MODEL_PY, write_python_model

    onnx_filename = config.default_model_filename or "model.onnx"
    python_config = as_python_runner(config)
    # model.py is rendered here, never linked: an ONNX model's version has none the build vouches for.
    for version_dir in _link_model(source, dest, config, config_text=text_format.MessageToString(python_config),
                                   skip=(MODEL_PY,), every_version=every_version):
        if (version_dir / onnx_filename).exists():
            write_python_model(version_dir, onnx_filename=onnx_filename)
    return StagedModel(source.name, PYTHON_RUNNER, onnx_filename=onnx_filename, config=python_config)
