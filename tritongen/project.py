"""Multi-model repositories: a project file (`tritongen.toml`) listing several models, built into one repository.

    repository = "model_repository"      # optional; paths are relative to the file
    deploy = true                        # optional: one deploy/ folder for every model (deploy-image, public too)

    [[model]]
    checkpoint = "./sentiment-bert"      # the CHECKPOINT|FOLDER argument
    name = "sentiment"                   # then any option of `tritongen build`, by its long name
    pipeline = true
    max-batch-size = 16

Each `[[model]]` takes the options `build` takes on the command line (`max-batch-size` or `max_batch_size`; a flag is
`true`; a repeatable option a list), turned into that command line (`arguments`) and parsed by the CLI as such. Every
entry is planned before any is built, so a mistake in one is reported before anything is written. Each model is then
built in its own transaction: one that fails is named, and leaves the repository as it was for its models and every
version the others already have; the rest are still built. The deploy folder is written once, at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tritongen import defaults
from tritongen.errors import CheckFailed, TritongenError

PROJECT_FILE = "tritongen.toml"
# Options whose values are paths: relative to the project file's folder.
PATH_OPTIONS = ("checkpoint", "example-inputs", "calibration-data", "pythonpath", "timing-cache")
# What the project sets once, for every model (top-level keys), and what an entry may therefore not set.
TOP_LEVEL = ("repository", "deploy", "deploy-image", "public")
NOT_IN_ENTRIES = ("repository", "no-deploy", "deploy-image", "public", "file", "json", "debug", "version", "force")


@dataclass(frozen=True)
class ProjectEntry:
    """One `[[model]]` of the project file: its place, the name it asks for, and its build command line."""

    index: int  # 1-based, in the file's order
    name: str | None
    arguments: tuple[str, ...]  # `tritongen build` arguments, checkpoint last

    @property
    def label(self) -> str:
        return f"model {self.index}" + (f" ('{self.name}')" if self.name else "")


@dataclass(frozen=True)
class Project:
    path: Path
    repository: Path
    deploy: bool
    deploy_image: str | None
    public: bool
    entries: tuple[ProjectEntry, ...]


@dataclass
class ProjectResult:
    """Per entry: its build result, or the error that stopped it."""

    project: Project
    built: list[tuple[ProjectEntry, Any]] = field(default_factory=list)  # (entry, tritongen.build.BuildResult)
    failed: list[tuple[ProjectEntry, TritongenError]] = field(default_factory=list)
    deploy_files: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.passed, "project": str(self.project.path), "repository": str(self.project.repository),
                "models": [{"entry": e.index, **r.to_dict()} for e, r in self.built],
                "failed": [{"entry": e.index, "name": e.name, "error": err.message, "hint": err.hint}
                           for e, err in self.failed],
                "deploy": [str(p) for p in self.deploy_files]}


def read_project(path: Path) -> Project:
    """The project file, read and checked (top-level keys, one `[[model]]` table per model, known value types)."""
    path = Path(path)
    try:
        raw = _toml_loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TritongenError(f"cannot read the project file {path}: {exc.strerror}", "pass an existing tritongen.toml") \
            from exc
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise TritongenError(f"{path} is not valid TOML: {exc}", "fix the line it names") from exc
    here = path.resolve().parent
    unknown = [k for k in raw if k not in (*TOP_LEVEL, "model")]
    if unknown:
        raise TritongenError(f"{path}: unknown top-level key '{unknown[0]}'",
                             f"top-level keys are {', '.join(TOP_LEVEL)}; models go in [[model]] tables")
    models = raw.get("model")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise TritongenError(f"{path} lists no model", 'add one [[model]] table per model, with checkpoint = "PATH"')
    entries = tuple(_entry(i, m, here, path) for i, m in enumerate(models, start=1))
    names = [e.name for e in entries if e.name]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TritongenError(f"{path}: two models are named '{repeated[0]}'", "give each model its own name")
    repository = raw.get("repository", str(defaults.REPOSITORY))
    for key, kind in (("repository", str), ("deploy", bool), ("deploy-image", str), ("public", bool)):
        if key in raw and not isinstance(raw[key], kind):
            raise TritongenError(f"{path}: '{key}' must be a {kind.__name__}", f"e.g. {_example(key)}")
    return Project(path, here / repository, bool(raw.get("deploy", True)), raw.get("deploy-image"),
                   bool(raw.get("public", False)), entries)


def _entry(index: int, table: dict[str, Any], here: Path, path: Path) -> ProjectEntry:
    where = f"{path}, model {index}"
    options = {str(k).replace("_", "-"): v for k, v in table.items()}
    if "checkpoint" not in options:
        raise TritongenError(f"{where} has no checkpoint", 'add checkpoint = "PATH" (a file or a Hugging Face folder)')
    refused = [k for k in options if k in NOT_IN_ENTRIES]
    if refused:
        raise TritongenError(f"{where} sets '{refused[0]}', which the project sets for every model (or which does "
                             "not apply to a project)", f"move it to the top of {path.name}, or leave it out")
    arguments: list[str] = []
    for key, value in options.items():
        if key == "checkpoint":
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool):
                if not isinstance(value, bool):
                    raise TritongenError(f"{where}: '{key}' is a list of true/false", f"give {key} = true")
                if item:
                    arguments.append(f"--{key}")
            elif isinstance(item, str | int | float):
                text = str(_path(here, item)) if key in PATH_OPTIONS else str(item)
                arguments += [f"--{key}", text]
            else:
                raise TritongenError(f"{where}: '{key}' has a {type(item).__name__} value",
                                     "give a string, a number, true, or a list of them")
    checkpoint = options["checkpoint"]
    if not isinstance(checkpoint, str):
        raise TritongenError(f"{where}: checkpoint must be a path string", 'e.g. checkpoint = "./bert"')
    name = options.get("name")
    return ProjectEntry(index, str(name) if name is not None else None,
                        (*arguments, "--", str(_path(here, checkpoint))))


def build_project(project: Project, options: Sequence[Any], step: Callable[[str], AbstractContextManager[Any]],
                  warn: Callable[[str], None] | None = None,
                  on_model: Callable[[ProjectEntry], None] | None = None) -> ProjectResult:
    """Build every entry (`options`: its BuildOptions, in order) into the project's repository, then deploy/ once.

    Every entry is planned first; a planning error names its entry and stops before anything is built. Then each
    is built in turn; a failed one (TritongenError, CheckFailed) is recorded with its entry and the others go on.
    """
    from tritongen.build import execute
    from tritongen.plan import plan_build

    plans = []
    for entry, entry_options in zip(project.entries, options, strict=True):
        entry_options = replace(entry_options, repository=project.repository, deploy=False)
        try:
            plans.append(plan_build(entry_options))
        except TritongenError as exc:
            raise _named(exc, entry) from exc
    _check_distinct_models(project, plans)
    result = ProjectResult(project)
    for entry, plan in zip(project.entries, plans, strict=True):
        if on_model is not None:
            on_model(entry)
        try:
            result.built.append((entry, execute(plan, step, warn)))
        except TritongenError as exc:  # CheckFailed too: this model failed, the others go on
            result.failed.append((entry, _named(exc, entry)))
    if project.deploy and result.built:
        from tritongen.deploy import write_deploy

        result.deploy_files = list(write_deploy(project.repository, image=project.deploy_image, public=project.public))
    return result


def _check_distinct_models(project: Project, plans: Sequence[Any]) -> None:
    """No two entries write the same model (a pipeline writes four: NAME, NAME_model, NAME_preprocess, ...)."""
    owner: dict[str, ProjectEntry] = {}
    for entry, plan in zip(project.entries, plans, strict=True):
        for target in plan.targets:
            if target.model in owner:
                raise TritongenError(f"{project.path}: {entry.label} and {owner[target.model].label} both write the "
                                     f"model '{target.model}'", "give them names that do not collide")
            owner[target.model] = entry


def _named(exc: TritongenError, entry: ProjectEntry) -> TritongenError:
    """The error, its message starting with the entry it belongs to (the same type: a failed check stays one)."""
    kind = CheckFailed if isinstance(exc, CheckFailed) else TritongenError
    return kind(f"{entry.label}: {exc.message}", exc.hint, details=exc.details)


def _path(here: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else here / path


def _example(key: str) -> str:
    return {"repository": 'repository = "model_repository"', "deploy": "deploy = false",
            "deploy-image": 'deploy-image = "slim"', "public": "public = true"}[key]


def _toml_loads(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)
