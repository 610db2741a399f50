"""Repositories for the deployment tests (tests/kube, tests/cli/test_deploy.py, tests/cli/test_plan.py).

A CPU model, a GPU model, a pipeline (an ensemble with python-backend steps) and a multi-model repository, written
as config.pbtxt files of the shape `build` writes plus placeholder model files: a deployment reads nothing of a
repository but its configs and file sizes, and these need no export. (tests/kube/conftest.py's `cnn_repository` is
a real build, for the tests that serve it.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

CPU_CONFIG = """name: "cnn"
backend: "python"
max_batch_size: 32
version_policy: { latest: { num_versions: 1 } }
input { name: "image" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] }
output { name: "output" data_type: TYPE_FP32 dims: [ 10 ] }
instance_group [ { count: 1 kind: KIND_AUTO } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
"""
MODEL_FILE_BYTES = 3 * 2**20 - 2**16  # placeholder model.onnx (the memory estimate counts model files): with configs, 3 MiB

GPU_CONFIG = """name: "cnn_gpu"
platform: "onnxruntime_onnx"
max_batch_size: 32
input { name: "image" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] }
output { name: "output" data_type: TYPE_FP32 dims: [ 10 ] }
instance_group [ { count: 1 kind: KIND_GPU } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
"""
PREPROCESS_CONFIG = """name: "preprocess"
backend: "python"
max_batch_size: 32
input { name: "raw" data_type: TYPE_STRING dims: [ 1 ] }
output { name: "image" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] }
instance_group [ { count: 2 kind: KIND_CPU } ]
"""
POSTPROCESS_CONFIG = """name: "postprocess"
backend: "python"
max_batch_size: 32
input { name: "output" data_type: TYPE_FP32 dims: [ 10 ] }
output { name: "label" data_type: TYPE_STRING dims: [ 1 ] }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
ENSEMBLE_CONFIG = """name: "classify"
platform: "ensemble"
max_batch_size: 32
input { name: "raw" data_type: TYPE_STRING dims: [ 1 ] }
output { name: "label" data_type: TYPE_STRING dims: [ 1 ] }
ensemble_scheduling {
  step [
    { model_name: "preprocess" model_version: -1
      input_map { key: "raw" value: "raw" } output_map { key: "image" value: "image" } },
    { model_name: "cnn" model_version: -1
      input_map { key: "image" value: "image" } output_map { key: "output" value: "logits" } },
    { model_name: "postprocess" model_version: -1
      input_map { key: "output" value: "logits" } output_map { key: "label" value: "label" } }
  ]
}
"""


def _model(repository: Path, name: str, config: str, source: Path | None = None) -> None:
    folder = repository / name
    if source is not None:
        shutil.copytree(source, folder)
    else:
        (folder / "1").mkdir(parents=True)
        (folder / "1" / "model.py").write_text("# a step's code; the deployment only reads config.pbtxt\n")
    (folder / "config.pbtxt").write_text(config)


def write_repositories(root: Path) -> dict[str, Path]:
    """kind -> repository under `root`: cpu, gpu, pipeline, multi (CPU python models and a GPU ONNX model together)."""
    cpu = root / "cpu" / "model_repository"
    cnn = cpu / "cnn"
    (cnn / "1" / "tritongen").mkdir(parents=True)
    (cnn / "config.pbtxt").write_text(CPU_CONFIG)
    (cnn / "1" / "model.onnx").write_bytes(b"\0" * MODEL_FILE_BYTES)
    (cnn / "1" / "model.py").write_text("# the python runner; the deployment only reads config.pbtxt\n")
    (cnn / "1" / "tritongen" / "reference.npz").write_bytes(b"\0" * MODEL_FILE_BYTES)  # not loaded by Triton
    gpu = root / "gpu" / "model_repository"
    gpu.mkdir(parents=True)
    _model(gpu, "cnn_gpu", GPU_CONFIG, cnn)
    pipeline = root / "pipeline" / "model_repository"
    pipeline.mkdir(parents=True)
    shutil.copytree(cnn, pipeline / "cnn")
    _model(pipeline, "preprocess", PREPROCESS_CONFIG)
    _model(pipeline, "postprocess", POSTPROCESS_CONFIG)
    _model(pipeline, "classify", ENSEMBLE_CONFIG)
    multi = root / "multi" / "model_repository"
    shutil.copytree(pipeline, multi)
    _model(multi, "cnn_gpu", GPU_CONFIG, cnn)
    return {"cpu": cpu, "gpu": gpu, "pipeline": pipeline, "multi": multi}
