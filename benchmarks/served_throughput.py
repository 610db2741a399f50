"""Served throughput on this machine, as ratios measured in one run (issue 6's targets).

    .venv/bin/python benchmarks/served_throughput.py [--duration 5] [--rounds 3] [--workdir DIR]

(a) a ResNet-18-sized CNN (examples/make_checkpoint.py TinyResNet(width=64, stages=4), 11.2 M parameters,
    image 3x64x64) served with the config `build` generates, at concurrency 16, against the in-process ONNX Runtime
    ceiling of the same ONNX file (best batch size, the served model's thread settings, measured in the same rounds
    while the server idles);                                                                    target >= 0.8
(b) a small CNN (tests/models.py SmallCNN, ~0.02 ms per item in ONNX Runtime): the generated config against a naive
    one (no dynamic batching, one instance), both at concurrency 16;                            target >= 1.5
(c) the same small CNN: the config `tritongen tune` writes against the generated one, at concurrency 16;
                                                                                                target >= 1.1
Every served number comes from the embedded Triton (python backend around the ONNX file: it has no onnxruntime
backend), driven by `tritongen.bench`'s load generator on the same 2 CPUs: h2load where it is installed (--generator
auto), else the Python one. The no-op model is also driven by the Python generator in every round, so the two
generators' requests per client CPU-second are compared in the same run. All models are served side by side by
one server and everything is measured in alternating rounds, in an order turned by one each round, so drift on a
shared machine and the place in a round hit every number alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # tests.models and examples.make_checkpoint hold the model classes

CONCURRENCY = 16


def build_models(workdir: Path) -> Path:
    """`resnet` and `cnn`, built by `tritongen build` with its defaults (max batch 32, 1 instance, 100 µs delay)."""
    import torch

    from examples.make_checkpoint import TinyResNet
    from tests import models
    from tritongen.build import BuildOptions, build_model

    repository = workdir / "repo"
    torch.manual_seed(0)
    resnet = TinyResNet(width=64, stages=4).eval()
    torch.save(resnet.state_dict(), workdir / "resnet.pt")
    torch.save(models.SmallCNN().eval().state_dict(), workdir / "cnn.pt")
    print(f"building resnet ({sum(p.numel() for p in resnet.parameters()) / 1e6:.1f} M parameters) and cnn ...",
          flush=True)
    build_model(BuildOptions(workdir / "resnet.pt", name="resnet", model_class="examples.make_checkpoint:TinyResNet",
                             model_kwargs='{"width": 64, "stages": 4}', inputs=("image:3x64x64:fp32",),
                             repository=repository, deploy=False))
    build_model(BuildOptions(workdir / "cnn.pt", name="cnn", model_class="tests.models:SmallCNN",
                             inputs=("image:3x32x32:fp32",), repository=repository, deploy=False))
    return repository


def add_variant(repository: Path, source: str, name: str, config_text: str) -> None:
    """A copy of model `source` under `name` with another config (version files hard-linked, not copied)."""
    from google.protobuf import text_format

    from tritongen.config import parse_config

    shutil.copytree(repository / source, repository / name, copy_function=os.link,
                    ignore=shutil.ignore_patterns("config.pbtxt*"))
    proto = parse_config(config_text)
    proto.name = name
    (repository / name / "config.pbtxt").write_text(text_format.MessageToString(proto))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement window")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of every measurement")
    parser.add_argument("--tune-trials", type=int, default=12)
    parser.add_argument("--workdir", type=Path, help="keep the models here (default: a temporary directory)")
    parser.add_argument("--generator", choices=("auto", "h2load", "python"), default="auto")
    args = parser.parse_args()

    from google.protobuf import text_format

    from tritongen.bench import (
        LoadSettings,
        batch_sizes_to_try,
        describe_generator,
        make_workload,
        measure_point,
        model_spec,
        onnx_ceiling,
        write_noop_model,
    )
    from tritongen.config import parse_config
    from tritongen.server import launch
    from tritongen.server.local import find_tritonserver
    from tritongen.server.stage import read_config, stage_repository
    from tritongen.tune import TrialConfig, tune_model

    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} on "
          f"{os.cpu_count()} CPUs", flush=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tritongen-served-"))
    workdir.mkdir(parents=True, exist_ok=True)
    repository = build_models(workdir)
    settings = LoadSettings(duration_s=args.duration, generator=args.generator)
    python = replace(settings, generator="python")
    print(f"load generator: {describe_generator(settings)}", flush=True)

    # (c) first: tune a copy of the small CNN (tune writes into its own repository and validates what it wrote).
    print("(c) tuning a copy of cnn at concurrency 16 ...", flush=True)
    tune_repo = workdir / "tune-repo"
    shutil.rmtree(tune_repo, ignore_errors=True)
    tune_repo.mkdir()
    shutil.copytree(repository / "cnn", tune_repo / "cnn")
    tuned = tune_model(tune_repo, "cnn", concurrencies=(CONCURRENCY,), max_trials=args.tune_trials,
                       settings=replace(settings, duration_s=max(2.0, args.duration / 2)), validate=True,
                       on_trial=lambda t: print(f"    trial {t.index:>2} {t.role:<13} {t.config.describe():<72} "
                                                f"{t.throughput or 0:8,.1f} inf/s", flush=True))
    generated_text = (repository / "cnn" / "config.pbtxt").read_text()
    add_variant(repository, "cnn", "cnn_tuned", (tune_repo / "cnn" / "config.pbtxt").read_text())
    # (b) the naive config: one instance, no dynamic batching (every request runs alone).
    naive = TrialConfig(instances=1, max_batch_size=32, max_queue_delay_us=None).apply(parse_config(generated_text))
    add_variant(repository, "cnn", "cnn_naive", text_format.MessageToString(naive))

    # (a) the ceiling's best batch size, from a sweep before any server runs.
    resnet_config = read_config(repository / "resnet")
    resnet_spec = model_spec(repository / "resnet", resnet_config)
    resnet_onnx = repository / "resnet" / "1" / "model.onnx"
    print("(a) in-process ONNX Runtime sweep over batch sizes for resnet ...", flush=True)
    sweep = onnx_ceiling(resnet_onnx, resnet_spec, {}, batch_sizes=batch_sizes_to_try(32), seconds_per_size=2.0)
    print("    " + ", ".join(f"batch {b}: {v:.1f}" for b, v in sweep.by_batch.items()) + " inf/s", flush=True)
    cnn_config = read_config(repository / "cnn")
    cnn_spec = model_spec(repository / "cnn", cnn_config)
    ceiling_cnn = onnx_ceiling(repository / "cnn" / "1" / "model.onnx", cnn_spec, {}, seconds_per_size=1.0)

    install = find_tritonserver()
    staged_dir = workdir / "staged"
    shutil.rmtree(staged_dir, ignore_errors=True)
    staged = stage_repository(repository, staged_dir, backends=install.backend_names,
                              models=["resnet", "cnn", "cnn_naive", "cnn_tuned"])
    noop = write_noop_model(staged.path, read_config(staged.path / "cnn"))
    cnn_workload = make_workload("cnn", cnn_spec, 1)
    resnet_workload = make_workload("resnet", resnet_spec, 1)
    cnn_names = ("cnn", "cnn_naive", "cnn_tuned", noop)
    noop_python = f"{noop} (python generator)"
    served: dict[str, list] = {n: [] for n in ("resnet", *cnn_names, noop_python)}
    ceilings: list[float] = []
    print(f"(a, b, c) one server, {args.rounds} alternating rounds at concurrency {CONCURRENCY} ...", flush=True)
    with launch(staged.path, "embedded") as handle:
        url = handle.grpc_url
        measure_point(url, resnet_workload, CONCURRENCY, replace(settings, duration_s=3, settle_s=0))
        for name in cnn_names:  # warm every model's batch sizes before measuring any
            measure_point(url, cnn_workload, CONCURRENCY, replace(settings, duration_s=1.5, settle_s=0), model=name)
        for r in range(args.rounds):
            # The ceiling runs in this process while the server idles: same machine state as the served rounds.
            ceiling = onnx_ceiling(resnet_onnx, resnet_spec, {}, batch_sizes=[sweep.batch_size],
                                   seconds_per_size=args.duration)
            ceilings.append(ceiling.throughput)
            print(f"    round {r + 1} {'resnet ORT in-process':<22} {ceiling.throughput:9,.1f} inf/s  "
                  f"(batch {sweep.batch_size})", flush=True)
            jobs = [("resnet", resnet_workload, replace(settings, duration_s=2 * args.duration), "resnet")]
            jobs += [(n, cnn_workload, settings, n) for n in cnn_names]
            jobs += [(noop_python, cnn_workload, python, noop)]
            # Turned by one each round: a model measured at the same place in every round would carry whatever that
            # place costs (seen: two identical configs 0.65x to 0.96x apart, always in the same order).
            jobs = jobs[r % len(jobs):] + jobs[:r % len(jobs)]
            for name, workload, job_settings, model in jobs:
                point = measure_point(url, workload, CONCURRENCY, job_settings, model=model)
                served[name].append(point)
                print(f"    round {r + 1} {name:<22} {point.throughput:9,.1f} inf/s  p99 {point.latency.p99:7.1f} ms"
                      f"  avg batch {point.server.avg_batch if point.server else float('nan'):5.2f}"
                      f"  client CPU {100 * point.client_cpu_share:3.0f} % ({point.requests_per_cpu_s:7,.0f} req/CPU-s, "
                      f"{point.generator})  machine busy "
                      f"{100 * (point.machine_busy or 0):3.0f} %", flush=True)
    mean = {n: statistics.fmean(p.throughput for p in points) for n, points in served.items()}
    ceiling_mean = statistics.fmean(ceilings)
    load_after = os.getloadavg()

    rows = [
        ("(a) ResNet-18-size CNN: generated config at c=16 / in-process ORT ceiling",
         f"{mean['resnet']:,.1f} / {ceiling_mean:,.1f} inf/s (ORT batch {sweep.batch_size}, "
         f"{sweep.sessions}x{sweep.intra_op_threads} threads)", mean["resnet"] / ceiling_mean, 0.8),
        ("(b) small CNN: generated config / naive config (no dynamic batching, 1 instance), c=16",
         f"{mean['cnn']:,.1f} / {mean['cnn_naive']:,.1f} inf/s", mean["cnn"] / mean["cnn_naive"], 1.5),
        ("(c) small CNN: tuned config / generated config, c=16",
         f"{mean['cnn_tuned']:,.1f} / {mean['cnn']:,.1f} inf/s", mean["cnn_tuned"] / mean["cnn"], 1.1),
    ]
    print()
    print(f"{'comparison':<88} {'measured (mean of rounds)':<52} {'ratio':>6} {'target':>7}  met")
    for label, measured, ratio, target in rows:
        met = "yes" if ratio >= target else "NO"
        if label.startswith("(c)") and not tuned.improved:
            met = "NO (tune kept the generated config: the two are the same, the ratio is noise)"
        print(f"{label:<88} {measured:<52} {ratio:6.2f} {'>= ' + str(target):>7}  {met}")
    print()
    print("per round (ratio a, b, c): " + "; ".join(
        f"{served['resnet'][i].throughput / ceilings[i]:.2f}, "
        f"{served['cnn'][i].throughput / served['cnn_naive'][i].throughput:.2f}, "
        f"{served['cnn_tuned'][i].throughput / served['cnn'][i].throughput:.2f}" for i in range(args.rounds)))
    resnet_batch = statistics.fmean(p.server.avg_batch for p in served["resnet"] if p.server)
    print("context:")
    print(f"  tuned config: {tuned.best.describe()} (tune: {tuned.stopped_because}; "
          f"{'improved' if tuned.improved else 'no confirmed improvement'}"
          + (f", {tuned.gain:.2f}x in its own confirmation" if tuned.improved and tuned.gain else "") + ")")
    print(f"  (a) resnet served at c=16: p99 {statistics.fmean(p.latency.p99 for p in served['resnet']):.0f} ms, "
          f"avg executed batch {resnet_batch:.1f}")
    print(f"  small CNN in-process ORT ceiling: {ceiling_cnn.throughput:,.0f} inf/s at batch {ceiling_cnn.batch_size};"
          f" served: generated {100 * mean['cnn'] / ceiling_cnn.throughput:.1f} %, tuned "
          f"{100 * mean['cnn_tuned'] / ceiling_cnn.throughput:.1f} % of it")
    print(f"  no-op model (same inputs and config, returns zeros) at c=16: {mean[noop]:,.1f} inf/s: the most the "
          "client + embedded Triton + python backend path does on this machine")
    points = [p for n in cnn_names for p in served[n]]
    print(f"  load generator (small CNN rounds): {statistics.fmean(p.client_cpu_us_per_request for p in points):.0f} "
          f"µs CPU per request, {100 * statistics.fmean(p.client_cpu_share for p in points):.0f} % of the machine's "
          "CPUs on average")
    native = statistics.fmean(p.requests_per_cpu_s for p in served[noop])
    by_python = statistics.fmean(p.requests_per_cpu_s for p in served[noop_python])
    print(f"  generator headroom on the no-op model: {served[noop][0].generator} {native:,.0f} requests per client "
          f"CPU-second, python {by_python:,.0f} ({native / by_python:.1f}x); the no-op model reached "
          f"{mean[noop]:,.1f} inf/s with the first, {mean[noop_python]:,.1f} with the python generator")
    print(f"  machine busy during the small CNN rounds: "
          f"{100 * statistics.fmean(p.machine_busy or 0 for p in points):.0f} %")
    print(f"  load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; "
          f"total {time.perf_counter() - started:.0f} s; models in {workdir}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
