"""FP16 conversion and INT8 quantization of an ONNX file, and the probe that loads the result, each in a child.

ONNX Runtime's tools change the state of the process that runs them (root-logger warnings, files dumped into the
current directory) and ONNX Runtime has crashed outright loading some FP16 graphs: everything here runs
`worker.py` in a child process from a scratch directory, so none of that reaches tritongen's process, and a
crash is a message rather than the end of the build.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import TritongenError
from tritongen.export.onnx import EXTERNAL_DATA_THRESHOLD  # one rule for when weights go to a .data file

WORKER_SCRIPT = Path(__file__).resolve().parent / "worker.py"
SESSIONS_MODULE = Path(__file__).resolve().parent.parent / "runners" / "sessions.py"
PROBE_TIMEOUT_S = 300
Feeds = dict[str, np.ndarray]


def fp16_from_onnx(source: Path, dest: Path, *, keep_io_types: bool = True,
                   op_block_list: Sequence[str] = ()) -> Path:
    """Convert `source` to FP16 at `dest`; ops ONNX Runtime's converter keeps in FP32 stay FP32 (with casts)."""
    _run_worker("fp16", source, dest, {"keep_io_types": keep_io_types, "op_block_list": list(op_block_list)},
                what="convert the model to FP16")
    return Path(dest).resolve()


def int8_static_from_onnx(source: Path, dest: Path, calibration: Sequence[Feeds], *, method: str = "minmax",
                          symmetric_activations: bool = False, reduce_range: bool = True) -> Path:
    """Static INT8 quantization in QDQ format with per-channel INT8 weights, calibrated on `calibration` feeds.

    `reduce_range` keeps weights in 7 bits, so no x86-64 CPU's INT8 kernels saturate (see PrecisionOptions).
    """
    _run_worker("int8_static", source, dest, {"method": method, "symmetric_activations": symmetric_activations,
                                              "reduce_range": reduce_range},
                feeds=calibration, what="quantize the model to INT8")
    return Path(dest).resolve()


def int8_dynamic_from_onnx(source: Path, dest: Path, *, reduce_range: bool = True) -> Path:
    """Dynamic INT8 quantization: INT8 weights (7-bit with `reduce_range`), activation scales computed per batch."""
    _run_worker("int8_dynamic", source, dest, {"reduce_range": reduce_range}, what="quantize the model to INT8")
    return Path(dest).resolve()


def probe_in_subprocess(path: Path, feeds: Feeds, *, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Load `path` in ONNX Runtime in a child process and run `feeds`; None when it works, else what went wrong.

    ONNX Runtime 1.32 segfaults while optimising some FP16 graphs (a transformer encoder here): a crash in a child
    process is a message, a crash in ours would be the end of the build.
    """
    try:
        _run_worker("probe", path, path, {}, feeds=[feeds], timeout_s=timeout_s, what="run the model")
    except TritongenError as exc:
        return exc.message
    return None


def _run_worker(kind: str, source: Path, dest: Path, options: dict[str, Any], *, what: str,
                feeds: Sequence[Feeds] = (), timeout_s: float | None = None) -> None:
    """Run one worker job from a scratch directory; a failure is a TritongenError with the worker's one line."""
    dest = Path(dest).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tritongen-precision-") as tmp:
        scratch = Path(tmp)
        files = []
        for i, f in enumerate(feeds):
            np.savez(scratch / f"feeds{i:04d}.npz", **f)
            files.append(str(scratch / f"feeds{i:04d}.npz"))
        job = {"kind": kind, "source": str(Path(source).resolve()), "dest": str(dest), "options": options,
               "feeds": files, "external_data": model_bytes(Path(source)) > EXTERNAL_DATA_THRESHOLD,
               "external_data_threshold": EXTERNAL_DATA_THRESHOLD, "sessions": str(SESSIONS_MODULE)}
        (scratch / "job.json").write_text(json.dumps(job))
        try:
            done = subprocess.run([sys.executable, str(WORKER_SCRIPT), str(scratch / "job.json")], cwd=scratch,
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TritongenError(f"ONNX Runtime did not {what} within {timeout_s:.0f}s",
                                 "try --precision fp32, or report the model") from None
    if done.returncode == 0:
        return
    if done.returncode < 0:
        raise TritongenError(f"ONNX Runtime crashed (signal {-done.returncode}) trying to {what}",
                             "try another --precision or --quantize mode")
    from tritongen.precision.worker import ERROR_PREFIX

    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    ours = [line[len(ERROR_PREFIX):] for line in lines if line.startswith(ERROR_PREFIX)]
    reason = ours[-1] if ours else (lines[-1][:300] if lines else f"exit code {done.returncode}")
    raise TritongenError(f"ONNX Runtime cannot {what}: {reason}", "try another --precision or --quantize mode",
                         details="\n".join(lines[-40:]))


def model_bytes(path: Path) -> int:
    """Size on disk of an ONNX model with its external data file, if any."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def model_files(path: Path) -> tuple[Path, ...]:
    """The ONNX file and its external data file, where there is one."""
    data = path.with_name(path.name + ".data")
    return (path, data) if data.exists() else (path,)
