"""One lifecycle for every backend: a context manager with `infer(feeds) -> outputs`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tritongen.spec import DType


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


def cast_feeds(feeds: dict[str, np.ndarray], dtypes: Mapping[str, DType]) -> dict[str, np.ndarray]:
    """Feeds cast to the dtypes given by name (others as they are)."""
    return {k: v.astype(dtypes[k].np_dtype) if k in dtypes else v for k, v in feeds.items()}


class CastingRunner(Runner):
    """Casts feeds to the dtypes another runner expects: the FP32 PyTorch model fed FP16 inputs, for instance."""

    def __init__(self, inner: Runner, dtypes: Mapping[str, DType]) -> None:
        self.inner = inner
        self.dtypes = dict(dtypes)
        self.name = inner.name

    def activate(self) -> None:
        self.inner.activate()

    def deactivate(self) -> None:
        self.inner.deactivate()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner.infer(cast_feeds(feeds, self.dtypes))
