"""The Triton metrics that autoscaling reads, and the PromQL built from them.

Triton exports cumulative counters on its metrics port (8002): total microseconds requests spent queued, and
the number of successful requests, per model and version. Queue time per request is the signal to scale on: it
grows as soon as a replica has more requests than instances to run them, before latency budgets break, and it
does not depend on how fast the model is (GPU utilisation does not see a CPU-bound python step; request rate
needs to know each replica's capacity). Every name here was checked against a real server's `/metrics`.
"""

from __future__ import annotations

# Triton 2.51 metric names (tritonserver --metrics-port, /metrics), counters with labels model and version: the one
# list of names is tritongen.deploy.metrics.
from tritongen.deploy.metrics import QUEUE_DURATION, REQUEST_SUCCESS  # noqa: E402

TRITON_METRICS = (QUEUE_DURATION, REQUEST_SUCCESS)

# The custom metric the Prometheus adapter serves to the HPA: the Triton counter it comes from, per request.
HPA_METRIC_SUFFIX = "_per_request"
HPA_METRIC = QUEUE_DURATION + HPA_METRIC_SUFFIX

# Long enough for four scrapes at the monitors' 15 s interval: rate() needs at least two samples.
RATE_WINDOW = "1m"
SCRAPE_INTERVAL = "15s"
# Below this request rate (requests/s) the queue time is reported as 0 instead of 0/0: an idle replica is not slow.
IDLE_RATE = 0.001


def queue_time_per_request(selector: str, by: str | None = None, window: str = RATE_WINDOW) -> str:
    """PromQL: mean queue time per request in microseconds over `window`, for the series that `selector` picks.

    `selector` is the inside of a label selector (`pod=~"triton-.*"`); `by` groups the result (`pod`).
    Summed over every model in the pod: a replica is as slow as its busiest queue makes its requests.
    """
    group = f" by ({by})" if by else ""
    return (f"sum(rate({QUEUE_DURATION}{{{selector}}}[{window}])){group}"
            f" / clamp_min(sum(rate({REQUEST_SUCCESS}{{{selector}}}[{window}])){group}, {IDLE_RATE})")


def request_rate(selector: str, window: str = RATE_WINDOW) -> str:
    """PromQL: successful requests per second over `window`, summed over the series that `selector` picks."""
    return f"sum(rate({REQUEST_SUCCESS}{{{selector}}}[{window}]))"


def adapter_rule() -> dict[str, object]:
    """The Prometheus adapter rule that serves HPA_METRIC per pod (prometheus-adapter's config format).

    `<<.LabelMatchers>>` and `<<.GroupBy>>` are filled in by the adapter with the HPA's namespace and pods.
    """
    return {
        "seriesQuery": f'{QUEUE_DURATION}{{namespace!="",pod!=""}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^({QUEUE_DURATION})$", "as": "${1}" + HPA_METRIC_SUFFIX},
        "metricsQuery": queue_time_per_request("<<.LabelMatchers>>", by="<<.GroupBy>>"),
    }
