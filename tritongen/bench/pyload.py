"""The Python load generator: one asyncio event loop with `concurrency` coroutines, each sending its next request as
soon as the previous one answers (tritonclient's aio clients: gRPC by default, HTTP with aiohttp).

One loop in one thread costs the least CPU per request in Python, which matters on a small machine where the client
and the server share the same cores: the report says how much CPU the client used, and how fast a no-op model with
the same inputs goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from tritongen.bench.report import LatencyStats, LoadPoint
from tritongen.bench.settings import REQUEST_TIMEOUT_S, LoadSettings
from tritongen.bench.stats import all_recorded, busy_fraction, cpu_times, server_stats, statistics_name, step_stats
from tritongen.bench.workload import Workload
from tritongen.errors import TritongenError


def measure_point(url: str, workload: Workload, concurrency: int, settings: LoadSettings,
                  model: str | None = None) -> LoadPoint:
    """Keep `concurrency` requests in flight against `url`; measure one window. `model` overrides the workload's."""
    return asyncio.run(_measure(url, model or workload.model, workload, concurrency, settings))


class _Clients:
    """The protocol's aio client and request objects, built once: each request then costs only its send."""

    def __init__(self, protocol: str, url: str, workload: Workload, concurrency: int) -> None:
        self.protocol = protocol
        if protocol == "grpc":
            import tritonclient.grpc as module
            from tritonclient.grpc.aio import InferenceServerClient

            self.client = InferenceServerClient(url)
            self.inputs = [self._input(module, name, array, binary=None) for name, array in workload.inputs.items()]
            self.outputs = [module.InferRequestedOutput(n) for n in workload.outputs] or None
        else:
            import tritonclient.http as module
            from tritonclient.http.aio import InferenceServerClient

            # One connection per in-flight request, as real concurrent clients have.
            self.client = InferenceServerClient(url, conn_limit=max(100, concurrency), conn_timeout=REQUEST_TIMEOUT_S)
            self.inputs = [self._input(module, name, array, binary=True) for name, array in workload.inputs.items()]
            self.outputs = [module.InferRequestedOutput(n, binary_data=True) for n in workload.outputs] or None

    @staticmethod
    def _input(module: Any, name: str, array: np.ndarray, binary: bool | None) -> Any:
        from tritonclient.utils import np_to_triton_dtype

        array = np.ascontiguousarray(array)
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        if binary is None:
            tensor.set_data_from_numpy(array)
        else:
            tensor.set_data_from_numpy(array, binary_data=binary)  # binary: FP16 needs it, and it is cheaper
        return tensor

    async def infer(self, model: str) -> None:
        if self.protocol == "grpc":
            await self.client.infer(model, self.inputs, outputs=self.outputs, client_timeout=REQUEST_TIMEOUT_S)
        else:
            await self.client.infer(model, self.inputs, outputs=self.outputs)

    async def statistics(self, model: str) -> dict[str, Any] | None:
        try:
            if self.protocol == "grpc":
                return await self.client.get_inference_statistics(model, as_json=True)
            return await self.client.get_inference_statistics(model)
        except Exception:  # a server without the statistics extension: the point simply has no server stats
            return None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()


async def _measure(url: str, model: str, workload: Workload, concurrency: int, settings: LoadSettings) -> LoadPoint:
    """Settle, then measure one window that opens and closes with no request in flight.

    Triton's statistics are only consistent between snapshots taken while nothing is in flight (a request being run
    is counted in some of them and not yet in others), so the window is: pause the settling load and let it drain,
    snapshot, send for the window's length, let the requests sent in it finish, snapshot again. The server's numbers
    then describe exactly the requests the client counted.
    """
    clients = _Clients(settings.protocol, url, workload, concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    state: dict[str, Any] = {"phase": "settle", "fatal": None, "in_flight": 0, "settled": 0}
    resume, enough, idle = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def worker() -> None:
        while True:
            phase = state["phase"]
            if phase == "stop":
                return
            if phase == "pause":
                await resume.wait()
                continue
            counted = phase == "measure"  # a request belongs to the window it was sent in
            state["in_flight"] += 1
            idle.clear()
            sent = time.perf_counter()
            try:
                await clients.infer(model)
                if counted:
                    latencies.append(time.perf_counter() - sent)
            except Exception as exc:  # tritonclient, grpc, aiohttp and socket errors alike: counted, not raised
                text = _error_text(exc)
                if _unreachable(text):
                    state["fatal"], state["phase"] = text, "stop"
                    resume.set()
                    enough.set()
                elif counted:
                    errors.append(text)
            finally:
                if counted and settings.requests and len(latencies) + len(errors) >= settings.requests:
                    enough.set()
                if not counted:
                    state["settled"] += 1
                state["in_flight"] -= 1
                if state["in_flight"] == 0:
                    idle.set()

    async def drained(phase: str) -> None:
        """Stop sending (`phase` pause or stop) and wait until every request in flight has its answer."""
        if state["phase"] != "stop":
            state["phase"] = phase
        if state["in_flight"]:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(idle.wait(), timeout=REQUEST_TIMEOUT_S + 5)
        if state["in_flight"]:
            state["fatal"] = state["fatal"] or (f"{state['in_flight']} requests got no answer within "
                                                f"{REQUEST_TIMEOUT_S:.0f} s")

    tasks: list[asyncio.Task[None]] = []
    try:
        start = await clients.statistics(statistics_name(model, workload.steps))
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(settings.settle())
        await drained("pause")
        # Once the server has recorded the settling requests too: the last answers can come before they are counted.
        before = await _statistics_after(clients, model, workload.steps, start, state["settled"]) \
            if not state["fatal"] else None
        cpu0, busy0, t0 = time.process_time(), cpu_times(), time.perf_counter()
        if state["phase"] != "stop":
            state["phase"] = "measure"
        resume.set()
        if settings.duration_s is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(enough.wait(), timeout=settings.duration_s)
        else:
            await enough.wait()
        await drained("stop")
        t1, cpu1, busy1 = time.perf_counter(), time.process_time(), cpu_times()
        after = await _statistics_after(clients, model, workload.steps, before, len(latencies) + len(errors)) \
            if not state["fatal"] else None
    finally:
        state["phase"] = "stop"
        resume.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await clients.close()
    if state["fatal"]:
        raise TritongenError(f"the server at {url} stopped answering while benchmarking '{model}': {state['fatal']}",
                             "check that the server is running; see its log")
    seconds = t1 - t0
    n = len(latencies)
    cpus = os.cpu_count() or 1
    cpu = cpu1 - cpu0
    return LoadPoint(
        concurrency=concurrency, batch_size=workload.batch_size, seconds=seconds, requests=n, errors=len(errors),
        throughput=n * workload.batch_size / seconds if seconds > 0 else 0.0, latency=LatencyStats.of(latencies),
        server=server_stats(before, after, model), client_cpu_us_per_request=cpu / n * 1e6 if n else float("nan"),
        client_cpu_share=cpu / (seconds * cpus) if seconds > 0 else 0.0, machine_busy=busy_fraction(busy0, busy1),
        first_error=errors[0] if errors else None, steps=step_stats(before, after, workload.steps))


async def _statistics_after(clients: _Clients, model: str, steps: tuple[str, ...], before: Mapping[str, Any] | None,
                            sent: int, wait_s: float = 2.0) -> dict[str, Any] | None:
    """A snapshot once the server has recorded all `sent` requests since `before` (at either end of the window).

    Triton updates its statistics just after it sends a response, so the last answers can arrive before they are
    counted. Another client of the same server can make the count never match: then give up after `wait_s`.
    """
    deadline = time.perf_counter() + wait_s
    while True:
        after = await clients.statistics(statistics_name(model, steps))
        if before is None or after is None:
            return after
        if all_recorded(before, after, (model, *steps), sent) or time.perf_counter() >= deadline:
            return after
        await asyncio.sleep(0.02)


def _error_text(exc: BaseException) -> str:
    """One line: the server's status (gRPC code) and message."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status, message = exc.status(), exc.message()
        text = f"[{status}] {message}" if status else str(message)
    else:
        text = f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _unreachable(text: str) -> bool:
    return any(s in text for s in ("failed to connect", "Connection refused", "Socket closed", "UNAVAILABLE",
                                   "Cannot connect", "Connect call failed", "Server disconnected"))
