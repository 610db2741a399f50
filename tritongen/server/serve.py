"""`serve()`: the one way tritongen serves a repository (validate, bench, tune and `tritongen serve` all use it).

It checks the repository (every served file as the build wrote it; nothing that would stop a real server), stages
it for the server (what it can serve, and how), starts the server (or connects to a running one), and says how each
model is served. Everything it started is stopped when the block ends, even if tritongen is killed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritongen.config import read_config
from tritongen.errors import TritongenError
from tritongen.server.base import ServerFlags, ServerHandle
from tritongen.server.checks import foreign_entries
from tritongen.server.launch import launch, starts_server
from tritongen.server.processes import sweep_leftovers, watchdog
from tritongen.server.stage import (
    StagedModel,
    StagedRepository,
    select_models,
    served_by,
    staged_repository,
    verify_model,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ServedModel:
    """How one model is served: `served_by` (None: not served, see `skipped_reason` or `problems`)."""

    name: str
    served_by: str | None
    skipped_reason: str | None = None  # the server has no backend for it
    problems: tuple[str, ...] = ()  # its files are not the ones the build wrote
    # What the server runs the model with (parsed): the staged config a server we start is given; for a server
    # someone else runs, what it reports (the repository's when it does not have the model).
    config: Any = None
    # The config tritongen expects the server to run: the staged one, or for a server we did not start the
    # repository's (None without a repository). validate compares this with what the server reports.
    written: Any = None


@dataclass(frozen=True)
class Served:
    """A running server and what it serves."""

    handle: ServerHandle
    models: tuple[ServedModel, ...]
    backends: frozenset[str] | None  # what the server can serve; None: every backend, or not known (a URL)
    repository_problems: tuple[str, ...] = ()  # entries that would stop a real tritonserver on the repository

    def model(self, name: str) -> ServedModel:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def served(self) -> list[str]:
        return [m.name for m in self.models if m.served_by is not None]


class NothingToServe(TritongenError):
    """No model asked for can be served by this server; `models` says why for each."""

    def __init__(self, message: str, hint: str, models: tuple[ServedModel, ...],
                 repository_problems: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint)
        self.models = models
        self.repository_problems = repository_problems


@contextlib.contextmanager
def serve(repository: str | Path | None, server: str = "embedded", *, models: Sequence[str] | None = None,
          flags: ServerFlags | None = None, tritonserver: str | Path | None = None, image: str | None = None,
          timeout_s: float | None = None, host: str | None = None,
          ports: tuple[int | None, int | None, int | None] | None = None,
          report_unverified: bool = False, before_start: Callable[[StagedRepository], None] | None = None,
          on_progress: Progress | None = None, on_warning: Progress | None = None,
          stop_grace_s: float | None = None, every_version: bool = False) -> Iterator[Served]:
    """Serve `models` (default: all) of `repository` on `server` ("embedded", "docker" or a running server's URL).

    A model whose served files differ from its manifest (changed, missing, or not written by the build) is refused:
    an error, or with `report_unverified` it is left out and listed in `Served.models` with its problems. Models the
    server has no backend for are left out with the reason; if nothing is left, `NothingToServe` is raised before
    any server starts. `before_start` may add models to the staged copy (a server tritongen starts only).
    `on_warning` hears about what the user should know (a stop that had to be forced). `every_version`: stage (and
    check) every version, not only those the configs serve, so that explicit model control can load any of them
    (`tritongen rollout`).
    """
    progress = on_progress or (lambda _msg: None)
    flags = flags or ServerFlags()
    source = Path(repository) if repository is not None else None
    names = select_models(source, models) if source is not None else list(models or ())
    problems = tuple(foreign_entries(source)) if source is not None else ()
    if not starts_server(server):
        with _serve_running(source, server, names, flags, timeout_s, report_unverified, progress) as entries:
            yield Served(entries[0], entries[1], None, problems)
        return
    if source is None:
        raise TritongenError(f"the {server} server needs a model repository to serve", "pass the repository")
    sweep_leftovers()
    backends = _server_backends(server, source, names, tritonserver, image)
    with watchdog() as dog, staged_repository(source, backends=backends, models=names,
                                              every_version=every_version) as staged:
        dog.guard_path(staged.path.parent)
        served_models = tuple(_from_staged(m) for m in staged.models)
        if not report_unverified:
            _refuse_unverified(served_models)
        if not staged.served:
            reasons = "; ".join(f"{m.name}: {m.skipped_reason or m.problems[0]}" for m in served_models)
            raise NothingToServe(f"no model in '{source}' can be served by this server ({reasons})",
                                 "serve it with Docker or a Triton that has those backends", served_models, problems)
        if before_start is not None:
            before_start(staged)
        flags = _with_cache(flags, served_models)
        what = "starting Triton in Docker" if server == "docker" else "starting the embedded tritonserver"
        progress(what + (" (explicit model control)" if flags.model_control == "explicit" else ""))
        with staged.naming_original_paths(), launch(staged.path, server, flags=flags, tritonserver=tritonserver,
                                                    timeout_s=timeout_s, image=image, host=host, ports=ports,
                                                    guard=dog, on_progress=on_warning,
                                                    stop_grace_s=stop_grace_s) as handle:
            yield Served(handle, served_models, backends, problems)


def _with_cache(flags: ServerFlags, models: tuple[ServedModel, ...]) -> ServerFlags:
    """A model with `response_cache` enabled gets a cache only where the server has one configured: as deployed."""
    from dataclasses import replace

    from tritongen.deploy.command import cache_args

    wanted = any(m.config is not None and m.config.response_cache.enable for m in models if m.served_by)
    if not wanted or any(arg.startswith("--cache-config") for arg in flags.extra_args):
        return flags
    return replace(flags, extra_args=(*flags.extra_args, *cache_args()))


def served_config(grpc_url: str, model: str) -> Any:
    """The config a running server runs `model` with, parsed with Triton's schema."""
    import tritonclient.grpc as grpcclient
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2
    from tritonclient.utils import InferenceServerException

    from tritongen.runners.triton import grpc_channel_args

    client = grpcclient.InferenceServerClient(grpc_url, channel_args=grpc_channel_args())
    try:
        raw = client.get_model_config(model, as_json=True)
    except InferenceServerException as exc:
        raise TritongenError(f"the server at {grpc_url} does not serve model '{model}': {exc.message()}",
                             "check the model name and that it is loaded") from exc
    finally:
        client.close()
    return json_format.ParseDict(raw.get("config", raw), model_config_pb2.ModelConfig(), ignore_unknown_fields=True)


@contextlib.contextmanager
def _serve_running(source: Path | None, url: str, names: list[str], flags: ServerFlags, timeout_s: float | None,
                   report_unverified: bool, progress: Progress) -> Iterator[tuple[ServerHandle, tuple[ServedModel, ...]]]:
    """A server someone else runs: it serves its own copy, with its own flags; what the repository holds is checked
    all the same, and each model is described as its config says (one wording for every server we did not start)."""
    progress(f"connecting to {url}")
    with launch(source or ".", url, flags=flags, timeout_s=timeout_s) as handle:
        entries = []
        for name in names:
            written = read_config(source / name) if source is not None else None
            problems = tuple(verify_model(source / name, written)) if source is not None else ()
            try:
                running = served_config(handle.grpc_url, name)
            except TritongenError:
                if written is None:
                    raise
                running = written  # not loaded there: validate says so, with the server's words
            entries.append(ServedModel(name, served_by(running), problems=problems, config=running, written=written))
        served_models = tuple(entries)
        if not report_unverified:
            _refuse_unverified(served_models)
        yield handle, served_models


def _from_staged(model: StagedModel) -> ServedModel:
    return ServedModel(model.name, model.served_by, model.skipped_reason, model.problems, model.config, model.config)


def _refuse_unverified(models: tuple[ServedModel, ...]) -> None:
    for m in models:
        if m.problems:
            raise TritongenError(f"model '{m.name}' is not served: its files are not the ones `tritongen build` wrote "
                                 f"({m.problems[0]})",
                                 "rebuild it with `tritongen build` (or restore its files); `tritongen validate` lists "
                                 "every difference", details="\n".join(m.problems) if len(m.problems) > 1 else None)


def _server_backends(server: str, repository: Path, names: list[str], tritonserver: str | Path | None,
                     image: str | None) -> frozenset[str] | None:
    """The backends of a server we start, where they are known; None: serve the repository as written."""
    if server == "embedded":
        from tritongen.server.install import find_tritonserver

        return find_tritonserver(tritonserver).backend_names
    from tritongen.deploy import SLIM_BACKENDS, SLIM_IMAGE
    from tritongen.server.docker import image_backends

    _refuse_mismatched_plans(repository, names, image)
    if image in ("slim", SLIM_IMAGE):
        return SLIM_BACKENDS
    # A slim image built under another tag (`tritongen image build --tag`, e.g. with a pipeline's packages) says so in
    # its label; any other image is taken to have every backend.
    return image_backends(image) if image not in (None, "", "auto", "nvidia") else None


def _refuse_mismatched_plans(repository: Path, names: Sequence[str], image: str | None) -> None:
    """A TensorRT plan loads only in the TensorRT release that built it: say so before starting the container."""
    from tritongen.deploy import choose_image, needs_of_repository
    from tritongen.formats.tensorrt.versions import check_plan_version, plan_tensorrt_version, tensorrt_version_of_image
    from tritongen.repository import versions_of

    plans = [n for n in names if read_config(repository / n).platform == "tensorrt_plan"]
    if not plans:
        return
    server_version = tensorrt_version_of_image(choose_image(needs_of_repository(repository), image).ref)
    for name in plans:
        versions = versions_of(repository / name)
        if versions:
            check_plan_version(plan_tensorrt_version(repository / name / str(versions[-1])), server_version, name)
