"""Triton's model-repository API (index, load with a config override and files, unload) over HTTP, with the admin
key of a restricted API, and its refusals as errors that say what to do."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tritongen.deploy.command import ADMIN_HEADER, ADMIN_KEY_VARIABLE
from tritongen.errors import TritongenError

DEFAULT_TIMEOUT_S = 300.0  # a load runs the model's warm-up: big models take a while


class ControlRefused(TritongenError):
    """The server does not let this client load or unload models (no key, a wrong key, no explicit model control):
    a problem with how the command is run, not with the version."""


class ModelControl:
    """Load, unload and list the models of the Triton at `http_url`; `key` is sent as the `admin-key` header."""

    def __init__(self, http_url: str, key: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        import tritonclient.http as httpclient

        self.http_url = http_url
        self.headers = {ADMIN_HEADER: key} if key else None
        self._client = httpclient.InferenceServerClient(http_url, connection_timeout=timeout_s,
                                                        network_timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ModelControl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def index(self) -> list[dict[str, Any]]:
        return list(self._call("list the models", self._client.get_model_repository_index, headers=self.headers))

    def ready_versions(self, model: str) -> list[int]:
        """The versions of `model` that are loaded and ready, lowest first."""
        return sorted(int(e["version"]) for e in self.index()
                      if e.get("name") == model and e.get("state") == "READY" and str(e.get("version", "")).isdigit())

    def state(self, model: str, version: int) -> tuple[str, str]:
        """(state, reason) of one version as the index says; UNAVAILABLE when it is not listed."""
        for entry in self.index():
            if entry.get("name") == model and str(entry.get("version")) == str(version):
                return str(entry.get("state") or "UNKNOWN"), str(entry.get("reason") or "")
        return "UNAVAILABLE", "not in the server's index"

    def config(self, model: str) -> dict[str, Any]:
        return dict(self._call(f"read the config of '{model}'", self._client.get_model_config, model))

    def load(self, model: str, config: Mapping[str, Any], files: Mapping[str, bytes] | None = None) -> None:
        """Load (or reload) `model` with `config` (Triton's JSON form) instead of its config.pbtxt; with `files`
        (`<version>/<name>` -> bytes) from those files instead of the repository."""
        prefixed = {f"file:{name}": data for name, data in files.items()} if files else None
        self._call(f"load '{model}'", self._client.load_model, model, headers=self.headers,
                   config=json.dumps(dict(config)), files=prefixed)

    def unload(self, model: str) -> None:
        self._call(f"unload '{model}'", self._client.unload_model, model, headers=self.headers)

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return method(*args, **kwargs)
        except InferenceServerException as exc:
            raise control_error(what, self.http_url, exc.message() or str(exc), str(exc.status() or ""),
                                bool(self.headers)) from exc
        except OSError as exc:  # refused connection, reset, timeout
            raise TritongenError(f"cannot {what}: no answer from the Triton at {self.http_url} ({exc})",
                                 "check the URL and that the server runs") from exc


def control_error(what: str, url: str, message: str, status: str, with_key: bool) -> TritongenError:
    """The error for a refused model-repository call, with the fix for the usual causes."""
    if status == "403" or "restricted" in message:
        hint = ("the key is not the one the server was started with: use TRITON_ADMIN_KEY from the deployment's .env"
                if with_key else f"pass --admin-key, or set {ADMIN_KEY_VARIABLE} (the deployment's .env holds it)")
        return ControlRefused(f"the Triton at {url} refused to {what}: {message}", hint)
    if "explicit" in message.lower() or "polling is enabled" in message.lower() or "not allowed" in message.lower():
        # Triton 2.51 says "explicit model load / unload is not allowed if polling is enabled" in mode none too.
        return ControlRefused(f"the Triton at {url} refused to {what}: {message}",
                              "rollouts need explicit model control: `tritongen deploy --rollouts` writes a deployment "
                              "started that way (or start tritonserver with --model-control-mode=explicit)")
    return TritongenError(f"the Triton at {url} could not {what}: {message}", "the server log says more")


def admin_key(repository: Path, given: str | None = None) -> str | None:
    """The key to send: `given`, else $TRITON_ADMIN_KEY, else the one in the .env of the deployment beside
    `repository` (deploy/.env, written by `tritongen deploy --rollouts`); None when there is none."""
    import os

    from tritongen.deploy.compose import default_deploy_dir, read_env

    if given:
        return given
    if os.environ.get(ADMIN_KEY_VARIABLE):
        return os.environ[ADMIN_KEY_VARIABLE]
    return read_env(default_deploy_dir(Path(repository).resolve()) / ".env").get(ADMIN_KEY_VARIABLE) or None


def rollout_flags(key: str) -> Any:
    """ServerFlags for a server tritongen starts that rollouts can switch: explicit model control, every model loaded
    at start, and the model-repository API restricted to `key`, as `tritongen deploy --rollouts` starts Triton."""
    from tritongen.deploy.command import ControlOptions, control_args
    from tritongen.server.base import ServerFlags

    args = control_args(ControlOptions(rollouts=True, key=key))
    restricted = tuple(a for a in args if not a.startswith(("--model-control-mode", "--load-model")))
    return ServerFlags(model_control="explicit", load=("*",), extra_args=restricted)
