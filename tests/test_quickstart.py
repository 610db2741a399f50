"""The README's first command (examples/quickstart.sh), run as a user would: build, then validate on the embedded server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_quickstart_builds_and_validates(tmp_path):
    env = {**os.environ, "TRITONGEN_SKIP_INSTALL": "1", "TRITONGEN_EXAMPLE_OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "examples" / "quickstart.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Built tiny_resnet v1" in output and "Traceback" not in output
    assert (tmp_path / "model_repository" / "tiny_resnet" / "1" / "model.onnx").exists()
    assert (tmp_path / "model_repository" / "tiny_resnet_python" / "1" / "model.py").exists()
    assert (tmp_path / "deploy" / "docker-compose.yml").exists()
    assert "PASSED" in output
