"""What `serve()` checks before serving: against a real tritonserver started on the raw repository."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.servers import built_repository, copy_repository
from tritongen.config import read_config
from tritongen.errors import TritongenError
from tritongen.server import launch
from tritongen.server.checks import foreign_entries, served_versions

ENTRIES: dict[str, Callable[[Path], object]] = {
    "a build's scratch folder": lambda r: (r / ".tritongen-two_python-x1" / "two_python" / "1").mkdir(parents=True),
    "a folder without config.pbtxt": lambda r: (r / "notes" / "1").mkdir(parents=True),
    "a broken symlink": lambda r: (r / "old").symlink_to(r / "gone"),
    "a file at the top": lambda r: (r / "README.md").write_text("models\n"),
    "a hidden file at the top": lambda r: (r / ".DS_Store").write_bytes(b"\0"),
    "a non-numeric folder in a model": lambda r: (r / "two_python" / "backup").mkdir(),
    "a config backup in a model": lambda r: (r / "two_python" / "config.pbtxt.bak-1").write_text("junk"),
}


@pytest.mark.server
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_an_entry_is_flagged_exactly_when_it_stops_a_real_server(entry: str, tmp_path: Path,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    repo = copy_repository(built_repository(tmp_path_factory, "two"), tmp_path / "repo", ("two_python",))
    ENTRIES[entry](repo)
    flagged = foreign_entries(repo)
    try:
        with launch(repo, timeout_s=60):
            started = True
    except TritongenError:
        started = False
    assert bool(flagged) == (not started), (entry, flagged)


def test_served_versions_follow_the_version_policy(tmp_path: Path) -> None:
    model = tmp_path / "m"
    for v in (1, 2, 3, 10):
        (model / str(v)).mkdir(parents=True)
    (model / "config.pbtxt").write_text('backend: "python"')
    assert served_versions(model, read_config(model)) == [10]
    (model / "config.pbtxt").write_text('backend: "python" version_policy { latest { num_versions: 2 } }')
    assert served_versions(model, read_config(model)) == [3, 10]
    (model / "config.pbtxt").write_text('backend: "python" version_policy { specific { versions: [1, 3, 7] } }')
    assert served_versions(model, read_config(model)) == [1, 3]
    (model / "config.pbtxt").write_text('backend: "python" version_policy { all { } }')
    assert served_versions(model, read_config(model)) == [1, 2, 3, 10]
