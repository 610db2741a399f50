"""A model on a Triton server, over HTTP or gRPC, as a runner: `infer(feeds) -> outputs` like every other backend."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tritongen.errors import TritongenError
from tritongen.runners.base import Runner

PROTOCOLS = ("http", "grpc")
Feeds = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]
DEFAULT_TIMEOUT_S = 60.0
_CLIENT_CODES = ("INVALID_ARGUMENT", "NOT_FOUND", "OUT_OF_RANGE", "FAILED_PRECONDITION", "UNIMPLEMENTED")


class TritonRequestError(TritongenError):
    """The server answered and refused the request (bad input, model error); `server_message` is its words."""

    def __init__(self, message: str, hint: str | None, server_message: str, status: str | None) -> None:
        super().__init__(message, hint)
        self.server_message = server_message
        self.status = status

    @property
    def client_fault(self) -> bool:
        """The server says the request is wrong (HTTP 4xx, gRPC INVALID_ARGUMENT and kin), not that it failed."""
        status = self.status or ""
        return status.startswith("4") or any(code in status for code in _CLIENT_CODES)


class TritonUnavailableError(TritongenError):
    """The server did not answer (not running, crashed, unreachable, timed out)."""


class TritonRunner(Runner):
    """Sends feeds to `model` on a Triton server; arrays travel as binary data (needed for FP16/BF16 over HTTP)."""

    def __init__(self, url: str, model: str, *, protocol: str = "http", version: str = "",
                 output_names: Sequence[str] | None = None, timeout_s: float | None = None,
                 concurrency: int = 1) -> None:
        if protocol not in PROTOCOLS:
            raise TritongenError(f"unknown protocol '{protocol}'", "use http or grpc")
        self.name = f"triton-{protocol}"
        self.url = url
        self.model = model
        self.protocol = protocol
        self.version = version
        self.output_names = list(output_names) if output_names else None
        self.timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
        self.concurrency = concurrency  # HTTP threads (each with its own connection) for `infer_many`
        self._client: Any = None

    @property
    def module(self) -> Any:
        if self.protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
        return module

    @property
    def client(self) -> Any:
        assert self._client is not None, "use the runner as a context manager"
        return self._client

    def activate(self) -> None:
        if self.protocol == "http":
            self._client = self.module.InferenceServerClient(self.url, connection_timeout=self.timeout_s,
                                                             network_timeout=self.timeout_s)
        else:
            self._client = self.module.InferenceServerClient(self.url, channel_args=grpc_channel_args())

    def deactivate(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs, outputs = self._request(feeds)
        try:
            if self.protocol == "http":
                result = self.client.infer(self.model, inputs, model_version=self.version, outputs=outputs)
            else:
                result = self.client.infer(self.model, inputs, model_version=self.version, outputs=outputs,
                                           client_timeout=self.timeout_s)
        except Exception as exc:  # tritonclient raises its own type, gevent/grpc/socket errors alike
            raise self._error_from(exc) from exc
        return self._outputs_of(result)

    def infer_many(self, feeds_list: Sequence[Feeds]) -> list[Outputs | TritongenError]:
        """Send all requests at once (asynchronously) and wait for every answer; failures come back in place."""
        if self.protocol == "http":
            return self._infer_many_http(feeds_list)
        requests = [self._request(feeds) for feeds in feeds_list]
        done = threading.Semaphore(0)
        answers: list[Any] = [None] * len(requests)

        def callback(index: int, result: Any, error: Any) -> None:
            answers[index] = (result, error)
            done.release()

        for index, (inputs, outputs) in enumerate(requests):
            # tritonclient calls back with keywords: callback(result=..., error=...).
            self.client.async_infer(self.model, inputs, functools.partial(callback, index),
                                    model_version=self.version, outputs=outputs, client_timeout=self.timeout_s)
        deadline = time.monotonic() + self.timeout_s + 5
        for _ in requests:
            if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
        gathered: list[dict[str, np.ndarray] | TritongenError] = []
        for answer in answers:
            if answer is None:
                gathered.append(TritonUnavailableError(f"no answer from {self.url} within {self.timeout_s:.0f} s",
                                                       "check that the server is running"))
            elif answer[1] is not None:
                gathered.append(self._error_from(answer[1]))
            else:
                gathered.append(self._outputs_of(answer[0]))
        return gathered

    def _infer_many_http(self, feeds_list: Sequence[Feeds]) -> list[Outputs | TritongenError]:
        # The HTTP client's async_infer sends one request at a time here (no batching ever formed); threads with a
        # client each do reach the server together.
        local = threading.local()
        opened: list[TritonRunner] = []

        def one(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | TritongenError:
            runner = getattr(local, "runner", None)
            if runner is None:
                runner = local.runner = TritonRunner(self.url, self.model, protocol="http", version=self.version,
                                                     output_names=self.output_names, timeout_s=self.timeout_s)
                runner.activate()
                opened.append(runner)
            try:
                return runner.infer(feeds)
            except TritongenError as exc:
                return exc

        try:
            with ThreadPoolExecutor(max(1, min(len(feeds_list), self.concurrency))) as pool:
                return list(pool.map(one, feeds_list))
        finally:
            for runner in opened:
                runner.deactivate()

    def _request(self, feeds: Mapping[str, np.ndarray]) -> tuple[list[Any], list[Any] | None]:
        from tritonclient.utils import np_to_triton_dtype

        inputs = []
        for name, array in feeds.items():
            array = np.ascontiguousarray(array)
            datatype = np_to_triton_dtype(array.dtype)
            if datatype is None:
                raise TritongenError(f"input '{name}' has dtype {array.dtype}, which Triton cannot receive",
                                     "use a numeric or bool array")
            tensor = self.module.InferInput(name, list(array.shape), datatype)
            if self.protocol == "http":
                tensor.set_data_from_numpy(array, binary_data=True)
            else:
                tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = None
        if self.output_names:
            if self.protocol == "http":
                outputs = [self.module.InferRequestedOutput(n, binary_data=True) for n in self.output_names]
            else:
                outputs = [self.module.InferRequestedOutput(n) for n in self.output_names]
        return inputs, outputs

    def _outputs_of(self, result: Any) -> dict[str, np.ndarray]:
        if self.output_names:
            names = self.output_names
        elif self.protocol == "http":
            names = [o["name"] for o in result.get_response()["outputs"]]
        else:
            names = [o.name for o in result.get_response().outputs]
        return {name: result.as_numpy(name) for name in names}

    def _error_from(self, exc: BaseException) -> TritongenError:
        from tritonclient.utils import InferenceServerException

        where = f"model '{self.model}' at {self.url} ({self.protocol.upper()})"
        if isinstance(exc, InferenceServerException):
            status = str(exc.status() or "")
            text = str(exc.message() or exc)
            unreachable = ("UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status
                           or any(s in text for s in ("Connection refused", "failed to connect", "Socket closed",
                                                      "timed out", "Deadline Exceeded", "Connection reset")))
            if not unreachable:
                return TritonRequestError(f"{where} refused the request: {text}",
                                          "check the request against the model's config.pbtxt", text, status or None)
            return TritonUnavailableError(f"no answer from {where}: {text}", "check that the server is running")
        return TritonUnavailableError(f"no answer from {where}: {type(exc).__name__}: {exc}",
                                      "check that the server is running")


def grpc_channel_args() -> list[tuple[str, int]]:
    """tritonclient's default channel options, plus: no HTTP proxy. gRPC would send even 127.0.0.1 through an
    http_proxy from the environment, and tritonclient's HTTP client ignores proxies: both protocols now agree."""
    from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.enable_http_proxy", 0),
    ]
