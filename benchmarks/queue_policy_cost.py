"""What a dynamic-batcher queue policy costs on Triton 2.51, and what a second instance gets back.

    .venv/bin/python benchmarks/queue_policy_cost.py [--duration 3] [--rounds 3]

Triton's batcher prepares the next batch while one runs only when the model has no queue policy and no priority
levels (Triton core, PriorityQueue::support_prefetching_). With one, it waits for an idle instance, and 2.51 can miss
that wake-up for up to 500 ms (its batcher thread's default wait). This serves the small CNN (tests/models.py
SmallCNN) with the config `build` writes, with and without `max_queue_size: 64`, with 1 and 2 instances, side by side
on one embedded server, and drives each at concurrency 1, 4 and 16 in alternating rounds (order turned by one each
round). It prints the median throughput, p99 and the worst latency of every cell: the numbers behind
`tritongen.config.QUEUE_POLICY_COST` and the 2-instance default with a queue policy.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

CONCURRENCIES = (1, 4, 16)
VARIANTS = {  # name -> (instances, queue policy)
    "1 inst, no policy": (1, False), "1 inst, max_queue_size 64": (1, True),
    "2 inst, no policy": (2, False), "2 inst, max_queue_size 64": (2, True),
}


def variant_config(text: str, instances: int, policy: bool) -> str:
    text = re.sub(r"count: \d+", f"count: {instances}", text)
    text = re.sub(r"  default_queue_policy \{.*?\n  \}\n", "", text, flags=re.S)
    if policy:
        text = text.replace("dynamic_batching {\n", "dynamic_batching {\n  default_queue_policy { max_queue_size: 64 }\n")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement window")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import os

    import torch

    from benchmarks.served_throughput import add_variant
    from tests import models
    from tritongen.bench import LoadSettings, make_workload, measure_point, model_spec
    from tritongen.build import BuildOptions, build_model
    from tritongen.config import read_config
    from tritongen.server import serve

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="tritongen-queue-cost-") as tmp:
        workdir = Path(tmp)
        repository = workdir / "repo"
        torch.save(models.SmallCNN().eval().state_dict(), workdir / "cnn.pt")
        build_model(BuildOptions(workdir / "cnn.pt", name="cnn", model_class="tests.models:SmallCNN",
                                 inputs=("image:3x32x32:fp32",), repository=repository, deploy=False))
        base = (repository / "cnn" / "config.pbtxt").read_text()
        names = {}
        for i, (label, (instances, policy)) in enumerate(VARIANTS.items()):
            names[label] = f"cnn_{i}"
            add_variant(repository, "cnn", names[label], variant_config(base, instances, policy))
        workload = make_workload("cnn", model_spec(repository / "cnn", read_config(repository / "cnn")), 1)
        settings = LoadSettings(duration_s=args.duration)
        cells: dict[tuple[str, int], list] = {}
        with serve(repository, "embedded", models=list(names.values())) as served:
            url = served.handle.grpc_url
            for model in names.values():  # warm up every batch size
                measure_point(url, workload, 16, LoadSettings(duration_s=1.0, settle_s=0.0), model=model)
            jobs = [(label, c) for label in VARIANTS for c in CONCURRENCIES]
            for r in range(args.rounds):
                for label, c in jobs[r % len(jobs):] + jobs[:r % len(jobs)]:
                    point = measure_point(url, workload, c, settings, model=names[label])
                    cells.setdefault((label, c), []).append(point)
                    print(f"  round {r + 1} {label:<26} conc {c:>2} {point.throughput:8,.0f} inf/s  "
                          f"p99 {point.latency.p99:7.1f} ms  max {point.latency.max:7.1f} ms  ({point.generator})",
                          flush=True)
    print(f"\nmedians of {args.rounds} rounds of {args.duration:g} s (inf/s, p99 ms, worst ms):")
    print(f"{'':<26}" + "".join(f"{'conc ' + str(c):>28}" for c in CONCURRENCIES))
    for label in VARIANTS:
        row = []
        for c in CONCURRENCIES:
            points = cells[(label, c)]
            row.append(f"{statistics.median(p.throughput for p in points):9,.0f} "
                       f"{statistics.median(p.latency.p99 for p in points):7.1f} "
                       f"{max(p.latency.max for p in points):7.1f}   ")
        print(f"{label:<26}" + "".join(f"{cell:>28}" for cell in row))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
