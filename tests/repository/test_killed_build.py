"""A killed `tritongen build` never breaks a real Triton deployment, and concurrent builds never clobber each other.

Real processes throughout: `tritongen build` subprocesses are killed mid-build (SIGKILL, and SIGTERM), then the
embedded tritonserver 2.51 is started on the repository as a deployment would start it (every model, strict
config, exit on any error).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests import models
from tests.conftest import REPO_ROOT, save_checkpoint
from tritongen.build import SCRATCH
from tritongen.checkpoint import sha256_of
from tritongen.repository import WORKSPACE_PREFIX, read_manifest, versions_of

pytestmark = pytest.mark.slow
BUILD_ARGS = ("--model-class", "tests.models:TwoInTwoOut", "--input", "x:4:fp32", "--input", "ids:2:int64:0-9",
              "--name", "two", "--no-deploy")


def build_process(checkpoint: Path, repository: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tritongen", "build", str(checkpoint), *BUILD_ARGS,
                             "--repository", str(repository), *extra],
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_mid_build(process: subprocess.Popen[str], home: Path, sig: signal.Signals) -> None:
    """Wait until the build has exported into its workspace, then send `sig` and wait for the process to end."""
    deadline = time.monotonic() + 240
    while not list(home.glob(f"{WORKSPACE_PREFIX}*/{SCRATCH}/export/model.onnx")):
        assert process.poll() is None, f"the build ended before it could be killed: {process.communicate()}"
        assert time.monotonic() < deadline, "the build never reached its export"
        time.sleep(0.05)
    process.send_signal(sig)
    process.communicate(timeout=60)


def serves(repository: Path, versions: list[int]) -> None:
    """A real tritonserver starts on the repository, strict and failing on any error, and serves these versions."""
    from tritongen.server import ServerFlags
    from tritongen.server.local import launch_local

    strict = ServerFlags(extra_args=("--exit-on-error=true", "--strict-model-config=true"))
    with launch_local(repository, flags=strict, timeout_s=120) as handle:
        for v in versions:
            url = f"http://{handle.http_url}/v2/models/two/versions/{v}/ready"
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200


@pytest.mark.server
def test_a_killed_build_leaves_a_repository_that_triton_serves(tmp_path, cli):
    checkpoint = save_checkpoint(models.TwoInTwoOut(), tmp_path / "two.pt")
    repository = tmp_path / "project" / "repo"
    first = cli("build", checkpoint, *BUILD_ARGS, "--format", "python", "--repository", repository)
    assert first.exit_code == 0, first.stderr
    for sig in (signal.SIGKILL, signal.SIGTERM):
        kill_mid_build(build_process(checkpoint, repository, "--format", "python"), tmp_path / "project", sig)
        # The repository holds what it held: no folder at its root but the model (a killed build's lock file is a
        # file, which Triton never looks at), and the model's folder is untouched.
        assert [p.name for p in repository.iterdir() if p.is_dir()] == ["two"]
        assert sorted(p.name for p in (repository / "two").iterdir()) == ["1", "config.pbtxt"]
        serves(repository, [1])
    # The next build removes what the killed ones left (only theirs), and installs version 2.
    result = cli("build", checkpoint, *BUILD_ARGS, "--format", "python", "--repository", repository, "--json")
    assert result.exit_code == 0, result.stderr
    assert any("left by a build that was killed" in w for w in result.json()["warnings"])
    assert not list((tmp_path / "project").glob(".tritongen-*")) and not list(repository.glob(".tritongen-*"))
    assert versions_of(repository / "two") == [1, 2]
    serves(repository, [2])


def test_two_concurrent_builds_end_with_versions_1_and_2_both_intact(tmp_path):
    checkpoint = save_checkpoint(models.TwoInTwoOut(), tmp_path / "two.pt")
    repository = tmp_path / "repo"
    builds = [build_process(checkpoint, repository), build_process(checkpoint, repository)]
    outputs = [b.communicate(timeout=600) for b in builds]
    assert [b.returncode for b in builds] == [0, 0], outputs
    assert versions_of(repository / "two") == [1, 2]
    for v in (1, 2):
        manifest = read_manifest(repository / "two" / str(v))
        assert manifest["version"] == v
        for name, digest in manifest["artifacts"].items():  # every file is the one its own build wrote
            assert sha256_of(repository / "two" / str(v) / name) == digest
    assert sum("another tritongen build of model 'two' is running" in err for _, err in outputs) == 1
    assert sorted(p.name for p in repository.iterdir()) == ["two"]
