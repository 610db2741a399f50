"""A server someone else runs, named by its URL; and plain HTTP to a local server that no proxy may reroute."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from tritongen.errors import TritongenError
from tritongen.server.base import ServerHandle

REMOTE_TIMEOUT_S = 10.0


def handle_from_url(url: str, *, timeout_s: float | None = None) -> ServerHandle:
    """A handle on a server someone else runs: `[http://]host:port` is its HTTP endpoint; gRPC is assumed on port+1.

    Triton's defaults are 8000 (HTTP), 8001 (gRPC), 8002 (metrics). Give `grpc://host:port` to name the gRPC
    endpoint instead; HTTP is then assumed on port-1.
    """
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "grpc") or not parts.hostname:
        raise TritongenError(f"--server '{url}' is neither 'embedded', 'docker' nor a URL like localhost:8000",
                             "pass --server embedded, --server docker, or the HTTP address of a running Triton")
    try:
        port = parts.port or (8000 if parts.scheme == "http" else 8001)
    except ValueError as exc:
        raise TritongenError(f"--server '{url}' has an invalid port", "e.g. --server localhost:8000") from exc
    http_port, grpc_port = (port, port + 1) if parts.scheme == "http" else (port - 1, port)
    http_url, grpc_url = f"{parts.hostname}:{http_port}", f"{parts.hostname}:{grpc_port}"
    _wait_live(http_url, REMOTE_TIMEOUT_S if timeout_s is None else timeout_s)
    return ServerHandle(kind="remote", http_url=http_url, grpc_url=grpc_url,
                        metrics_url=f"{parts.hostname}:{http_port + 2}",
                        log=lambda: "(the log of a server tritongen did not start is not available)",
                        description=f"Triton at {http_url} (gRPC {grpc_url})")


def _wait_live(http_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with open_url(f"http://{http_url}/v2/health/live", timeout_s=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TritongenError(f"no Triton server answers at http://{http_url} (waited {timeout_s:.0f} s)",
                                 "start it first, or use --server embedded")
        time.sleep(0.25)


def open_url(url: str, timeout_s: float) -> Any:
    """GET `url` directly: an HTTP(S)_PROXY in the environment must not reroute requests to a local server
    (tritonclient ignores proxies too)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(url, timeout=timeout_s)


def server_alive(handle: ServerHandle, timeout_s: float = 3.0) -> bool:
    """Whether the server still answers its liveness endpoint."""
    try:
        with open_url(f"http://{handle.http_url}/v2/health/live", timeout_s=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
