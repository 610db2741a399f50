"""The `python` format: a python-backend model.py that runs the version's ONNX file with ONNX Runtime.

It serves on any Triton with the python backend, including the slim embedded one. The model reads names, dtypes,
batching and instance count from config.pbtxt at load time, so one template fits every model.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jinja2

from tritongen import __version__
from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
MODEL_PY = "model.py"


def python_model_from_onnx(onnx_filename: str = "model.onnx", spec: ModelSpec | None = None) -> str:
    """The text of a model.py that serves `onnx_filename` from its own version directory."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    # For the person who opens the file: what the model takes and returns, as built.
    interface = [] if spec is None else (
        [f"input  {t.describe()}" for t in spec.inputs] + [f"output {t.describe()}" for t in spec.outputs]
        + [f"max_batch_size {spec.max_batch_size}"])
    from tritongen.runners.onnxruntime import served_session_code

    return env.get_template("model.py.j2").render(tritongen_version=__version__, onnx_filename=onnx_filename,
                                                  interface=interface, session_code=served_session_code())


def write_python_model(version_dir: Path, spec: ModelSpec | None = None, *, onnx_filename: str = "model.onnx") -> Path:
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
