"""Values made up for tests of what is computed from them (no server): reports, and a workload of two inputs."""

from __future__ import annotations

import numpy as np

from tritongen.bench import BenchReport, Ceiling, GeneratorCheck, LatencyStats, LoadPoint, ServerStats, Workload

WORKLOAD = Workload("two", {"x": np.arange(8, dtype=np.float32).reshape(2, 4),
                            "ids": np.array([[1, 2], [3, 4]], dtype=np.int64)}, ("y", "z"), 2, {})


def point(concurrency: int, throughput: float, requests: int = 100) -> LoadPoint:
    return LoadPoint(concurrency=concurrency, batch_size=1, seconds=1.0, requests=requests, errors=0,
                     throughput=throughput, latency=LatencyStats.of([0.001, 0.002]),
                     server=ServerStats(requests, requests, requests, 1.0, 0.1, 0.5, 0.7, {1: requests}),
                     client_cpu_us_per_request=400.0, client_cpu_share=0.2, machine_busy=None)


def report(points: tuple[LoadPoint, ...], ceiling: float | None) -> BenchReport:
    cap = None if ceiling is None else Ceiling("m.onnx", 1, 2, 8, ceiling, {1: ceiling / 4, 8: ceiling}, {1: 1, 8: 2})
    return BenchReport(model="m", version="1", server="s", served_by="python backend", protocol="grpc", batch_size=1,
                       lengths={}, duration_s=1.0, requests_per_point=None,
                       config={"instances": 1, "max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 100,
                               "preferred_batch_sizes": [], "intra_op_threads": 2}, points=points, ceiling=cap,
                       generator=GeneratorCheck(400.0, 0.2, 2500.0), cpus=2, load_average=(0.1, 0.1, 0.1),
                       started="now")
