"""The `preprocess` and `postprocess` formats: a pipeline's python-backend steps (see tritongen.pipeline).

A step's version folder holds model.py (templates/pipeline_step.py.j2 with the step's code from
tritongen/pipeline/steps/ as it is), step.json (its settings) and its other files (the tokenizer). They are not
`--format` choices: `build --pipeline` writes them beside the network and the ensemble.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tritongen import __version__
from tritongen.errors import TritongenError
from tritongen.formats import Format, VersionJob, WrittenVersion
from tritongen.repository import write_text_atomic

MODEL_PY = "model.py"


def step_model_py(step: Any, requirements: list[str]) -> str:
    """The text of a step's model.py (`step`: a tritongen.pipeline.design.StepDesign)."""
    from tritongen.pipeline.design import STEP_FILE
    from tritongen.pipeline.steps import source_of
    from tritongen.render import render

    text = render("pipeline_step.py.j2", {
        "tritongen_version": __version__, "role": step.role, "code": step.code, "step_code": source_of(step.code),
        "step_class": step.step_class, "step_file": STEP_FILE, "requirements": requirements})
    compile(text, MODEL_PY, "exec")  # a template bug fails here, not at server load time
    return text


class StepFormat(Format):
    backend = "python"
    artifact = MODEL_PY  # with step.json (and the tokenizer) beside it

    def __init__(self, role: str) -> None:
        self.name = self.role = role

    def check_plan(self, plan: Any) -> None:
        if plan.pipeline is None:
            raise TritongenError(f"the {self.role} format is a step of a pipeline", "build it with --pipeline")

    def write_version(self, job: VersionJob) -> WrittenVersion:
        from tritongen.pipeline.config import step_config_text
        from tritongen.pipeline.requirements import python_requirements

        check = job.checked_pipeline(f"{self.role} step")
        design = check.design
        step = design.preprocess if self.role == "preprocess" else design.postprocess
        for path in sorted(check.folders[self.role].iterdir()):
            shutil.copy2(path, job.version_dir / path.name)
        requirements = python_requirements(step.code)
        write_text_atomic(job.version_dir / MODEL_PY, step_model_py(step, requirements))
        return WrittenVersion(step.spec, check.report,
                              manifest={"pipeline": {**design.to_dict(), "role": self.role, "code": step.code},
                                        "python_requirements": requirements},
                              facts=step, config_text=step_config_text(design, step),
                              reference=check.references[step.model])

    def check_config(self, proto: Any, version_dir: Path, written: WrittenVersion) -> None:
        from tritongen.pipeline.config import check_step_config
        from tritongen.pipeline.design import STEP_FILE

        check_step_config(proto, written.facts)
        missing = [n for n in (MODEL_PY, STEP_FILE, *written.facts.files) if not (version_dir / n).is_file()]
        if missing:
            raise TritongenError(f"internal error: {version_dir} lacks {', '.join(missing)}",
                                 "please report this with the command line")


PREPROCESS = StepFormat("preprocess")
POSTPROCESS = StepFormat("postprocess")
