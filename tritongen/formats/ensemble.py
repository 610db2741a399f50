"""The `ensemble` format: a pipeline's entry point, served by Triton's core (no backend, no file of its own).

Its config wires the pre-processing step, the network and the post-processing step with `ensemble_scheduling`
(tritongen.pipeline.config); its version folder holds only tritongen/ (manifest, reference data: the raw inputs and
the answers of transformers + PyTorch). Not a `--format` choice: `build --pipeline` writes it under the model name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError
from tritongen.formats import Format, VersionJob, WrittenVersion


class EnsembleFormat(Format):
    name = "ensemble"
    platform = "ensemble"
    artifact = ""  # an ensemble's version folder holds no model file

    def check_plan(self, plan: Any) -> None:
        if plan.pipeline is None:
            raise TritongenError("the ensemble format is a pipeline's entry point", "build it with --pipeline")

    def write_version(self, job: VersionJob) -> WrittenVersion:
        from tritongen.pipeline.config import ensemble_config_text

        check = job.checked_pipeline("ensemble")
        design = check.design
        return WrittenVersion(design.spec, check.report, manifest={"pipeline": {**design.to_dict(), "role": "ensemble"}},
                              facts=design, config_text=ensemble_config_text(design),
                              reference=check.references[design.name])

    def check_config(self, proto: Any, version_dir: Path, written: WrittenVersion) -> None:
        from tritongen.pipeline.config import check_ensemble_config

        check_ensemble_config(proto, written.facts)


FORMAT = EnsembleFormat()
