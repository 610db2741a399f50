"""One TensorRT plan to build (`PlanJob`), and the job directory the builder script reads (mounted as is)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import TritongenError
from tritongen.formats.tensorrt.builder import BUILDER_SCRIPT, PLAN_FILENAME, TensorRTOptions
from tritongen.formats.tensorrt.profiles import DynamicRange, ShapeRange
from tritongen.spec import ModelSpec

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class PlanJob:
    """A plan to build from the FP32 ONNX file, and how far from PyTorch it may be; None means the default."""

    onnx_files: tuple[Path, ...]  # model.onnx, and its external data file where there is one
    spec: ModelSpec
    options: TensorRTOptions = field(default_factory=TensorRTOptions)
    precision: str = "fp32"  # fp32 | fp16 | int8
    ranges: Mapping[str, DynamicRange] = field(default_factory=dict)  # --dynamic-range, parsed
    preferred_batch_sizes: tuple[int, ...] = ()
    calibration: Sequence[Feeds] | None = None  # int8: TensorRT calibrates the engine on these
    fp16_io: bool = False
    atol: float | None = None
    rtol: float | None = None
    accept_fidelity: bool = False

    @property
    def where(self) -> str:
        return f"in {self.options.image}" if self.options.image else "in-process"


def write_job(work: Path, job: PlanJob, profile: Mapping[str, ShapeRange], parity_feeds: Sequence[Feeds],
              timing_cache: Path | None) -> Path:
    """Lay out everything the builder script needs in `work` (mounted as is into the container); returns job.json."""
    work.mkdir(parents=True, exist_ok=True)
    for f in job.onnx_files:
        shutil.copy2(f, work / Path(f).name)
    shutil.copy2(BUILDER_SCRIPT, work / BUILDER_SCRIPT.name)
    spec: dict[str, Any] = {
        "onnx": "model.onnx", "plan": PLAN_FILENAME, "metadata": "engine.json", "precision": job.precision,
        "fp16_io": job.fp16_io,
        "workspace_bytes": int(job.options.workspace_mb) * (1 << 20),
        "builder_optimization_level": job.options.builder_optimization_level,
        "profile": {name: r.to_dict() for name, r in profile.items()},
        "calibration": None, "timing_cache": None, "parity": None,
    }
    if job.precision == "int8":
        if not job.calibration:
            raise TritongenError("--format tensorrt --precision int8 needs calibration data: TensorRT calibrates "
                                 "the engine itself", "pass --calibration-data FILE.npz (or --calibration random "
                                 "for a test build)")
        shapes = {k: list(v.shape) for k, v in job.calibration[0].items()}
        files = []
        (work / "calibration").mkdir(exist_ok=True)
        for i, feeds in enumerate(job.calibration):
            if {k: list(v.shape) for k, v in feeds.items()} != shapes:
                continue  # TensorRT calibrates at one shape (the calibration profile's)
            np.savez(work / "calibration" / f"{i:04d}.npz", **feeds)
            files.append(f"calibration/{i:04d}.npz")
        spec["calibration"] = {"files": files, "cache": "calibration.cache", "shapes": shapes}
    if timing_cache is not None:
        # The script reads and writes the cache inside the job directory; the host copies it in and out.
        if timing_cache.exists():
            shutil.copy2(timing_cache, work / "timing.cache")
        spec["timing_cache"] = "timing.cache"
    (work / "parity").mkdir(exist_ok=True)
    inputs, outputs = [], []
    for i, feeds in enumerate(parity_feeds):
        np.savez(work / "parity" / f"in{i:03d}.npz", **feeds)
        inputs.append(f"parity/in{i:03d}.npz")
        outputs.append(f"parity/out{i:03d}.npz")
    spec["parity"] = {"inputs": inputs, "outputs": outputs}
    path = work / "job.json"
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path
