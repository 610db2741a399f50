"""Overload protection as generated: the dynamic batcher's queue policy in the config tritongen renders, proven on the
embedded tritonserver driven far above its capacity.

The model sleeps 50 ms per execution of at most 4 items, in 2 instances (capacity: at most 160 requests/s) so that
the load, not this machine's CPUs, sets the pace; a client whose request was refused tries again after half a second,
as a client told "unavailable" does. Timings on this shared 2-CPU machine are noisy: the assertions are ratios with
wide margins and the lower bound that the model's capacity sets. With `max_queue_size`, requests beyond the queue are
refused at once with the status a client can act on (HTTP 503, gRPC UNAVAILABLE) and the accepted ones keep a bounded
latency; without it, every request is accepted and latency grows with the load.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.load import percentile, run_for
from tritongen.config import ModelConfig, QueuePolicy, parse_config, render_config
from tritongen.spec import ModelSpec, parse_input_spec

pytestmark = [pytest.mark.server, pytest.mark.slow]

SLEEP_S = 0.05
MAX_BATCH = 4
INSTANCES = 2
QUEUE = 8
SECONDS = 4.0
BACKOFF_S = 0.5
SLOW_MODEL = f"""
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep({SLEEP_S})  # one execution, whatever its batch: a fixed capacity
        return [pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy())])
                for r in requests]
"""


def slow_config(name: str, queue: QueuePolicy) -> str:
    spec = ModelSpec(inputs=(parse_input_spec("x:4:fp32"),), outputs=(parse_input_spec("y:4:fp32"),),
                     max_batch_size=MAX_BATCH)
    # Two instances for both: what build writes with a queue policy (one would stall Triton's batcher, see
    # tritongen.config.batches_prefetched), and the same capacity with and without it.
    return render_config(ModelConfig(name, spec, format="python", kind="cpu", max_queue_delay_us=0, warmup=False,
                                     instance_count=INSTANCES, queue=queue, source="tests/test_queue_policy.py"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tritongen.server import launch

    repository = tmp_path_factory.mktemp("overload") / "repository"
    for name, queue in (("bounded", QueuePolicy(max_queue_size=QUEUE)), ("unbounded", QueuePolicy())):
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(slow_config(name, queue))
        (repository / name / "1" / "model.py").write_text(SLOW_MODEL)
    with launch(repository, "embedded") as handle:
        yield handle


def test_generated_queue_policy_parses_and_explains_its_defaults():
    text = slow_config("m", QueuePolicy(max_queue_size=QUEUE, timeout_us=5000, allow_timeout_override=True))
    policy = parse_config(text).dynamic_batching.default_queue_policy
    assert (policy.max_queue_size, policy.default_timeout_microseconds, policy.allow_timeout_override) == (QUEUE, 5000, True)
    assert "HTTP 503 / gRPC UNAVAILABLE" in text and "The cost of a queue policy" in text
    default = slow_config("m", QueuePolicy())
    # Triton's defaults are no policy at all: with one, the batcher stops preparing batches ahead.
    assert "No queue policy" in default and "--max-queue-size" in default
    assert not parse_config(default).dynamic_batching.HasField("default_queue_policy")


def load(handle: object, model: str, concurrency: int) -> dict[str, object]:
    """`concurrency` requests in flight in all, half over HTTP and half over gRPC, for SECONDS."""
    urls = {"http": handle.http_url, "grpc": handle.grpc_url}  # type: ignore[attr-defined]
    answers = run_for(urls, model, {"x": np.ones((1, 4), np.float32)}, "y", concurrency // 2, SECONDS,
                      backoff_s=BACKOFF_S)
    accepted = [a.seconds for a in answers if a.ok]
    refused = [a for a in answers if not a.ok]
    return {"sent": len(answers), "accepted": len(accepted), "refused": refused,
            "accepted_p99_s": percentile(accepted, 99), "refused_p99_s": percentile([a.seconds for a in refused], 99)}


def triton_p99_ms(handle: object) -> dict[str, float]:
    """Per model, the request p99 Triton itself measured (--metrics-config=summary_latencies=true), in ms."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"http://{handle.metrics_url}/metrics", timeout=10) as response:  # type: ignore[attr-defined]
        text = response.read().decode()
    found = re.findall(r'^nv_inference_request_summary_us\{model="(\w+)",version="1",quantile="0.99"\} (\S+)$', text, re.M)
    return {model: round(float(value) / 1000) for model, value in found}


def test_queue_policy_refuses_excess_fast_and_bounds_the_latency_of_accepted_requests(server):
    runs = (("unbounded", 64), ("unbounded", 256), ("bounded", 256))
    results = {(model, c): load(server, model, c) for model, c in runs}
    server_p99 = triton_p99_ms(server)
    print(f"\nTriton's own request p99 (summary over its window): {server_p99}")
    for (model, c), r in results.items():
        print(f"\n{model} c={c}: sent {r['sent']}, accepted {r['accepted']}, refused {len(r['refused'])}, "
              f"accepted p99 {r['accepted_p99_s'] * 1000:.0f} ms, refused p99 {r['refused_p99_s'] * 1000:.0f} ms")
    unbounded, bounded = results[("unbounded", 256)], results[("bounded", 256)]
    # Without a queue limit nothing is refused, and latency grows with the load (closed loop: concurrency/capacity).
    assert not unbounded["refused"] and not results[("unbounded", 64)]["refused"]
    assert unbounded["accepted_p99_s"] > 2.5 * results[("unbounded", 64)]["accepted_p99_s"]
    assert unbounded["accepted_p99_s"] > 256 / (INSTANCES * MAX_BATCH / SLEEP_S) * 0.8  # the 256th waits for 255 at <= 160/s
    # With it, the excess is refused with a status a client can act on ...
    refused = bounded["refused"]
    assert len(refused) > bounded["accepted"]
    assert {a.status for a in refused if a.protocol == "http"} == {"503"}
    assert {a.status for a in refused if a.protocol == "grpc"} == {"StatusCode.UNAVAILABLE"}
    assert all("Exceeds maximum queue size" in (a.error or "") for a in refused)
    # ... fast, and the accepted requests wait at most a queue's worth: a fraction of the unbounded latency.
    assert bounded["refused_p99_s"] < bounded["accepted_p99_s"]
    assert bounded["accepted_p99_s"] < unbounded["accepted_p99_s"] / 3
