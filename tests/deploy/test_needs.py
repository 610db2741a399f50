"""What a repository needs of its server, read from its configs and every served version's manifest."""

from __future__ import annotations

import json
from pathlib import Path

from tests.deploy.test_compose import write_model
from tritongen.deploy import needs_of_repository


def with_requirements(repository: Path, name: str, versions: dict[int, list[str]], policy: str = "") -> None:
    """A python-backend model whose versions' manifests list `python_requirements` (as pipeline step models do)."""
    model = write_model(repository, name)
    if policy:
        config = model / "config.pbtxt"
        config.write_text(config.read_text() + policy)
    for version, requirements in versions.items():
        meta = model / str(version) / "tritongen"
        meta.mkdir(parents=True)
        (meta / "manifest.json").write_text(json.dumps({"model": name, "version": version, "artifacts": {},
                                                        "python_requirements": requirements}))


def test_python_requirements_come_from_the_served_versions_manifests(tmp_path: Path):
    repository = tmp_path / "model_repository"
    with_requirements(repository, "pre", {1: ["tokenizers==0.20.0"], 2: ["tokenizers==0.22.1", "numpy<2"]})
    with_requirements(repository, "post", {1: ["pillow==11.0.0"], 2: ["pillow==12.0.0"]},
                      policy="version_policy: { all: { } }\n")
    write_model(repository, "plain")  # no manifest: nothing recorded
    needs = {m.name: m for m in needs_of_repository(repository).models}
    assert needs["pre"].python_requirements == ("tokenizers==0.22.1", "numpy<2")  # the latest version only is served
    assert needs["post"].python_requirements == ("pillow==11.0.0", "pillow==12.0.0")  # every version is served
    assert needs["plain"].python_requirements == ()


def test_response_cache_is_a_need_of_the_server(tmp_path: Path):
    repository = tmp_path / "model_repository"
    model = write_model(repository, "a")
    assert not needs_of_repository(repository).cache
    (model / "config.pbtxt").write_text((model / "config.pbtxt").read_text() + "response_cache { enable: true }\n")
    assert needs_of_repository(repository).cache and needs_of_repository(repository).models[0].cache
