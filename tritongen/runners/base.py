"""One lifecycle for every backend: a context manager with `infer(feeds) -> outputs`."""

from __future__ import annotations

from typing import Any

import numpy as np


class Runner:
    """Base runner: `with Runner(...) as r: r.infer({"x": array}) -> {"y": array}`."""

    name = "runner"

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    def activate(self) -> None:  # noqa: B027 - optional hook
        """Load what the runner needs (a session, a client)."""

    def deactivate(self) -> None:  # noqa: B027 - optional hook
        """Release it."""

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError
