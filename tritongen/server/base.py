"""What every launcher takes (`ServerFlags`) and yields (`ServerHandle`): one set of server flags, one way to say
where a server listens, how it ended and what its log says."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tritongen.errors import TritongenError
from tritongen.server.logs import relevant_log_lines

MODEL_CONTROL_MODES = ("none", "explicit", "poll")
# Flags that ServerFlags (or the launcher itself) sets: given again in extra_args they would contradict it.
_OWNED_FLAGS = ("--model-control-mode", "--load-model", "--model-repository", "--model-store")


@dataclass(frozen=True)
class ServerFlags:
    """How tritonserver is started, the same for every launcher (embedded, Docker).

    `model_control`: Triton's --model-control-mode. `load`: with "explicit", the models loaded at start (none: no
    model until one is asked for). `extra_args`: any other tritonserver flags. A server tritongen did not start keeps
    its own flags, so anything but the defaults is refused for a URL.
    """

    model_control: str = "none"
    load: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.model_control not in MODEL_CONTROL_MODES:
            raise TritongenError(f"unknown model control mode '{self.model_control}'",
                                 f"use one of: {', '.join(MODEL_CONTROL_MODES)}")
        if self.load and self.model_control != "explicit":
            raise TritongenError(f"models to load at start ({', '.join(self.load)}) need explicit model control",
                                 "pass model_control='explicit'")
        for arg in self.extra_args:
            if arg.split("=", 1)[0] in _OWNED_FLAGS:
                raise TritongenError(f"tritonserver flag '{arg}' is set by tritongen",
                                     "use ServerFlags(model_control=..., load=...) instead")

    @property
    def is_default(self) -> bool:
        return self == ServerFlags()

    def args(self) -> list[str]:
        """The tritonserver command-line flags these stand for."""
        return [f"--model-control-mode={self.model_control}", *(f"--load-model={m}" for m in self.load),
                *self.extra_args]


@dataclass(frozen=True)
class ServerHandle:
    """A running Triton server: where it listens, its log so far, and (for a server tritongen started) how it ended.

    `exit_status()` returns how the server ended ("exited with signal SIGABRT") once it has, None while it runs;
    it is None itself where that cannot be known (a server someone else runs).
    """

    kind: str  # "embedded", "docker" or "remote": for reports; callers ask the handle instead of branching on it
    http_url: str  # host:port, as tritonclient expects (no scheme)
    grpc_url: str
    metrics_url: str | None
    log: Callable[[], str]
    description: str = ""  # for reports: binary path and version, image name, or the URL given
    exit_status: Callable[[], str | None] | None = None

    def ended(self, wait_s: float = 3.0) -> str | None:
        """How the server ended, waiting up to `wait_s` for it to be seen (a killed server stops answering a moment
        before its exit can be collected); None where unknown or still running."""
        if self.exit_status is None:
            return None
        deadline = time.monotonic() + wait_s
        while True:
            status = self.exit_status()
            if status is not None or time.monotonic() >= deadline:
                return status
            time.sleep(0.1)

    def explain(self) -> list[str]:
        """The lines of the server log that explain a failure (fatal lines such as `std::bad_alloc` included)."""
        return relevant_log_lines(self.log())

    def failure(self, while_doing: str, hint: str) -> TritongenError:
        """The error for a server that stopped answering `while_doing` (e.g. "while validating model 'm' (step)"):
        how it ended, the line of its log that says why, and the relevant lines as details."""
        how = self.ended() or "stopped answering"
        lines = self.explain()
        fatal = [line for line in lines if _is_fatal(line)]
        why = f": {'; '.join(fatal[:2])}" if fatal else ""
        details = "server log (relevant lines):\n  " + "\n  ".join(lines) if lines else None
        return TritongenError(f"the Triton server ({self.description or self.http_url}) {how} {while_doing}{why}".strip(),
                              hint, details=details)


def _is_fatal(line: str) -> bool:
    from tritongen.server.logs import FATAL

    return bool(FATAL.search(line))
