"""ONNX Runtime runner (in-process, CPU), with sessions set up as the served model sets its own."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.runners import sessions
from tritongen.runners.base import Runner


class OnnxRuntimeRunner(Runner):
    """`infer(feeds)` on an ONNX file; `intra_op_threads` None: the threads one served instance would get."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, intra_op_threads: int | None = None, optimization: str = "all") -> None:
        self.path = Path(path)
        self.intra_op_threads = intra_op_threads
        self.optimization = optimization
        self._session: Any = None

    def activate(self) -> None:
        threads = self.intra_op_threads or sessions.intra_op_threads({}, instances=1)
        self._session = sessions.cpu_session(self.path, threads, self.optimization)

    def deactivate(self) -> None:
        self._session = None

    @property
    def session(self) -> Any:
        """The active onnxruntime.InferenceSession."""
        assert self._session is not None, "use the runner as a context manager"
        return self._session

    @property
    def output_names(self) -> list[str]:
        assert self._session is not None, "use the runner as a context manager"
        return [o.name for o in self._session.get_outputs()]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._session is not None, "use the runner as a context manager"
        names = self.output_names
        values = self._session.run(names, feeds)
        return dict(zip(names, values, strict=True))


def served_session_code() -> str:
    """The source of `tritongen.runners.sessions` without its docstring: what model.py.j2 renders into model.py."""
    source = Path(sessions.__file__).read_text()
    docstring = ast.parse(source).body[0]
    return "\n".join(source.splitlines()[docstring.end_lineno:]).strip()
