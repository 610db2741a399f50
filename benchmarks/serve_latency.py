"""Latency of one request at batch 1: the embedded Triton over HTTP and gRPC versus ONNX Runtime in-process.

    .venv/bin/python benchmarks/serve_latency.py                      # builds a small CNN first (about 10 s)
    .venv/bin/python benchmarks/serve_latency.py --repository R --model M --requests 2000 --json

The embedded server runs the model through the python backend (the `python` format, or the python runner for an
ONNX model), so the overhead measured is Triton's request handling plus the python backend's shared-memory hop.
Requests are sent one after another (no concurrency): this is latency, not throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


def build_small_cnn(workdir: Path) -> tuple[Path, str]:
    """tests.models.SmallCNN (image:3x32x32:fp32 -> 10 logits) built in the python format."""
    import torch

    sys.path.insert(0, str(REPO_ROOT))
    from tests.models import SmallCNN
    from tritongen.build import BuildOptions, build_model

    torch.manual_seed(0)
    checkpoint = workdir / "cnn.pt"
    torch.save(SmallCNN().eval().state_dict(), checkpoint)
    build_model(BuildOptions(checkpoint, name="cnn", model_class="tests.models:SmallCNN", inputs=("image:3x32x32:fp32",),
                             formats=("python",), repository=workdir / "repository", deploy=False,
                             pythonpath=(REPO_ROOT,)))
    return workdir / "repository", "cnn"


def latencies_ms(call: Callable[[], object], requests: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        call()
    out = np.empty(requests)
    for i in range(requests):
        start = time.perf_counter()
        call()
        out[i] = (time.perf_counter() - start) * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, help="A repository built by tritongen (default: build a small CNN).")
    parser.add_argument("--model", help="Model to measure (default: the only one, or cnn).")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="Print the numbers as JSON.")
    args = parser.parse_args()

    from tritongen.repository import load_reference, versions_of
    from tritongen.runners.onnxruntime import OnnxRuntimeRunner
    from tritongen.runners.triton import TritonRunner
    from tritongen.server import serve

    with tempfile.TemporaryDirectory(prefix="tritongen-bench-") as tmp:
        if args.repository:
            repository, model = args.repository, args.model
            if model is None:
                names = [p.name for p in repository.iterdir() if (p / "config.pbtxt").exists()]
                if len(names) != 1:
                    parser.error(f"the repository has {len(names)} models; pick one with --model")
                model = names[0]
        else:
            print("building a small CNN (tests.models.SmallCNN) ...", file=sys.stderr)
            repository, model = build_small_cnn(Path(tmp))
        version_dir = repository / model / str(versions_of(repository / model)[-1])
        inputs, _ = load_reference(version_dir)
        single = {k: v[:1] for k, v in inputs.items()}  # batch 1
        onnx_path = version_dir / "model.onnx"

        results: dict[str, np.ndarray] = {}
        with OnnxRuntimeRunner(onnx_path) as ort_runner:
            results["onnxruntime in-process"] = latencies_ms(lambda: ort_runner.infer(single), args.requests, args.warmup)
        with serve(repository, models=[model]) as served:
            handle, served_by = served.handle, served.model(model).served_by
            for protocol, url in (("http", handle.http_url), ("grpc", handle.grpc_url)):
                with TritonRunner(url, model, protocol=protocol) as runner:
                    results[f"triton {protocol.upper()}"] = latencies_ms(lambda r=runner: r.infer(single),
                                                                         args.requests, args.warmup)

    base = float(np.percentile(results["onnxruntime in-process"], 50))
    rows = []
    for name, values in results.items():
        p50, p99 = float(np.percentile(values, 50)), float(np.percentile(values, 99))
        rows.append({"path": name, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                     "mean_ms": round(float(values.mean()), 3), "overhead_p50_ms": round(p50 - base, 3)})
    meta = {"model": model, "served_by": served_by, "server": handle.description, "requests": args.requests,
            "batch": 1, "cpus": len(os.sched_getaffinity(0)),
            "inputs": {k: f"{list(v.shape)} {v.dtype}" for k, v in single.items()}}
    if args.json:
        print(json.dumps({**meta, "results": rows}, indent=2))
        return
    print(f"model {model} (batch 1, {args.requests} sequential requests, {meta['cpus']} CPUs), served by {served_by}")
    print(f"{'path':<26}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'p50 overhead':>15}")
    for row in rows:
        print(f"{row['path']:<26}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}{row['mean_ms']:>10.3f}"
              f"{row['overhead_p50_ms']:>+13.3f} ms")


if __name__ == "__main__":
    main()
