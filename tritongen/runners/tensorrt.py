"""TensorRT engine outputs as a runner: what the builder script recorded for the parity inputs, replayed.

The engine runs only where it was built (in this process, or inside the `--trt-image` container), so the builder
script runs it on the parity inputs there and saves the outputs next to the inputs. This runner gives those
outputs back for exactly those inputs, so a TensorRT plan is compared with PyTorch like every other backend.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tritongen.errors import TritongenError
from tritongen.runners.base import Runner


class TensorRTOutputsRunner(Runner):
    """`infer(feeds)` returns what the engine returned for `feeds`; `pairs` are (inputs .npz, outputs .npz) files."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], *, name: str = "tensorrt") -> None:
        self.pairs = [(Path(i), Path(o)) for i, o in pairs]
        self.name = name
        self._recorded: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    @classmethod
    def from_job(cls, job_path: Path, *, name: str = "tensorrt") -> TensorRTOutputsRunner:
        """The parity inputs and outputs a builder job lists (`parity.inputs` / `parity.outputs` in job.json)."""
        base = Path(job_path).parent
        parity = json.loads(Path(job_path).read_text()).get("parity") or {"inputs": [], "outputs": []}
        return cls([(base / i, base / o) for i, o in zip(parity["inputs"], parity["outputs"], strict=True)], name=name)

    def activate(self) -> None:
        missing = [str(o) for _, o in self.pairs if not o.exists()]
        if missing:
            raise TritongenError(f"the TensorRT builder wrote no outputs for the parity inputs ({missing[0]})",
                                 "run tritongen/tensorrt/reproduce.sh in the job directory to see the builder's output")
        self._recorded = [(_load_npz(i), _load_npz(o)) for i, o in self.pairs]

    def deactivate(self) -> None:
        self._recorded = []

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for inputs, outputs in self._recorded:
            if inputs.keys() == feeds.keys() and all(np.array_equal(inputs[k], feeds[k]) for k in feeds):
                return dict(outputs)
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in feeds.items())
        raise TritongenError(f"the TensorRT engine was not run on these inputs ({shapes})",
                             "only the parity inputs given to the builder have outputs; this is a tritongen bug, "
                             "please report it")


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
