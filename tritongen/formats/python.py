"""The `python` format: a python-backend model.py that runs the version's ONNX file with ONNX Runtime.

It serves on any Triton with the python backend, including the slim embedded one. The model reads names, dtypes,
batching and instance count from config.pbtxt at load time, so one template fits every model.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tritongen import __version__
from tritongen.errors import TritongenError
from tritongen.formats import Format, VersionJob, WrittenVersion
from tritongen.formats.onnx import ONNX_FILENAME, OnnxFormat, onnx_into_version_dir
from tritongen.spec import ModelSpec

MODEL_PY = "model.py"


def python_model_from_onnx(onnx_filename: str = ONNX_FILENAME, spec: ModelSpec | None = None) -> str:
    """The text of a model.py that serves `onnx_filename` from its own version directory."""
    from tritongen.render import render
    from tritongen.runners.onnxruntime import served_session_code

    # For the person who opens the file: what the model takes and returns, as built. Each line goes into a
    # comment, so control characters in a name are escaped (json.dumps without its quotes).
    interface = [] if spec is None else (
        [f"input  {t.describe()}" for t in spec.inputs] + [f"output {t.describe()}" for t in spec.outputs]
        + [f"max_batch_size {spec.max_batch_size}"])
    interface = [json.dumps(line, ensure_ascii=False)[1:-1] for line in interface]
    return render("model.py.j2", {"tritongen_version": __version__, "onnx_filename": onnx_filename,
                                  "interface": interface, "session_code": served_session_code()})


def write_python_model(version_dir: Path, spec: ModelSpec | None = None, *, onnx_filename: str = ONNX_FILENAME) -> Path:
    """Add model.py next to `version_dir/onnx_filename` (which must exist); returns the model.py path."""
    version_dir = Path(version_dir)
    if not (version_dir / onnx_filename).exists():
        raise TritongenError(f"{version_dir / onnx_filename} does not exist",
                             "write the ONNX file into the version directory before adding model.py")
    path = version_dir / MODEL_PY
    text = python_model_from_onnx(onnx_filename, spec)
    compile(text, str(path), "exec")  # a template bug fails here, not at server load time
    fd, tmp = tempfile.mkstemp(prefix=".model.py.", dir=version_dir)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


class PythonFormat(Format):
    name = "python"
    backend = "python"
    artifact = ONNX_FILENAME  # with model.py beside it
    serves_onnx = True

    def needs_calibration(self, precision: Any) -> bool:
        return OnnxFormat().needs_calibration(precision)

    def write_version(self, job: VersionJob) -> WrittenVersion:
        written = onnx_into_version_dir(job)
        write_python_model(job.version_dir, written.spec)
        return written

    def check_config(self, proto: Any, version_dir: Path, written: WrittenVersion) -> None:
        OnnxFormat().check_config(proto, version_dir, written)


FORMAT = PythonFormat()
