"""Staging for a server with fewer backends: ONNX through the python runner, the rest skipped, the original untouched."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tritongen.config import read_config
from tritongen.errors import TritongenError
from tritongen.server.stage import (
    PYTHON_RUNNER,
    select_models,
    stage_repository,
    staged_repository,
    verify_model,
)

ONNX_CONFIG = """name: "clf"
platform: "onnxruntime_onnx"
max_batch_size: 16
input { name: "image" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }
output { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] }
instance_group { count: 2 kind: KIND_CPU }
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 500 }
model_warmup { name: "w" batch_size: 1 inputs { key: "image" value { data_type: TYPE_FP32 dims: [ 3, 8, 8 ]
  zero_data: true } } }
parameters { key: "intra_op_num_threads" value { string_value: "1" } }
"""


def write_model(repository: Path, name: str, config: str, files: dict[str, bytes], version: int = 1) -> Path:
    """A model version as `build` writes it: its files, and a manifest listing each with its sha256."""
    version_dir = repository / name / str(version)
    version_dir.mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(config)
    for filename, data in files.items():
        (version_dir / filename).parent.mkdir(parents=True, exist_ok=True)
        (version_dir / filename).write_bytes(data)
    artifacts = {k: hashlib.sha256(v).hexdigest() for k, v in files.items() if not k.startswith("tritongen/")}
    (version_dir / "tritongen").mkdir(exist_ok=True)
    manifest = {"artifacts": artifacts, **({"format": "ensemble"} if 'platform: "ensemble"' in config else {})}
    (version_dir / "tritongen" / "manifest.json").write_text(json.dumps(manifest))
    return version_dir


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    write_model(repo, "clf", ONNX_CONFIG, {"model.onnx": b"graph", "model.onnx.data": b"weights",
                                           "tritongen/reference.npz": b"ref"})
    write_model(repo, "py", ONNX_CONFIG.replace('platform: "onnxruntime_onnx"', 'backend: "python"'),
                {"model.py": b"# runs", "model.onnx": b"graph"})
    write_model(repo, "plan", 'platform: "tensorrt_plan" max_batch_size: 8', {"model.plan": b"engine"})
    (repo / ".tritongen-build-tmp").mkdir()  # a build in progress is not a model
    return repo


def test_onnx_models_get_the_python_runner_with_an_otherwise_identical_config(repository: Path, tmp_path: Path) -> None:
    staged = stage_repository(repository, tmp_path / "staged", backends={"python"})
    assert staged.model("clf").served_by == PYTHON_RUNNER and staged.model("clf").onnx_filename == "model.onnx"
    original, served = read_config(repository / "clf"), read_config(staged.path / "clf")
    assert (served.platform, served.backend) == ("", "python")
    served.backend, served.platform = original.backend, original.platform
    assert served == original  # dims, batching, instances, warmup, parameters: as written
    version = staged.path / "clf" / "1"
    assert (version / "model.py").is_file() and not (version / "model.py").is_symlink()
    for name in ("model.onnx", "model.onnx.data", "tritongen"):  # linked, not copied
        assert (version / name).is_symlink() and (version / name).resolve() == (repository / "clf" / "1" / name)
    assert not (repository / "clf" / "1" / "model.py").exists()


def test_models_the_server_has_a_backend_for_are_linked_as_they_are(repository: Path, tmp_path: Path) -> None:
    staged = stage_repository(repository, tmp_path / "staged", backends={"python"})
    assert staged.model("py").served_by == "python backend"
    assert (staged.path / "py" / "config.pbtxt").resolve() == repository / "py" / "config.pbtxt"


def test_models_without_a_backend_are_skipped_with_the_reason(repository: Path, tmp_path: Path) -> None:
    staged = stage_repository(repository, tmp_path / "staged", backends={"python"})
    plan = staged.model("plan")
    assert plan.served_by is None and "needs the tensorrt backend" in plan.skipped_reason
    assert not (staged.path / "plan").exists()  # so the server does not fail trying to load it
    assert staged.served == ["clf", "py"]


def test_a_server_with_onnxruntime_serves_onnx_models_as_written(repository: Path, tmp_path: Path) -> None:
    staged = stage_repository(repository, tmp_path / "staged", backends={"python", "onnxruntime"})
    assert staged.model("clf").served_by == "onnxruntime backend"
    assert read_config(staged.path / "clf").platform == "onnxruntime_onnx"


def test_errors_name_the_users_files_not_the_staged_links(repository: Path) -> None:
    with pytest.raises(TritongenError) as info, staged_repository(repository, backends={"python"}) as staged:
        with staged.naming_original_paths():
            raise TritongenError(f"cannot load {staged.path}/clf/1/model.onnx", None, details=f"{staged.path}/x")
    assert info.value.message == f"cannot load {repository.resolve()}/clf/1/model.onnx"
    assert "tritongen-stage-" not in (info.value.details or "")


def test_model_selection_checks_names(repository: Path) -> None:
    assert select_models(repository, None) == ["clf", "plan", "py"]
    with pytest.raises(TritongenError, match="model 'nope' is not in .* \\(it has: clf, plan, py\\)"):
        select_models(repository, ["nope"])


def test_a_config_that_does_not_parse_names_its_file(repository: Path) -> None:
    (repository / "py" / "config.pbtxt").write_text("max_batch_sise: 3")
    with pytest.raises(TritongenError, match="py/config.pbtxt is not a valid Triton model config"):
        read_config(repository / "py")


def test_a_planted_model_py_next_to_an_onnx_model_is_never_linked(repository: Path, tmp_path: Path) -> None:
    (repository / "clf" / "1" / "model.py").write_text("open('/tmp/pwned', 'w')\n")
    staged = stage_repository(repository, tmp_path / "staged", backends={"python"})
    clf = staged.model("clf")
    assert clf.served_by is None and "clf/1/model.py was not written by the build" in clf.problems[0]
    assert not (staged.path / "clf").exists()


def test_a_python_model_whose_files_changed_after_the_build_is_refused(repository: Path, tmp_path: Path) -> None:
    (repository / "py" / "1" / "model.py").write_text("# edited\n")
    (repository / "py" / "1" / "model.onnx").unlink()
    py = stage_repository(repository, tmp_path / "staged", backends={"python"}).model("py")
    assert py.served_by is None and not (tmp_path / "staged" / "py").exists()
    assert [p.rsplit("/", 2)[-1] for p in py.problems] == ["model.onnx is missing",
                                                          "model.py changed after the build (its sha256 is not the "
                                                          "one in the manifest)"]


def test_only_the_served_versions_and_the_files_the_manifest_lists_are_staged(repository: Path, tmp_path: Path) -> None:
    write_model(repository, "py", (repository / "py" / "config.pbtxt").read_text(),
                {"model.py": b"# v2", "model.onnx": b"graph2"}, version=2)
    (repository / "py" / "config.pbtxt.bak-1").write_text("old")
    (repository / "py" / "1" / "__pycache__").mkdir()  # Python's, next to an imported model.py: not the build's
    staged = stage_repository(repository, tmp_path / "staged", backends={"python"})
    assert staged.model("py").served_by == "python backend"
    assert sorted(p.name for p in (staged.path / "py").iterdir()) == ["2", "config.pbtxt"]
    assert sorted(p.name for p in (staged.path / "py" / "2").iterdir()) == ["model.onnx", "model.py", "tritongen"]


def test_the_staging_folder_is_named_after_its_owner(repository: Path) -> None:
    with staged_repository(repository, backends={"python"}) as staged:
        assert staged.path.parent.name.startswith(f"tritongen-stage-{os.getpid()}-")
    assert not staged.path.exists()


ENSEMBLE_CONFIG = """name: "pipe"
platform: "ensemble"
max_batch_size: 4
input { name: "text" data_type: TYPE_STRING dims: [ 1 ] }
output { name: "y" data_type: TYPE_FP32 dims: [ 10 ] }
ensemble_scheduling { step { model_name: "py" model_version: -1 input_map { key: "image" value: "text" }
  output_map { key: "logits" value: "y" } } }
"""


def test_an_ensemble_asked_for_brings_the_models_its_steps_run(repository: Path, tmp_path: Path) -> None:
    write_model(repository, "pipe", ENSEMBLE_CONFIG, {})
    assert select_models(repository, ["pipe"]) == ["pipe", "py"]
    staged = stage_repository(repository, tmp_path / "staged", backends={"python"}, models=["pipe"])
    assert staged.served == ["pipe", "py"] and staged.model("pipe").served_by == "ensemble backend"
    assert verify_model(repository / "pipe", read_config(repository / "pipe")) == []  # no files, and none expected
    (repository / "pipe" / "1" / "model.py").write_text("import os")
    assert verify_model(repository / "pipe", read_config(repository / "pipe")) == \
        [f"{repository / 'pipe' / '1' / 'model.py'} was not written by the build"]
    write_model(repository, "broken", ENSEMBLE_CONFIG.replace('"py"', '"gone"').replace('"pipe"', '"broken"'), {})
    with pytest.raises(TritongenError, match="the ensemble 'broken' runs model 'gone', which is not in"):
        select_models(repository, ["broken"])
