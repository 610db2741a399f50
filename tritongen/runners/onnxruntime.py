"""ONNX Runtime runner (in-process, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritongen.runners.base import Runner


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, path: Path, *, intra_op_threads: int | None = None, optimization: str = "all") -> None:
        self.path = Path(path)
        self.intra_op_threads = intra_op_threads
        self.optimization = optimization
        self._session = None

    def activate(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[self.optimization]
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def deactivate(self) -> None:
        self._session = None

    @property
    def output_names(self) -> list[str]:
        assert self._session is not None, "use the runner as a context manager"
        return [o.name for o in self._session.get_outputs()]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._session is not None, "use the runner as a context manager"
        names = self.output_names
        values = self._session.run(names, feeds)
        return dict(zip(names, values, strict=True))
