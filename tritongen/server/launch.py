"""Launchers behind one context manager: the embedded tritonserver, a Docker container, or a server already running."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from tritongen.errors import TritongenError
from tritongen.server.base import ServerFlags, ServerHandle
from tritongen.server.processes import Watchdog
from tritongen.server.url import handle_from_url

STARTED = ("embedded", "docker")  # the servers tritongen starts; anything else names a running server's URL


def starts_server(server: str) -> bool:
    """Whether `server` ("embedded", "docker" or a URL) is one tritongen starts (and stops)."""
    return server in STARTED


@contextlib.contextmanager
def launch(repository: str | Path, server: str = "embedded", *, flags: ServerFlags | None = None,
           tritonserver: str | Path | None = None, timeout_s: float | None = None, image: str | None = None,
           host: str | None = None, ports: tuple[int | None, int | None, int | None] | None = None,
           guard: Watchdog | None = None,
           on_progress: Callable[[str], None] | None = None,
           stop_grace_s: float | None = None) -> Iterator[ServerHandle]:
    """Serve `repository` for the duration of the block and yield where it listens; always stop what was started.

    `server` is "embedded" (the tritonserver of nvidia-pytriton, or `tritonserver`), "docker" (`image`),
    or the URL of a server already running, which must already serve the repository (nothing is started or stopped).
    `flags` apply to every server tritongen starts; `host` and `ports` (HTTP, gRPC, metrics) to the embedded one.
    """
    if server == "embedded":
        from tritongen.server.local import launch_local

        with launch_local(repository, tritonserver=tritonserver, timeout_s=timeout_s, host=host or "127.0.0.1",
                          ports=ports, flags=flags, guard=guard, on_progress=on_progress,
                          stop_grace_s=stop_grace_s) as handle:
            yield handle
        return
    if server == "docker":
        from tritongen.server.docker import launch_docker  # imported lazily: needs the docker SDK

        with launch_docker(repository, image=image, timeout_s=timeout_s, flags=flags, guard=guard) as handle:
            yield handle
        return
    if flags is not None and not flags.is_default:
        raise TritongenError(f"tritonserver flags ({' '.join(flags.args())}) can only be given to a server tritongen "
                             f"starts, not to the one at {server}",
                             "start that server yourself with those flags, or use --server embedded or docker")
    yield handle_from_url(server, timeout_s=timeout_s)
