"""What every launcher yields: where the server listens, and its log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerHandle:
    """A running Triton server. `log()` returns its log so far (for error messages)."""

    kind: str  # "embedded", "docker" or "remote"
    http_url: str  # host:port, as tritonclient expects (no scheme)
    grpc_url: str
    metrics_url: str | None
    log: Callable[[], str]
    description: str = ""  # for reports: binary path and version, image name, or the URL given
