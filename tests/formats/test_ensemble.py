"""The `ensemble` format: a pipeline's entry point, an empty version folder and a config that wires the steps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.formats.test_steps import check_of, job
from tritongen import formats
from tritongen.config import parse_config
from tritongen.errors import TritongenError


def test_the_ensemble_writes_no_file_and_a_config_checked_against_the_design(tmp_path: Path):
    check = check_of(tmp_path)
    fmt = formats.get("ensemble")
    written = fmt.write_version(job(tmp_path, check, "toy"))
    assert list((tmp_path / "toy" / "1").iterdir()) == [] and fmt.platform == "ensemble" and not fmt.artifact
    proto = parse_config(written.config_text)
    fmt.check_config(proto, tmp_path / "toy" / "1", written)
    assert written.spec == check.design.spec and written.manifest["pipeline"]["role"] == "ensemble"
    proto.ensemble_scheduling.step[1].input_map["attention_mask"] = "no_such_tensor"
    with pytest.raises(TritongenError, match="reads 'no_such_tensor' before any step makes it"):
        fmt.check_config(proto, tmp_path / "toy" / "1", written)


def test_without_a_checked_pipeline_the_ensemble_is_refused(tmp_path: Path):
    with pytest.raises(TritongenError, match="build it with --pipeline"):
        formats.get("ensemble").check_plan(SimpleNamespace(pipeline=None))
    with pytest.raises(TritongenError, match="has no checked pipeline"):
        formats.get("ensemble").write_version(job(tmp_path, None, "toy"))
