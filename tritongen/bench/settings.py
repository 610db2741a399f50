"""How each load level is measured (protocol, window length or request count, settling) and the option checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tritongen import defaults
from tritongen.errors import TritongenError

DEFAULT_CONCURRENCIES = defaults.BENCH_CONCURRENCIES
DEFAULT_DURATION_S = defaults.BENCH_DURATION_S
DEFAULT_WARMUP_S = defaults.BENCH_WARMUP_S
PROTOCOLS = ("grpc", "http")
# auto: h2load when it is installed (nghttp2-client), else the Python generator.
GENERATORS = ("auto", "h2load", "python")
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LoadSettings:
    """How each concurrency level is measured."""

    protocol: str = "grpc"
    duration_s: float | None = DEFAULT_DURATION_S  # measurement window; None: use `requests`
    requests: int | None = None  # or: stop after this many answered requests
    settle_s: float | None = None  # load before the window opens (fills the batcher's pipeline); None: auto
    generator: str = "auto"  # one of GENERATORS

    def settle(self) -> float:
        if self.settle_s is not None:
            return self.settle_s
        return min(1.0, 0.2 * self.duration_s) if self.duration_s else 0.5


def check_settings(settings: LoadSettings, concurrencies: Sequence[int]) -> None:
    if settings.protocol not in PROTOCOLS:
        raise TritongenError(f"unknown protocol '{settings.protocol}'", "use --protocol grpc or http")
    if settings.generator not in GENERATORS:
        raise TritongenError(f"unknown load generator '{settings.generator}'", "use --generator auto, h2load or python")
    if settings.duration_s is None and not settings.requests:
        raise TritongenError("neither a duration nor a request count was given", "pass --duration S or --requests N")
    if settings.duration_s is not None and settings.duration_s <= 0:
        raise TritongenError(f"--duration {settings.duration_s} must be positive", "e.g. --duration 5")
    if settings.requests is not None and settings.requests < 1:
        raise TritongenError(f"--requests {settings.requests} must be at least 1", "e.g. --requests 1000")
    if not concurrencies or min(concurrencies) < 1:
        raise TritongenError(f"concurrency levels must be 1 or more (got {list(concurrencies)})",
                             "e.g. --concurrency 1,2,4,8,16,32")


def parse_concurrencies(text: str, option: str = "--concurrency") -> tuple[int, ...]:
    """`--concurrency 1,2,4,8` (and other lists of positive integers): sorted, without repeats."""
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise TritongenError(f"malformed {option} '{text}'", "give positive integers separated by commas, e.g. 1,4,16")
    return tuple(sorted(set(values)))
