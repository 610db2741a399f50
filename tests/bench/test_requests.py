"""Requests serialized once for a native generator: gRPC framing around a ModelInferRequest, KServe v2 binary bodies.
(The server's answers to these bytes are checked in test_load.py.)"""

from __future__ import annotations

import json
import struct

import numpy as np

from tests.bench.reports import WORKLOAD
from tritongen.bench.requests import GRPC_PATH, grpc_request, http_request, wire_request


def test_grpc_request_is_a_framed_model_infer_request() -> None:
    from tritonclient.grpc import service_pb2

    request = grpc_request("127.0.0.1:8001", "two", WORKLOAD)
    assert request.url == f"http://127.0.0.1:8001{GRPC_PATH}"
    assert dict(request.headers) == {"content-type": "application/grpc", "te": "trailers"}
    flag, length = request.body[0], struct.unpack(">I", request.body[1:5])[0]
    assert flag == 0 and length == len(request.body) - 5
    message = service_pb2.ModelInferRequest.FromString(request.body[5:])
    assert message.model_name == "two" and [o.name for o in message.outputs] == ["y", "z"]
    assert [(t.name, t.datatype, list(t.shape)) for t in message.inputs] == [("x", "FP32", [2, 4]),
                                                                             ("ids", "INT64", [2, 2])]
    assert np.array_equal(np.frombuffer(message.raw_input_contents[0], np.float32).reshape(2, 4), WORKLOAD.inputs["x"])
    assert np.array_equal(np.frombuffer(message.raw_input_contents[1], np.int64).reshape(2, 2), WORKLOAD.inputs["ids"])


def test_http_request_is_a_json_header_then_binary_tensors() -> None:
    request = http_request("127.0.0.1:8000", "my model", WORKLOAD)
    assert request.path == "/v2/models/my%20model/infer" and wire_request("http", "h:1", "m", WORKLOAD).protocol == "http"
    headers = dict(request.headers)
    head_length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(request.body[:head_length])
    assert [(i["name"], i["shape"], i["datatype"], i["parameters"]["binary_data_size"]) for i in header["inputs"]] == \
        [("x", [2, 4], "FP32", 32), ("ids", [2, 2], "INT64", 32)]
    assert [o["name"] for o in header["outputs"]] == ["y", "z"] and header["outputs"][0]["parameters"]["binary_data"]
    rest = request.body[head_length:]
    assert rest == WORKLOAD.inputs["x"].tobytes() + WORKLOAD.inputs["ids"].tobytes()


def test_strings_go_length_prefixed_as_tritonclient_sends_them() -> None:
    from tritonclient.grpc import service_pb2

    from tritongen.bench.workload import Workload

    texts = Workload("p", {"text": np.array([[b"hi"], ["h\u00e9"]], dtype=object)}, ("label",), 2, {})
    expected = struct.pack("<I", 2) + b"hi" + struct.pack("<I", 3) + "h\u00e9".encode()
    message = service_pb2.ModelInferRequest.FromString(grpc_request("h:1", "p", texts).body[5:])
    assert message.inputs[0].datatype == "BYTES" and message.raw_input_contents[0] == expected
    body = http_request("h:1", "p", texts).body
    assert body.endswith(expected) and f'"binary_data_size":{len(expected)}'.encode() in body
