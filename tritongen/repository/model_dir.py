"""One model's folder, read once: its config (parsed with Triton's schema), versions, and the latest manifest.

Commands that look at a built model (deploy, validate, bench, tune) read it through `read_model_dir` instead of
finding configs, versions and artifact files each in their own way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import TritongenError
from tritongen.repository.layout import CONFIG, MANIFEST, META_DIR, load_reference, models_in, read_manifest, versions_of

# The file a version's artifact is in, by the manifest's format, else by the config's platform (Triton's defaults).
ARTIFACT_BY_FORMAT = {"onnx": "model.onnx", "python": "model.onnx", "tensorrt": "model.plan"}
ARTIFACT_BY_PLATFORM = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}


@dataclass(frozen=True)
class ModelDir:
    """A model folder of a repository: `<repository>/<name>/{config.pbtxt, <version>/...}`."""

    path: Path
    config: Any  # tritonclient.grpc.model_config_pb2.ModelConfig
    versions: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def latest(self) -> int | None:
        """The newest version: the one Triton serves under its default version policy."""
        return self.versions[-1] if self.versions else None

    def version_dir(self, version: int | None = None) -> Path:
        chosen = self.latest if version is None else version
        if chosen is None:
            raise TritongenError(f"model '{self.name}' in {self.path.parent} has no version directory",
                                 "rebuild it with `tritongen build`")
        return self.path / str(chosen)

    _manifests: dict[int, dict[str, Any] | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The latest version's manifest; None when the model was not built by tritongen."""
        return None if self.latest is None else self._manifest(self.latest)

    def manifest_of(self, version: int | None = None) -> dict[str, Any]:
        """A version's manifest (the latest by default); an error when it has none."""
        found = self._manifest(self.latest if version is None else version) if self.versions else None
        return found if found is not None else read_manifest(self.version_dir(version))

    def _manifest(self, version: int) -> dict[str, Any] | None:
        if version not in self._manifests:  # each manifest is read at most once
            folder = self.path / str(version)
            self._manifests[version] = read_manifest(folder) if (folder / META_DIR / MANIFEST).exists() else None
        return self._manifests[version]

    def reference(self, version: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The sample inputs and PyTorch outputs `build` saved with a version (the latest by default)."""
        return load_reference(self.version_dir(version))

    def artifact_path(self, version: int | None = None) -> Path | None:
        """The model file Triton loads (model.onnx, model.plan), when it exists."""
        if self.latest is None:
            return None
        version_dir = self.version_dir(version)
        manifest = self._manifest(int(version_dir.name))
        name = (self.config.default_model_filename
                or ARTIFACT_BY_FORMAT.get(str((manifest or {}).get("format", "")))
                or ARTIFACT_BY_PLATFORM.get(self.config.platform)
                or "model.onnx")
        path = version_dir / name
        return path if path.is_file() else None

    @functools.cached_property
    def spec(self) -> Any:
        """The ModelSpec `build` recorded (named axes, value ranges), else one read from the config."""
        from tritongen.spec import spec_from_dict

        recorded = (self.manifest or {}).get("spec")
        if recorded and recorded.get("inputs"):
            from dataclasses import replace

            return replace(spec_from_dict(recorded), max_batch_size=int(self.config.max_batch_size))
        from tritongen.spec import spec_from_config

        return spec_from_config(self.config)


def read_model_dir(path: Path) -> ModelDir:
    """Read a model folder: its config.pbtxt once, with Triton's own schema, and its versions."""
    from tritongen.config import read_config

    path = Path(path)
    config = read_config(path / CONFIG)
    return ModelDir(path, config, tuple(versions_of(path)))


def model_dirs(repository: Path) -> list[ModelDir]:
    """Every model of a repository (folders holding a config.pbtxt), read once, by name."""
    return [read_model_dir(p) for p in models_in(Path(repository))]
