"""Triton's command line, built in one place for every deployment target (compose, Kubernetes, KServe), and the
flags that tritongen's own servers (embedded, Docker) share with it.

Every flag here was checked against tritonserver 2.51's `--help` and its behaviour (measured here):
- `--metrics-config=summary_latencies=true` adds Prometheus summaries (p50/p90/p99 over a sliding window) of request,
  queue and compute times next to the cumulative counters; 2.51 has no histogram latencies (the option is accepted
  and does nothing).
- `--cache-config=local,size=N` gives the models that enable `response_cache` a cache of N bytes; without it their
  `response_cache` is ignored.
- `--http-restricted-api=model-repository:KEY=VALUE` (and gRPC's `--grpc-restricted-protocol`, same format) refuses
  load, unload and the repository index (HTTP 403, gRPC UNAVAILABLE) to requests without the header KEY: VALUE; over
  gRPC the header is `triton-grpc-protocol-KEY`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CONTAINER_REPOSITORY = "/models"
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
# How long tritonserver waits for in-flight requests after SIGTERM (2.51's default, written out so that every
# target's stop grace is derived from the same number).
EXIT_TIMEOUT_S = 30
# Quantile:allowed error pairs of the latency summaries: the p99 the alerts and dashboard read, within 0.1 %.
SUMMARY_QUANTILES = "0.5:0.05,0.9:0.01,0.95:0.005,0.99:0.001"
METRICS_FLAGS = ("--metrics-config=summary_latencies=true", f"--metrics-config=summary_quantiles={SUMMARY_QUANTILES}")
# A 256 MiB local response cache; `TRITON_CACHE_SIZE` in .env changes it.
CACHE_SIZE_BYTES = 256 * 2**20
# The header a model-repository call must carry when rollouts are enabled, and the variable that holds its value.
ADMIN_HEADER = "admin-key"
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"  # what Triton 2.51's gRPC frontend expects
ADMIN_KEY_VARIABLE = "TRITON_ADMIN_KEY"


@dataclass(frozen=True)
class ControlOptions:
    """How models are loaded: "none" (everything at start, never changed; the default), or "explicit" for rollouts:
    everything at start, and load/unload only for holders of the admin key. `key` is how the key is written in the
    command line (a variable reference such as `${TRITON_ADMIN_KEY}`; the key itself never appears in a file)."""

    rollouts: bool = False
    key: str = f"${{{ADMIN_KEY_VARIABLE}}}"


def metrics_args() -> list[str]:
    """The latency metrics every server tritongen writes or starts exports (see the module docstring)."""
    return list(METRICS_FLAGS)


def cache_args(size: str | int = CACHE_SIZE_BYTES) -> list[str]:
    """The local response cache, for repositories where a model enables `response_cache`."""
    return [f"--cache-config=local,size={size}"]


def restricted_args(key: str) -> list[str]:
    """Load, unload and the repository index only for requests with the header `admin-key: <key>`, on both
    protocols (2.51's format: `<apis>:<header>=<value>`)."""
    return [f"--http-restricted-api=model-repository:{ADMIN_HEADER}={key}",
            f"--grpc-restricted-protocol=model-repository:{ADMIN_HEADER}={key}"]


def control_args(control: ControlOptions) -> list[str]:
    if not control.rollouts:
        # Serve exactly the models in the repository; nothing can load or unload models over the API.
        return ["--model-control-mode=none"]
    return ["--model-control-mode=explicit", "--load-model=*", *restricted_args(control.key)]


def triton_args(repository: str, extra: Sequence[str] = (), *, cache: bool | str | int = False,
                control: ControlOptions | None = None) -> list[str]:
    """tritonserver's command line for a deployment serving `repository` (a path in the container).

    `cache`: False, or True / a size in bytes (or a variable reference) for the local response cache. `extra` comes
    last (ports of a target that needs other ones).
    """
    size = CACHE_SIZE_BYTES if cache is True else cache
    return ["tritonserver", f"--model-repository={repository}", *control_args(control or ControlOptions()),
            # Serve config.pbtxt as written: auto-complete would otherwise change batching behind your back.
            "--disable-auto-complete-config", f"--exit-timeout-secs={EXIT_TIMEOUT_S}", *metrics_args(),
            *(cache_args(size) if cache is not False else []), *extra]


def flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value of `--flag=V` or `--flag V` in a command line (the last one wins, as for tritonserver)."""
    value = None
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        elif arg == flag and i + 1 < len(args):
            value = args[i + 1]
    return value


def ports_of(args: Sequence[str]) -> dict[str, int]:
    """The ports tritonserver listens on with this command line: its flags, else Triton's defaults."""
    return {name: int(flag_value(args, f"--{name}-port") or default) for name, default in PORTS.items()}


def exit_timeout_of(args: Sequence[str]) -> int:
    return int(flag_value(args, "--exit-timeout-secs") or EXIT_TIMEOUT_S)
