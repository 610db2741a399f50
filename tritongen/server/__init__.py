"""Serving a repository: `serve()` (checks, staging, launch, what serves each model) over one set of launchers
(the embedded tritonserver, a Docker container, a server already running) that all take the same `ServerFlags`."""

from tritongen.server.base import ServerFlags, ServerHandle
from tritongen.server.launch import launch, starts_server
from tritongen.server.serve import NothingToServe, Served, ServedModel, serve, served_config
from tritongen.server.url import handle_from_url, open_url, server_alive

__all__ = ["NothingToServe", "ServedModel", "Served", "ServerFlags", "ServerHandle", "handle_from_url", "launch",
           "open_url", "serve", "served_config", "server_alive", "starts_server"]
