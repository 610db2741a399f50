"""Triton 2.51's Prometheus metrics (port 8002, `/metrics`), and the PromQL the monitoring files build from them.

Every name was read from a real tritonserver 2.51's `/metrics` here (tests/deploy/test_metrics_names.py checks them
again). Counters and summaries carry the labels `model` and `version`; `nv_inference_request_failure` also `reason`
(OTHER, CANCELED, BACKEND, REJECTED). Requests a full queue refuses (`max_queue_size`) are not counted by any of
them in 2.51 (measured): clients see them as HTTP 503 / gRPC UNAVAILABLE.
"""

from __future__ import annotations

# Counters, per model and version.
REQUEST_SUCCESS = "nv_inference_request_success"
REQUEST_FAILURE = "nv_inference_request_failure"
INFERENCE_COUNT = "nv_inference_count"  # items: a batch of n counts n
EXEC_COUNT = "nv_inference_exec_count"  # batches the model ran
REQUEST_DURATION = "nv_inference_request_duration_us"
QUEUE_DURATION = "nv_inference_queue_duration_us"
COMPUTE_INPUT_DURATION = "nv_inference_compute_input_duration_us"
COMPUTE_INFER_DURATION = "nv_inference_compute_infer_duration_us"
COMPUTE_OUTPUT_DURATION = "nv_inference_compute_output_duration_us"
CACHE_HITS = "nv_cache_num_hits_per_model"  # with response_cache and --cache-config only
CACHE_MISSES = "nv_cache_num_misses_per_model"
# Gauges.
PENDING_REQUESTS = "nv_inference_pending_request_count"  # per model and version
CPU_UTILIZATION = "nv_cpu_utilization"  # 0..1, the whole machine (container) as /proc says
CPU_MEMORY_USED = "nv_cpu_memory_used_bytes"
CPU_MEMORY_TOTAL = "nv_cpu_memory_total_bytes"
# GPU metrics come from DCGM and exist only on a server with a GPU (never here): names from Triton's metrics docs.
GPU_UTILIZATION = "nv_gpu_utilization"
GPU_MEMORY_USED = "nv_gpu_memory_used_bytes"
GPU_MEMORY_TOTAL = "nv_gpu_memory_total_bytes"
GPU_METRICS = (GPU_UTILIZATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL)
# Summaries (`--metrics-config=summary_latencies=true`): `{quantile="0.99"}` series plus `_count` and `_sum`.
REQUEST_SUMMARY = "nv_inference_request_summary_us"
QUEUE_SUMMARY = "nv_inference_queue_summary_us"
COMPUTE_INFER_SUMMARY = "nv_inference_compute_infer_summary_us"

# The per-request stages of a request's latency, in the order they happen.
STAGES = (("queue", QUEUE_DURATION), ("compute input", COMPUTE_INPUT_DURATION),
          ("compute infer", COMPUTE_INFER_DURATION), ("compute output", COMPUTE_OUTPUT_DURATION))

JOB = "triton"  # the scrape job of the generated prometheus.yml; every rule selects it
# Below this request rate (requests/s) a per-request ratio is 0 instead of 0/0: an idle model is not slow.
IDLE_RATE = 0.001


def selector(**labels: str) -> str:
    """A label selector body: `job="triton",model="m"`; a value starting with `=~` is a regular expression."""
    parts = []
    for key, value in labels.items():
        parts.append(f'{key}=~"{value[2:]}"' if value.startswith("=~") else f'{key}="{value}"')
    return ",".join(parts)


def rate(metric: str, where: str, window: str, by: str = "model, version") -> str:
    return f"sum by ({by}) (rate({metric}{{{where}}}[{window}]))"


def per_request(metric: str, where: str, window: str, by: str = "model, version") -> str:
    """Microseconds of `metric` per successful request over `window` (0 while idle, never 0/0)."""
    return (f"{rate(metric, where, window, by)} / clamp_min({rate(REQUEST_SUCCESS, where, window, by)}, "
            f"{IDLE_RATE})")


def per_execution(metric: str, where: str, window: str, by: str = "model, version") -> str:
    """`metric` per batch the model ran: with nv_inference_count, the average batch size."""
    return f"{rate(metric, where, window, by)} / clamp_min({rate(EXEC_COUNT, where, window, by)}, {IDLE_RATE})"
