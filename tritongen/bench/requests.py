"""One inference request serialized once, as it goes over the wire, for a native load generator to replay.

gRPC: a `ModelInfer` request of Triton's `inference.GRPCInferenceService` (tensors in `raw_input_contents`, as
tritonclient sends them) in gRPC's length-prefixed framing (a 0 byte: not compressed, then the length as 4 bytes big
endian), posted to `/inference.GRPCInferenceService/ModelInfer` with `content-type: application/grpc` and
`te: trailers`. HTTP: KServe v2's binary tensor extension: a JSON header naming each input's `binary_data_size`,
followed by the raw bytes, posted to `/v2/models/<model>/infer` with `Inference-Header-Content-Length`.

`probe` sends the exact bytes once and returns what a successful answer looks like, so a request the server refuses
is one clear error before any load runs, and the size of a gRPC answer (whose status travels in trailers that
h2load does not read) can be checked for every response of a window.
"""

from __future__ import annotations

import http.client
import json
import struct
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np

from tritongen.bench.settings import REQUEST_TIMEOUT_S
from tritongen.bench.workload import Workload

GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class WireRequest:
    """A request as bytes, and how to send it."""

    protocol: str  # grpc | http
    address: str  # host:port of the endpoint
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...]

    @property
    def url(self) -> str:
        return f"http://{self.address}{self.path}"


def _triton_dtype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(array.dtype)


def _raw(array: np.ndarray) -> bytes:
    if array.dtype == np.object_:  # BYTES tensors: each element length-prefixed, as tritonclient serializes them
        from tritonclient.utils import serialize_byte_tensor

        return serialize_byte_tensor(array).item()  # a 0-d object array holding the bytes (not a buffer of them)
    return np.ascontiguousarray(array).tobytes()


def grpc_message(model: str, workload: Workload) -> bytes:
    """The serialized `ModelInferRequest` (without gRPC's framing)."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    for name, array in workload.inputs.items():
        tensor = request.inputs.add(name=name, datatype=_triton_dtype(array))
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(_raw(array))
    for name in workload.outputs:
        request.outputs.add(name=name)
    return request.SerializeToString()


def grpc_frame(message: bytes) -> bytes:
    """gRPC's length-prefixed message: uncompressed flag, 4-byte big-endian length, the message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_request(address: str, model: str, workload: Workload) -> WireRequest:
    return WireRequest("grpc", address, GRPC_PATH, grpc_frame(grpc_message(model, workload)),
                       (("content-type", "application/grpc"), ("te", "trailers")))


def http_request(address: str, model: str, workload: Workload) -> WireRequest:
    """KServe v2 with binary tensors: the JSON header, then every input's bytes in the header's order."""
    raws = {name: _raw(array) for name, array in workload.inputs.items()}
    header = {
        "inputs": [{"name": name, "shape": list(array.shape), "datatype": _triton_dtype(array),
                    "parameters": {"binary_data_size": len(raws[name])}} for name, array in workload.inputs.items()],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in workload.outputs],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return WireRequest("http", address, f"/v2/models/{quote(model, safe='')}/infer", head + b"".join(raws.values()),
                       (("Inference-Header-Content-Length", str(len(head))),
                        ("Content-Type", "application/octet-stream")))


def wire_request(protocol: str, address: str, model: str, workload: Workload) -> WireRequest:
    return (grpc_request if protocol == "grpc" else http_request)(address, model, workload)


@dataclass(frozen=True)
class ProbeResult:
    """One request sent with the exact bytes a generator will send."""

    ok: bool
    response_bytes: int  # of a successful answer: the gRPC message with its 5-byte frame, or the HTTP body
    error: str | None = None  # the server's status and message, one line
    unreachable: bool = False  # no answer at all: the server is down, not the request wrong


def probe(request: WireRequest, timeout_s: float = REQUEST_TIMEOUT_S) -> ProbeResult:
    """Send `request` once; what came back."""
    return (_probe_grpc if request.protocol == "grpc" else _probe_http)(request, timeout_s)


def _probe_grpc(request: WireRequest, timeout_s: float) -> ProbeResult:
    import grpc

    with grpc.insecure_channel(request.address) as channel:
        call = channel.unary_unary(request.path)  # no (de)serializers: bytes in, bytes out
        try:
            answer = call(request.body[5:], timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            text = f"[{code}] {details}" if code is not None else str(details)
            return ProbeResult(False, 0, _one_line(text), unreachable=code == grpc.StatusCode.UNAVAILABLE)
    return ProbeResult(True, 5 + len(answer))


def _probe_http(request: WireRequest, timeout_s: float) -> ProbeResult:
    host, _, port = request.address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)  # never through a proxy
    try:
        connection.request("POST", request.path, body=request.body, headers=dict(request.headers))
        response = connection.getresponse()
        body = response.read()
    except OSError as exc:
        return ProbeResult(False, 0, _one_line(f"{type(exc).__name__}: {exc}"), unreachable=True)
    finally:
        connection.close()
    if response.status != 200:
        try:
            message = json.loads(body).get("error", "")
        except (ValueError, AttributeError):
            message = body[:200].decode(errors="replace")
        return ProbeResult(False, 0, _one_line(f"[HTTP {response.status}] {message}"))
    return ProbeResult(True, len(body))


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else "unknown error"
