"""The deployable formats, one module each, behind one interface; `get(name)` finds one by its `--format` name.

A format owns what differs between them: the platform or backend Triton loads it with, the file a version holds,
how it writes a version from the exported model, and how its config is checked against that file. `build` runs the
shared steps (load, export, parity, reference data, config, manifest, install) and asks each format for the rest.
Adding a format is adding one module that defines `FORMAT` and naming it in `_MODULES`.

A pipeline's parts are formats too (`ensemble`, and the `preprocess` / `postprocess` python steps), registered in
`_PIPELINE_PARTS`: `get` finds them, but they are not `--format` choices (`build --pipeline` writes them).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritongen.errors import TritongenError

if TYPE_CHECKING:
    from tritongen.config import ModelConfig
    from tritongen.plan import BuildPlan
    from tritongen.precision import PrecisionOptions
    from tritongen.runners.base import Runner
    from tritongen.spec import ModelSpec
    from tritongen.verify import ParityReport

# --format name -> the module that defines its FORMAT. The order is the order --help lists them in.
_MODULES = {
    "onnx": "tritongen.formats.onnx",
    "python": "tritongen.formats.python",
    "tensorrt": "tritongen.formats.tensorrt.format",
}
NAMES = tuple(_MODULES)
# A pipeline's parts: name -> (module, the attribute holding the format).
_PIPELINE_PARTS = {
    "preprocess": ("tritongen.formats.steps", "PREPROCESS"),
    "postprocess": ("tritongen.formats.steps", "POSTPROCESS"),
    "ensemble": ("tritongen.formats.ensemble", "FORMAT"),
}
PIPELINE_PARTS = tuple(_PIPELINE_PARTS)

Step = Callable[[str], AbstractContextManager[Any]]
Note = Callable[[str], None]


@dataclass(frozen=True)
class Exported:
    """What the shared steps made, handed to every format: the FP32 ONNX model and the one ONNX formats serve."""

    onnx_path: Path  # the FP32 export (simplified), in the build's scratch directory
    spec: ModelSpec  # the model's interface as exported
    reference: Runner  # PyTorch
    parity: ParityReport  # FP32 ONNX Runtime against PyTorch
    served_files: tuple[Path, ...]  # ONNX files the ONNX-based formats serve (converted with --precision)
    served_spec: ModelSpec
    served_parity: ParityReport
    precision_report: dict[str, Any] | None = None
    calibration: tuple[list[dict[str, Any]], dict[str, Any]] | None = None
    pipeline: Any = None  # tritongen.pipeline.parity.PipelineCheck, with --pipeline


@dataclass(frozen=True)
class VersionJob:
    """Everything a format needs to write one version directory."""

    plan: BuildPlan
    model: str
    exported: Exported
    version_dir: Path  # empty; the format writes its artifact files here
    work_dir: Path  # scratch space of its own
    step: Step
    note: Note

    def checked_pipeline(self, part: str) -> Any:
        """The pipeline check the export step made, which a pipeline's parts are written from (`part`: which one)."""
        check = self.exported.pipeline
        if check is None:
            raise TritongenError(f"internal error: the {part} of '{self.model}' has no checked pipeline",
                                 "please report this with the command line")
        return check


@dataclass(frozen=True)
class WrittenVersion:
    """What a format wrote: the interface and parity of the served file, and what the manifest records about it."""

    spec: ModelSpec
    parity: ParityReport
    manifest: dict[str, Any] = field(default_factory=dict)  # entries added to manifest.json
    facts: Any = None  # what `check_config` compares the config with (the TensorRT engine's description)
    config_text: str | None = None  # config.pbtxt, for a format that renders its own (a pipeline's parts)
    reference: tuple[dict[str, Any], dict[str, Any]] | None = None  # its own reference data (inputs, outputs)


class Format:
    """One deployable format. Subclasses set the attributes and implement `write_version`."""

    name = ""
    platform = ""  # config.pbtxt `platform`, or
    backend = ""  # config.pbtxt `backend`
    artifact = ""  # the file a version directory holds
    serves_onnx = False  # serves the (precision-converted) ONNX model, rather than building its own artifact
    ort_accelerators = False  # takes --ort-accelerator (execution providers of the onnxruntime backend)

    def check_plan(self, plan: BuildPlan) -> None:
        """Refuse options this format cannot honour, before anything is loaded or exported."""

    def check_spec(self, plan: BuildPlan, spec: ModelSpec) -> None:
        """Refuse a model interface this format cannot serve, before the export."""

    def needs_calibration(self, precision: PrecisionOptions) -> bool:
        """Whether the build must read INT8 calibration data for this format."""
        return False

    def check_intent(self, cfg: ModelConfig) -> None:
        """Config options this format cannot honour (a TensorRT plan on a CPU instance)."""

    def instance_kind(self, kind: str) -> str:
        """config.pbtxt `instance_group.kind` for `--kind`."""
        from tritongen.config import KINDS

        return KINDS[kind]

    def write_version(self, job: VersionJob) -> WrittenVersion:
        raise NotImplementedError

    def check_config(self, proto: Any, version_dir: Path, written: WrittenVersion) -> None:
        """The parsed config matches the artifact in `version_dir` (names, dtypes, ranks, batch axis)."""
        raise NotImplementedError


def get(name: str) -> Format:
    """The format registered as `name`; an unknown name is the user's mistake, named with the choices."""
    module = _MODULES.get(name.lower())
    if module is None and name.lower() in _PIPELINE_PARTS:
        module, attribute = _PIPELINE_PARTS[name.lower()]
        return getattr(importlib.import_module(module), attribute)
    if module is None:
        raise TritongenError(f"unknown --format '{name}'", f"use one of {', '.join(NAMES)}")
    return importlib.import_module(module).FORMAT


def all_formats() -> tuple[Format, ...]:
    return tuple(get(n) for n in NAMES)


def link_or_copy(src: Path, dst: Path) -> None:
    """Put `src` at `dst`: a hard link where the filesystem allows (no copy of large weights), else a copy."""
    import os
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
