"""The `preprocess` and `postprocess` formats: a pipeline's python steps (model.py with the step's code as it is,
step.json, the tokenizer), their configs, and what their manifests record for the deployment."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.pipeline.designs import toy_design
from tritongen import formats
from tritongen.config import parse_config
from tritongen.errors import TritongenError
from tritongen.formats import VersionJob
from tritongen.formats.steps import step_model_py
from tritongen.pipeline.parity import PipelineCheck
from tritongen.pipeline.requirements import python_requirements
from tritongen.pipeline.runners import write_step_files
from tritongen.pipeline.steps import source_of
from tritongen.verify import ParityReport


def check_of(tmp_path: Path) -> PipelineCheck:
    design = toy_design()
    folders = {s.role: write_step_files(s, tmp_path / "steps" / s.role) for s in (design.preprocess, design.postprocess)}
    references = {m: ({"x": None}, {"y": None}) for m in design.models}
    return PipelineCheck(design, folders, ParityReport("steps vs transformers", 1e-4, 1e-3, ()), references)


def job(tmp_path: Path, check: PipelineCheck | None, model: str) -> VersionJob:
    version_dir = tmp_path / model / "1"
    version_dir.mkdir(parents=True)
    return VersionJob(SimpleNamespace(pipeline=object()), model, SimpleNamespace(pipeline=check), version_dir,
                      tmp_path / "work", lambda _d: None, lambda _m: None)


@pytest.mark.parametrize("role", ["preprocess", "postprocess"])
def test_a_step_version_holds_its_code_its_settings_and_records_its_requirements(tmp_path: Path, role: str):
    check = check_of(tmp_path)
    step = getattr(check.design, role)
    fmt = formats.get(role)
    written = fmt.write_version(job(tmp_path, check, step.model))
    version_dir = tmp_path / step.model / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == sorted(["model.py", "step.json", *step.files])
    model_py = (version_dir / "model.py").read_text()
    assert source_of(step.code) in model_py  # the code parity ran, as it is
    assert f"self.step = {step.step_class}.from_folder(" in model_py
    assert written.manifest["python_requirements"] == python_requirements(step.code)
    assert written.manifest["pipeline"]["role"] == role and written.manifest["pipeline"]["ensemble"] == "toy"
    assert written.reference == check.references[step.model]
    fmt.check_config(parse_config(written.config_text), version_dir, written)
    (version_dir / "step.json").unlink()
    with pytest.raises(TritongenError, match="lacks step.json"):
        fmt.check_config(parse_config(written.config_text), version_dir, written)


def test_step_formats_are_pipeline_parts_not_format_choices():
    assert set(formats.PIPELINE_PARTS) == {"preprocess", "postprocess", "ensemble"}
    assert not set(formats.PIPELINE_PARTS) & set(formats.NAMES)
    assert formats.get("preprocess").backend == "python" and formats.get("postprocess").artifact == "model.py"
    with pytest.raises(TritongenError, match="build it with --pipeline"):
        formats.get("preprocess").check_plan(SimpleNamespace(pipeline=None))


def test_every_step_model_py_compiles_for_python_3_10_and_names_its_requirements():
    import ast

    for step in (toy_design().preprocess, toy_design().postprocess):
        text = step_model_py(step, ["numpy==1.26.4"])
        ast.parse(text, feature_version=(3, 10))  # NVIDIA's Triton images run the python backend on 3.10
        assert "numpy==1.26.4" in text
