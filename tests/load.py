"""Load for the operations tests: closed-loop asyncio clients (tritonclient's aio HTTP and gRPC clients) that record
every request: protocol, when it was sent and answered, what came back or how it failed.

Kept here rather than in tritongen's bench: these tests need each request's fate and timing, not a benchmark.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Answer:
    protocol: str
    sent: float  # time.monotonic()
    answered: float
    output: np.ndarray | None  # None when the request failed
    error: str | None = None
    status: str | None = None  # HTTP status or gRPC code of a failure

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seconds(self) -> float:
        return self.answered - self.sent


def _status(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    value = status() if callable(status) else status
    return str(value) if value is not None else type(exc).__name__


async def _worker(protocol: str, client: object, module: object, model: str, feeds: dict[str, np.ndarray],
                  output: str, keep_going: Callable[[], bool], answers: list[Answer], timeout_s: float,
                  backoff_s: float) -> None:
    while keep_going():
        inputs = []
        for name, array in feeds.items():
            item = module.InferInput(name, list(array.shape), _triton_dtype(array))  # type: ignore[attr-defined]
            item.set_data_from_numpy(array)
            inputs.append(item)
        sent = time.monotonic()
        try:
            if protocol == "grpc":
                result = await client.infer(model, inputs, client_timeout=timeout_s)  # type: ignore[attr-defined]
            else:
                result = await client.infer(model, inputs)  # type: ignore[attr-defined]
            answers.append(Answer(protocol, sent, time.monotonic(), result.as_numpy(output)))
        except Exception as exc:  # every failure is a result here, never a crash of the load
            answers.append(Answer(protocol, sent, time.monotonic(), None, str(exc)[:300], _status(exc)))
            await asyncio.sleep(backoff_s)  # what a client does with "try again later"


def _triton_dtype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(array.dtype)


async def _run(urls: dict[str, str], model: str, feeds: dict[str, np.ndarray], output: str, concurrency: int,
               keep_going: Callable[[], bool], answers: list[Answer], timeout_s: float, backoff_s: float = 0.0) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as grpc_aio
    import tritonclient.http as httpclient
    import tritonclient.http.aio as http_aio

    clients, tasks = [], []
    for protocol, url in urls.items():
        if protocol == "http":
            client = http_aio.InferenceServerClient(url, conn_limit=concurrency, conn_timeout=timeout_s)
            module = httpclient
        else:
            client, module = grpc_aio.InferenceServerClient(url), grpcclient
        clients.append(client)
        tasks += [_worker(protocol, client, module, model, feeds, output, keep_going, answers, timeout_s, backoff_s)
                  for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.close()


def run_for(urls: dict[str, str], model: str, feeds: dict[str, np.ndarray], output: str, concurrency: int,
            seconds: float, timeout_s: float = 60.0, backoff_s: float = 0.0) -> list[Answer]:
    """`concurrency` requests in flight per protocol in `urls` ({"http": host:port, "grpc": host:port}) for
    `seconds`; every answer. A client whose request failed waits `backoff_s` before its next one."""
    answers: list[Answer] = []
    deadline = time.monotonic() + seconds
    asyncio.run(_run(urls, model, feeds, output, concurrency, lambda: time.monotonic() < deadline, answers, timeout_s,
                     backoff_s))
    return answers


class ContinuousLoad:
    """Load in a background thread for the duration of a `with` block; `answers` once it has ended."""

    def __init__(self, urls: dict[str, str], model: str, feeds: dict[str, np.ndarray], output: str,
                 concurrency: int = 8, timeout_s: float = 60.0) -> None:
        self._args = (urls, model, feeds, output, concurrency)
        self._timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.answers: list[Answer] = []

    def __enter__(self) -> ContinuousLoad:
        def main() -> None:
            try:
                asyncio.run(_run(*self._args, lambda: not self._stop.is_set(), self.answers, self._timeout_s))
            except BaseException as exc:  # re-raised in the test's thread
                self._error = exc

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        return self

    def wait_for(self, count: int, timeout_s: float = 30.0) -> None:
        """Until at least `count` answers have come back (the load is running, on every protocol)."""
        deadline = time.monotonic() + timeout_s
        while len(self.answers) < count:
            assert time.monotonic() < deadline, f"only {len(self.answers)} answers in {timeout_s} s"
            assert self._error is None, self._error
            time.sleep(0.05)

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=self._timeout_s + 10)
        if self._error is not None:
            raise self._error


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def switch_point(answers: Sequence[Answer], is_new: Callable[[np.ndarray], bool]) -> tuple[float, float]:
    """(the last send time of an answer from the old version, the first answer time from the new one). A switch at one
    point in time S means every old answer was sent before S and every new one answered after it: first < second."""
    old = [a.sent for a in answers if a.ok and not is_new(a.output)]
    new = [a.answered for a in answers if a.ok and is_new(a.output)]
    return (max(old) if old else float("-inf")), (min(new) if new else float("inf"))
