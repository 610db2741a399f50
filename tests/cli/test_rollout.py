"""`tritongen serve --rollouts`, `tritongen rollout` and `tritongen rollback` as a user runs them: the key from the
environment, JSON reports, exit codes, one-line errors."""

from __future__ import annotations

import signal

import pytest

from tests.rollout.versions import MODEL, with_broken_version
from tests.servers import consecutive_free_ports, start_serve

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_serve_with_rollouts_then_rollout_and_rollback_commands(two_versions, tmp_path, cli, monkeypatch):
    repository = with_broken_version(two_versions, tmp_path / "model_repository", version=2)
    port = consecutive_free_ports()[0]
    process, info = start_serve(repository, "--rollouts", "--http-port", str(port), "--grpc-port", str(port + 1),
                                "--metrics-port", str(port + 2))
    try:
        assert info["rollouts"] and len(info["admin_key"]) > 16  # a new key, printed: none was given
        url = f"localhost:{port}"
        monkeypatch.setenv("TRITON_ADMIN_KEY", info["admin_key"])

        result = cli("rollout", MODEL, "--version", "1", "--url", url, "--repository", repository, "--json")
        assert result.exit_code == 0, result.stdout + result.stderr
        report = result.json()
        assert report["switched"] and report["from_version"] == 2 and report["to_version"] == 1

        result = cli("rollback", MODEL, "--url", url, "--repository", repository)  # back to 2: the broken one
        assert result.exit_code == 1 and "did not happen" in result.stdout and "version 1 still serves" in result.stdout
        assert "does not match" in result.stdout

        result = cli("rollout", MODEL, "--version", "9", "--url", url, "--repository", repository)
        assert result.exit_code == 2 and "Traceback" not in result.stderr
        assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
            f"error: model '{MODEL}' has no version 9 in {repository} (it has: 1, 2); build it first with `tritongen "
            "build`, or pick one of those versions"]

        monkeypatch.setenv("TRITON_ADMIN_KEY", "wrong-key-0123456789")
        result = cli("rollback", MODEL, "--url", url, "--repository", repository, "--to", "1")
        assert result.exit_code == 2 and "refused" in result.stderr and "Traceback" not in result.stderr
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
