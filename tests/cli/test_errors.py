"""Every command ends in one line and a known exit code: 3 for an unexpected error, 130 for every interrupt."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import models
from tests.conftest import CNN_ARGS, save_checkpoint
from tritongen.cli.common import BUG_HINT

# (command line, module, function that fails): one library call each command makes.
COMMANDS = [
    (("build", "{ckpt}", *CNN_ARGS, "--repository", "{tmp}/repo"), "tritongen.build", "build_model"),
    (("validate", "{tmp}/repo"), "tritongen.validate", "validate_repository"),
    (("serve", "{tmp}/repo"), "tritongen.server", "serve"),
    (("bench", "cnn", "--repository", "{tmp}/repo"), "tritongen.bench", "bench_model"),
    (("tune", "cnn", "--repository", "{tmp}/repo"), "tritongen.tune", "tune_model"),
    (("image", "build"), "tritongen.image", "build_slim_image"),
]


def args_for(command: tuple[str, ...], tmp_path: Path, ckpt: Path) -> list[str]:
    return [a.format(tmp=tmp_path, ckpt=ckpt) for a in command]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("command, module, function", COMMANDS, ids=[c[0][0] for c in COMMANDS])
def test_an_unexpected_error_is_one_line_exit_3_and_json(tmp_path, cli, cnn_checkpoint, monkeypatch,
                                                         command, module, function):
    def fails(*args, **kwargs):
        raise RuntimeError("injected failure\nsecond line of the message")

    monkeypatch.setattr(importlib.import_module(module), function, fails)
    argv = args_for(command, tmp_path, cnn_checkpoint)
    result = cli(*argv)
    assert result.exit_code == 3, result.stderr
    (line,) = error_lines(result.stderr)
    assert "failed: RuntimeError: injected failure" in line and line.endswith(BUG_HINT)
    assert "Traceback" not in result.stderr and "second line" not in result.stderr
    as_json = cli(*argv, "--json")
    assert as_json.exit_code == 3
    payload = json.loads(as_json.stdout)
    assert payload["ok"] is False and payload["exception"] == "RuntimeError" and payload["hint"] == BUG_HINT
    assert payload["error"].endswith("failed: RuntimeError: injected failure")


def test_the_error_names_the_step_that_failed(tmp_path, cli, cnn_checkpoint, monkeypatch):
    import tritongen.build

    def export_fails(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(tritongen.build, "onnx_from_module", export_fails)
    result = cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", tmp_path / "repo", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["step"] == "exporting ONNX"
    (line,) = error_lines(result.stderr)
    assert line.startswith("error: exporting ONNX failed: OSError: disk on fire;")
    assert not (tmp_path / "repo").exists()  # nothing left behind: no workspace, no empty repository


def test_debug_shows_the_traceback(tmp_path, cli, monkeypatch):
    import tritongen.validate

    monkeypatch.setattr(tritongen.validate, "validate_repository", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli("validate", tmp_path, "--debug")


def test_ctrl_c_exits_130_and_json_still_says_so(tmp_path, cli, monkeypatch):
    import tritongen.validate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tritongen.validate, "validate_repository", interrupted)
    result = cli("validate", tmp_path, "--json")
    assert result.exit_code == 130
    assert json.loads(result.stdout) == {"ok": False, "error": "interrupted", "hint": None, "details": None}
    assert error_lines(result.stderr) == ["error: interrupted"]


def test_an_interrupt_turned_into_another_error_still_exits_130(tmp_path, cli, monkeypatch):
    import tritongen.build

    def torch_like(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
        raise AttributeError("'NoneType' object has no attribute 'graph'")  # what torch once raised instead

    monkeypatch.setattr(tritongen.build, "build_model", torch_like)
    before = signal.getsignal(signal.SIGINT)
    result = cli("build", tmp_path / "x.pt")
    assert result.exit_code == 130 and error_lines(result.stderr) == ["error: interrupted"]
    assert signal.getsignal(signal.SIGINT) is before  # the command put the previous handler back


def test_an_interrupt_swallowed_inside_a_step_stops_the_command_when_the_step_ends(tmp_path, cli, monkeypatch):
    import tritongen.build

    def swallows(options, step, warn):
        with step("exporting ONNX"):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt:
                pass  # and carries on, as a fallback to another exporter would
        raise AssertionError("the build went on after an interrupt")

    monkeypatch.setattr(tritongen.build, "build_model", swallows)
    result = cli("build", tmp_path / "x.pt")
    assert result.exit_code == 130, result.stderr


def test_sigterm_unwinds_like_ctrl_c(tmp_path, cli, monkeypatch):
    import tritongen.build

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(tritongen.build, "build_model", terminated)
    before = signal.getsignal(signal.SIGTERM)
    result = cli("build", tmp_path / "x.pt")
    assert result.exit_code == 130
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow
def test_ctrl_c_during_export_always_exits_130_and_installs_nothing(tmp_path):
    ckpt = save_checkpoint(models.TinyEncoder(), tmp_path / "enc.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                         os.environ.get("PYTHONPATH", "")])}
    outcomes = []
    for delay in (0.0, 0.4, 1.0, 2.0):
        repo = tmp_path / f"repo-{delay}"
        process = subprocess.Popen(
            [sys.executable, "-m", "tritongen", "build", str(ckpt), "--model-class", "tests.models:TinyEncoder",
             "--input", "tokens:seq:int64", "--input", "mask:seq:int64", "--repository", str(repo), "--no-deploy"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert process.stderr is not None
            for line in process.stderr:  # the export starts right after this line
                if "loading checkpoint" in line:
                    break
            time.sleep(delay)
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        left = sorted(p.name for p in repo.iterdir()) if repo.exists() else []
        outcomes.append((delay, process.returncode, left, stderr.strip()[-200:]))
    assert [(d, code, left) for d, code, left, _ in outcomes] == [(d, 130, []) for d, *_ in outcomes], outcomes


def test_an_error_message_with_brackets_prints_as_written(tmp_path, cli):
    # Paths and names are the user's data: "[/x]" in them is not console markup (it used to end in a traceback).
    missing = tmp_path / "runs[/best]" / "model.pt"
    result = cli("build", missing, "--input", "x:4:fp32")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert "runs[/best]" in line


def test_ctrl_c_while_the_commands_are_imported_ends_quietly():
    # The console script's entry point: an interrupt before any command runs still gives one line and exit 130.
    code = ("import signal, sys, builtins\n"
            "real = builtins.__import__\n"
            "def interrupted(name, *a, **k):\n"
            "    if name == 'tritongen.cli':\n"
            "        raise KeyboardInterrupt\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = interrupted\n"
            "sys.argv = ['tritongen', '--help']\n"
            "from tritongen.entry import run\n"
            "run()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130 and result.stderr == "error: interrupted\n", result.stderr


def hf_folder(tmp_path: Path, weights: bool = True) -> Path:
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    if weights:
        (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_an_unexpected_error_loading_a_hugging_face_folder_is_one_line_exit_3(tmp_path, cli, monkeypatch):
    import tritongen.sources.hf

    def fails(*args, **kwargs):
        raise RuntimeError("injected failure in transformers")

    monkeypatch.setattr(tritongen.sources.hf, "load_hf_model", fails)
    result = cli("build", hf_folder(tmp_path), "--repository", tmp_path / "repo", "--no-deploy", "--json")
    assert result.exit_code == 3 and "Traceback" not in result.stderr
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and payload["step"] == "loading checkpoint"
    (line,) = error_lines(result.stderr)
    assert line.startswith("error: loading checkpoint failed: RuntimeError: injected failure in transformers;")


def test_an_incomplete_hugging_face_folder_is_one_line_exit_2(tmp_path, cli):
    result = cli("build", hf_folder(tmp_path, weights=False), "--repository", tmp_path / "repo", "--json")
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert "has config.json but no weights" in payload["error"] and "never downloads" in payload["hint"]
    assert not (tmp_path / "repo").exists()
