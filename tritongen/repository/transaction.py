"""A build's hold on the repository: lock, leftovers swept, versions chosen, a workspace, and the install.

    with building(repository, ["cnn", "cnn_python"], version=None, force=False, note=print) as work:
        ...write <work.staged("cnn")>/{config.pbtxt, <work.versions[0]>/...}...
        work.install()

Everything between entering and `install()` happens outside the served tree; leaving the block without installing
(an error, Ctrl-C, SIGTERM turned into KeyboardInterrupt) leaves the repository exactly as it was, and removes a
repository folder that the build created and that is still empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tritongen.errors import TritongenError
from tritongen.repository.install import Installed, install_staged
from tritongen.repository.layout import check_repository_dir, resolve_version
from tritongen.repository.lock import model_locks
from tritongen.repository.workspace import build_workspace, sweep_stale


@dataclass
class RepositoryBuild:
    """What a build may use while it holds the repository (yielded by `building`)."""

    repository: Path
    models: tuple[str, ...]
    versions: tuple[int, ...]  # one per model, chosen under the lock
    workspace: Path  # scratch space on the repository's filesystem, outside what Triton serves
    note: Callable[[str], None]
    installed: list[Installed] = field(default_factory=list)

    def staged(self, model: str) -> Path:
        """Where to write `<model>/{config.pbtxt, <version>/}` before it is installed."""
        return self.workspace / model

    def install(self) -> list[Installed]:
        """Install every staged model, each in one atomic step, in the order the models were given."""
        for model, version in zip(self.models, self.versions, strict=True):
            staged = self.staged(model)
            if not (staged / str(version)).is_dir():
                raise TritongenError(f"internal error: model '{model}' version {version} was not staged",
                                     "please report this with the command line")
            installed = install_staged(staged, self.repository, version)
            for line in installed.notes:
                self.note(line)
            self.installed.append(installed)
        return self.installed


@contextmanager
def building(repository: Path, models: Sequence[str], *, version: int | None = None, force: bool = False,
             note: Callable[[str], None] | None = None) -> Iterator[RepositoryBuild]:
    """Hold `models` of `repository` from choosing their versions to installing them (see the module docstring)."""
    note = note or (lambda _line: None)
    repository = Path(repository)
    check_repository_dir(repository)
    made = _missing_dirs(repository)
    try:
        with model_locks(repository, models, on_wait=note):
            for line in sweep_stale(repository):
                note(line)
            versions = tuple(resolve_version(repository / m, version, force) for m in models)
            with build_workspace(repository) as workspace:
                yield RepositoryBuild(repository, tuple(models), versions, workspace, note)
    finally:
        for path in made:  # innermost first; a folder someone else put something in stays
            try:
                path.rmdir()
            except OSError:
                break


def _missing_dirs(path: Path) -> list[Path]:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing
