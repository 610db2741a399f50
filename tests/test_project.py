"""Multi-model repositories from a project file: `tritongen build -f tritongen.toml`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import PipelineBuilds, save_checkpoint
from tests.models import SmallCNN
from tritongen.errors import TritongenError
from tritongen.project import read_project

CNN = '''checkpoint = "cnn.pt"
model-class = "tests.models:SmallCNN"
input = ["image:3x32x32:fp32"]
max-batch-size = 4
'''


def project(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tritongen.toml"
    path.write_text(text)
    return path


def test_entries_become_build_command_lines_with_paths_relative_to_the_file(tmp_path: Path):
    found = read_project(project(tmp_path, 'deploy = false\n[[model]]\nname = "a"\n' + CNN
                                 + 'no-simplify = true\npipeline = false\nexample_inputs = "ex.npz"\n'))
    assert found.repository == tmp_path / "model_repository" and not found.deploy
    (entry,) = found.entries
    assert entry.name == "a" and entry.label == "model 1 ('a')"
    assert entry.arguments == ("--name", "a", "--model-class", "tests.models:SmallCNN", "--input", "image:3x32x32:fp32",
                               "--max-batch-size", "4", "--no-simplify", "--example-inputs", str(tmp_path / "ex.npz"),
                               "--", str(tmp_path / "cnn.pt"))


@pytest.mark.parametrize(("text", "words"), [
    ("[[model]]\nname = 'a'\n", "model 1 has no checkpoint"),
    ("models = 1\n", "unknown top-level key 'models'"),
    ("repository = 'r'\n", "lists no model"),
    ("[[model]]\n" + CNN + "repository = 'elsewhere'\n", "sets 'repository', which the project sets for every model"),
    ("[[model]]\n" + CNN + "version = 3\n", "sets 'version'"),
    ("[[model]]\nname = 'a'\n" + CNN + "[[model]]\nname = 'a'\n" + CNN, "two models are named 'a'"),
    ("[[model]]\ncheckpoint = 'c'\ninput = [{x = 1}]\n", "'input' has a dict value"),
    ("[[model]\n", "is not valid TOML"),
    ("deploy = 'yes'\n[[model]]\n" + CNN, "'deploy' must be a bool"),
])
def test_a_project_file_mistake_is_one_line_naming_it(tmp_path: Path, text: str, words: str):
    with pytest.raises(TritongenError, match=words):
        read_project(project(tmp_path, text))


def test_options_cannot_be_mixed_with_a_project_file(tmp_path: Path, cli):
    result = cli("build", "-f", project(tmp_path, "[[model]]\n" + CNN), "--max-batch-size", "2")
    assert result.exit_code == 2 and "--max-batch-size cannot be combined with -f" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_option_names_its_entry_before_anything_is_built(tmp_path: Path, cli):
    save_checkpoint(SmallCNN(), tmp_path / "cnn.pt")
    path = project(tmp_path, "[[model]]\nname = 'a'\n" + CNN + "[[model]]\nname = 'b'\n" + CNN + "max-batch = 2\n")
    result = cli("build", "-f", path)
    assert result.exit_code == 2 and "model 2 ('b'): No such option '--max-batch'" in result.stderr
    assert "Did you mean '--max-batch-size'?" in result.stderr
    assert not (tmp_path / "model_repository").exists()


@pytest.mark.slow
def test_a_failed_model_is_named_and_leaves_every_version_intact(tmp_path: Path, cli):
    save_checkpoint(SmallCNN(), tmp_path / "cnn.pt")
    good = "deploy = false\n[[model]]\nname = 'a'\n" + CNN + "[[model]]\nname = 'b'\n" + CNN
    assert cli("build", "-f", project(tmp_path, good)).exit_code == 0
    repository = tmp_path / "model_repository"
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (repository / "b").rglob("*") if p.is_file()}
    # Model 2's class cannot be imported: it fails while loading, after model 1 was built again.
    second = good.rsplit("model-class", 1)[0] + 'model-class = "tests.models:NoSuchNet"\ninput = ["image:3x32x32:fp32"]\n'
    result = cli("build", "-f", project(tmp_path, second), "--json")
    output = result.json()
    assert result.exit_code == 2 and not output["ok"]
    assert [m["model"] for m in output["models"]] == ["a"] and output["models"][0]["version"] == 2
    assert output["failed"][0]["name"] == "b" and "model 2 ('b'): " in output["failed"][0]["error"]
    assert sorted(p.name for p in (repository / "a").iterdir() if p.is_dir()) == ["1", "2"]
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (repository / "b").rglob("*") if p.is_file()}
    assert after == before  # b keeps its version 1, untouched; no version 2


@pytest.mark.slow
def test_three_pipelines_build_into_one_repository_in_one_command(pipeline_builds: PipelineBuilds):
    assert pipeline_builds.exit_code == 0 and pipeline_builds.output["ok"]
    assert [m["model"] for m in pipeline_builds.output["models"]] == ["sentiment", "embedder", "vision"]
    names = sorted(p.name for p in pipeline_builds.repository.iterdir())
    assert names == sorted(f"{n}{part}" for n in ("sentiment", "embedder", "vision")
                           for part in ("", "_model", "_preprocess", "_postprocess"))
    assert all((pipeline_builds.repository / n / "1" / "tritongen" / "manifest.json").is_file() for n in names)
    assert not (pipeline_builds.project.parent / "deploy").exists()  # deploy = false
