"""Helpers for tests that start a real tritonserver: repositories built by `build`, and the processes left behind.

Repositories are built once per test session into pytest's base temp directory (a directory per recipe), so
several test modules share them without module-level state.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests import models
from tests.conftest import save_checkpoint
from tritongen.server.local import free_ports

TWO_INPUTS = ("x:4:fp32", "ids:2:int64:0-9")
ENCODER_INPUTS = ("tokens:seq:int64:0-49", "mask:seq:int64:0-1")
TENSORRT_CONFIG = """name: "plan"
platform: "tensorrt_plan"
max_batch_size: 8
input { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }
output { name: "y" data_type: TYPE_FP32 dims: [ 4 ] }
"""


class ScaledSum(torch.nn.Module):
    """A per-item scalar in and out: x:4:fp32, scale::fp32 -> sum(linear(x)) * scale, one value per item."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.linear(x).sum(-1) * scale


def built_repository(factory: pytest.TempPathFactory, recipe: str) -> Path:
    """A repository built by `tritongen.build.build_model`, once per session per recipe.

    - "two": TwoInTwoOut (x:4:fp32, ids:2:int64) as `two` (onnx) and `two_python` (python); ScaledSum as
      `scaled` (onnx), whose per-item scalars are written `dims: [1]` with `reshape: []`.
    - "encoder": TinyEncoder (tokens, mask over a dynamic `seq` axis) as `enc` (python, 2 instances).
    - "cnn": SmallCNN (image:3x32x32, onnx, max batch 32) as `cnn` and FullyConv (image:3xHxW, python format, max
      batch 8) as `fcn`: what bench and tune measure.
    """
    from tritongen.build import BuildOptions, build_model

    root = factory.getbasetemp() / f"built-{recipe}"
    repository = root / "repository"
    if repository.is_dir():
        return repository
    work = Path(str(root) + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    if recipe == "two":
        checkpoint = save_checkpoint(models.TwoInTwoOut(), work / "two.pt")
        build_model(BuildOptions(checkpoint, name="two", model_class="tests.models:TwoInTwoOut", inputs=TWO_INPUTS,
                                 formats=("onnx", "python"), repository=work / "repository", deploy=False))
        checkpoint = save_checkpoint(ScaledSum(), work / "scaled.pt")
        options = BuildOptions(checkpoint, name="scaled", model_class="tests.servers:ScaledSum",
                               inputs=("x:4:fp32", "scale::fp32"), repository=work / "repository", deploy=False)
    elif recipe == "encoder":
        checkpoint = save_checkpoint(models.TinyEncoder(), work / "enc.pt")
        options = BuildOptions(checkpoint, name="enc", model_class="tests.models:TinyEncoder", inputs=ENCODER_INPUTS,
                               formats=("python",), instances=2, max_queue_delay_us=2000,
                               repository=work / "repository", deploy=False)
    elif recipe == "cnn":
        checkpoint = save_checkpoint(models.SmallCNN(), work / "cnn.pt")
        build_model(BuildOptions(checkpoint, name="cnn", model_class="tests.models:SmallCNN",
                                 inputs=("image:3x32x32:fp32",), repository=work / "repository", deploy=False))
        checkpoint = save_checkpoint(models.FullyConv(), work / "fcn.pt")
        options = BuildOptions(checkpoint, name="fcn", model_class="tests.models:FullyConv", inputs=("image:3xHxW:fp32",),
                               formats=("python",), max_batch_size=8, repository=work / "repository", deploy=False)
    else:
        raise ValueError(recipe)
    build_model(options)
    os.rename(work, root)  # whole or not at all: a failed build is not mistaken for a cached one
    return repository


CNN_SPEC_ARGS = {"cnn": ("image:3x32x32:fp32", "output:10:fp32", 32, "onnx"),
                 "fcn": ("image:3xHxW:fp32", "output:1xHxW:fp32", 8, "python")}


def configs_only_repository(path: Path) -> Path:
    """The `cnn` recipe's configs as `build` renders them, without exporting anything: no version folders, so no
    ONNX file. For option checks that fail before a server starts or a file is read."""
    from tritongen.config import ModelConfig, render_config
    from tritongen.spec import ModelSpec, parse_input_spec

    for name, (given, returned, max_batch, fmt) in CNN_SPEC_ARGS.items():
        spec = ModelSpec((parse_input_spec(given),), (parse_input_spec(returned),), max_batch)
        (path / name).mkdir(parents=True)
        (path / name / "config.pbtxt").write_text(render_config(ModelConfig(name, spec, format=fmt)))
    return path


def copy_repository(source: Path, dest: Path, models_to_keep: tuple[str, ...] | None = None) -> Path:
    """A private copy of (some models of) a shared repository, for tests that change files."""
    dest.mkdir(parents=True)
    for model in sorted(p for p in source.iterdir() if (p / "config.pbtxt").exists()):
        if models_to_keep is None or model.name in models_to_keep:
            shutil.copytree(model, dest / model.name)
    return dest


def as_if_built(version_dir: Path) -> None:
    """Record the version's files, as they are now, in its manifest: as if `build` had written them so (for tests of
    what a server does with a bad file that got past the build)."""
    from tritongen.checkpoint import sha256_of
    from tritongen.repository import read_manifest, write_manifest

    manifest = read_manifest(version_dir)
    manifest["artifacts"] = {p.relative_to(version_dir).as_posix(): sha256_of(p) for p in sorted(version_dir.rglob("*"))
                             if p.is_file() and p.relative_to(version_dir).parts[0] != "tritongen"}
    write_manifest(version_dir, manifest)


def add_tensorrt_model(repository: Path) -> None:
    """A TensorRT model config (no plan: the embedded server must skip it without trying to load it)."""
    (repository / "plan" / "1").mkdir(parents=True)
    (repository / "plan" / "config.pbtxt").write_text(TENSORRT_CONFIG)


def consecutive_free_ports(count: int = 3) -> tuple[int, ...]:
    """Free ports p, p+1, ...: a server there is found by `--server localhost:p` (gRPC on p+1, as Triton's defaults)."""
    for _ in range(100):
        (first,) = free_ports(1)
        ports = tuple(range(first, first + count))
        sockets = []
        try:
            for port in ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return ports
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no run of free ports found")


def children(pid: int, name: str | None = None) -> list[int]:
    """Live child processes of `pid` (optionally only those whose command name starts with `name`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        state, ppid = fields[0], int(fields[1])
        if ppid == pid and state != "Z" and (name is None or comm.startswith(name)):
            found.append(int(entry.name))
    return found


def tritonserver_pids() -> list[int]:
    """tritonserver processes this test process started and that are still running."""
    return children(os.getpid(), "tritonserver")


def group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (a server and its python backend stubs)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def wait_until_gone(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    """The pids still alive after waiting up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
        if alive:
            time.sleep(0.1)
    return alive


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return stat[stat.rindex(")") + 2:].split()[0]


def processes_of_run(owner: int) -> list[int]:
    """Live tritonserver and python backend stub processes started for tritongen process `owner` (their command
    lines name its shared memory, `tritongen_<owner>_...`), whoever their parent is now."""
    marker = f"tritongen_{owner}_".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes() and _state(int(entry.name)) != "Z":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def shared_memory_of_run(owner: int) -> list[Path]:
    return list(Path("/dev/shm").glob(f"tritongen_{owner}_*"))


def start_serve(repository: Path, *args: str, sigint_ignored: bool = False) -> tuple[subprocess.Popen, dict]:
    """`tritongen serve REPOSITORY ARGS --json` in a subprocess, once it printed its one JSON object (the server is
    ready): (the process, that object). The caller stops it (SIGINT) and kills it if it is still running."""
    process = subprocess.Popen([sys.executable, "-m", "tritongen", "serve", str(repository), *args, "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored
                               else None)
    lines = []
    for line in process.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if line.rstrip() == "}":
            break
    try:
        return process, json.loads("".join(lines))
    except ValueError:
        process.kill()
        process.wait()
        raise AssertionError(f"serve printed no JSON object: {''.join(lines)}{process.stderr.read()}") from None
