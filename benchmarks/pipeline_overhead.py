"""What a pipeline costs over its bare network, and what length buckets do to the batches Triton runs.

    .venv/bin/python benchmarks/pipeline_overhead.py [--duration 4] [--rounds 3] [--workdir DIR]

A BERT-like text classifier (4 layers, hidden 128, a WordPiece tokenizer trained on the spot, maximum length 128) is
built three times with `tritongen build --pipeline`: `bert` (the default length buckets: every 16 tokens),
`bert_pow2` (`--length-buckets 8,16,32,64,128`) and `bert_nobuckets` (`--length-buckets none`: each request padded to
its own longest item). They are served side by side by the embedded Triton, and driven with single-string requests
of mixed lengths (2 to 40 words: 7 to 90 tokens, median 45) by closed-loop gRPC clients (tritonclient, one thread
and one connection each) at concurrency 1 and 16:

(a) the pipeline `bert` (raw strings in) against its bare network `bert_model` fed the same requests already
    tokenized (by the pre-processing step's own code, so the network sees the same shapes): requests/s, mean and p99
    latency, and the overhead per request (pipeline mean latency - network mean latency);
(b) the three bucket settings: the executed batch size of each one's network (inferences / executions, from
    Triton's statistics over the measured window), requests/s and latency.

Every variant is measured in each round, in an order turned by one each round, so that drift on a shared machine
hits every number alike. The machine's load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # tests.hf_models trains the tokenizer

CONCURRENCIES = (1, 16)
WORDS = ("the quick brown fox jumps over the lazy dog while triton serves models to everyone who asks hello world "
         "again").split()


def build(workdir: Path) -> Path:
    """The BERT-like folder, and the two pipelines built from it."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from tests.hf_models import LABELS, save, tokenizer_files
    from tritongen.build import BuildOptions, build_model
    from tritongen.pipeline import PipelineOptions

    folder = workdir / "bert-folder"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=200, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=128, num_labels=3, id2label=LABELS,
                        label2id={v: k for k, v in LABELS.items()}, initializer_range=0.3)
    save(BertForSequenceClassification(config), folder)
    tokenizer_files(folder, max_length=128)
    repository = workdir / "repo"
    for name, buckets in (("bert", None), ("bert_pow2", (8, 16, 32, 64, 128)), ("bert_nobuckets", ())):
        print(f"building the pipeline {name} ...", flush=True)
        build_model(BuildOptions(folder, name=name, repository=repository, max_batch_size=32, deploy=False,
                                 pipeline=PipelineOptions(enabled=True, length_buckets=buckets)))
    return repository


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 41)))) for _ in range(count)]


def one_string(text: str) -> np.ndarray:
    array = np.empty((1, 1), dtype=object)
    array[0, 0] = text.encode("utf-8")
    return array


class Variant:
    """One model driven with one kind of request: raw strings (a pipeline) or their tokens (the bare network)."""

    def __init__(self, label: str, model: str, network: str, requests: list[dict[str, np.ndarray]]) -> None:
        self.label, self.model, self.network, self.requests = label, model, network, requests


def drive(url: str, variant: Variant, concurrency: int, duration: float) -> list[float]:
    """Closed-loop clients for `duration` seconds; the latency of every answered request (seconds)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []
    start = threading.Barrier(concurrency + 1)

    def client(index: int) -> None:
        connection = grpcclient.InferenceServerClient(url)
        inputs = []
        for feeds in variant.requests:
            tensors = []
            for name, array in feeds.items():
                tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                tensor.set_data_from_numpy(array)
                tensors.append(tensor)
            inputs.append(tensors)
        start.wait()
        deadline = time.perf_counter() + duration
        position = index * 7
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                connection.infer(variant.model, inputs[position % len(inputs)])
                latencies[index].append(time.perf_counter() - t0)
                position += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [latency for per_client in latencies for latency in per_client]


def counts(control: object, model: str) -> tuple[int, int]:
    stats = control.get_inference_statistics(model)  # type: ignore[attr-defined]
    entry = next(e for e in stats["model_stats"] if e["name"] == model)
    return int(entry["inference_count"]), int(entry["execution_count"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep the built models here (default: a temporary folder)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pipeline-overhead-"))
    repository = workdir / "repo"
    if not repository.is_dir():
        repository = build(workdir)

    import tritonclient.http as httpclient

    from tritongen.pipeline.steps.text import TextPreprocess
    from tritongen.repository import versions_of
    from tritongen.server import serve

    texts = sentences(256)
    step_dir = repository / "bert_preprocess" / str(versions_of(repository / "bert_preprocess")[-1])
    tokenize = TextPreprocess.from_folder(step_dir)
    raw = [{"text": one_string(t)} for t in texts]
    tokens = [tokenize(r) for r in raw]  # what the pipeline's network gets for each request
    variants = [Variant("pipeline, buckets of 16", "bert", "bert_model", raw),
                Variant("network alone, same tokens", "bert_model", "bert_model", tokens),
                Variant("pipeline, powers of two", "bert_pow2", "bert_pow2_model", raw),
                Variant("pipeline, no buckets", "bert_nobuckets", "bert_nobuckets_model", raw)]
    lengths = [t["input_ids"].shape[1] for t in tokens]
    print(f"{len(texts)} strings, {min(lengths)} to {max(lengths)} tokens with buckets "
          f"(median {int(np.median(lengths))}); {args.rounds} rounds of {args.duration:g} s per variant", flush=True)

    results: dict[tuple[str, int], dict[str, list[float]]] = {}
    with serve(repository, "embedded") as served:
        control = httpclient.InferenceServerClient(served.handle.http_url)
        for variant in variants:  # warm up: first requests load sessions and fill caches
            drive(served.handle.grpc_url, variant, 2, 1.0)
        for round_index in range(args.rounds):
            order = [(v, c) for c in CONCURRENCIES for v in variants]
            shift = round_index % len(order)
            for variant, concurrency in order[shift:] + order[:shift]:
                before = counts(control, variant.network)
                t0 = time.perf_counter()
                latencies = drive(served.handle.grpc_url, variant, concurrency, args.duration)
                elapsed = time.perf_counter() - t0
                time.sleep(0.2)  # the server counts a request a moment after answering it
                after = counts(control, variant.network)
                entry = results.setdefault((variant.label, concurrency), {"rps": [], "mean": [], "p99": [], "batch": []})
                entry["rps"].append(len(latencies) / elapsed)
                entry["mean"].append(statistics.fmean(latencies) * 1e3)
                entry["p99"].append(float(np.percentile(latencies, 99)) * 1e3)
                executions = after[1] - before[1]
                entry["batch"].append((after[0] - before[0]) / executions if executions else float("nan"))
            print(f"round {round_index + 1} done", flush=True)
        control.close()

    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; medians over "
          f"{args.rounds} rounds")
    print(f"{'variant':<28} {'conc':>4} {'req/s':>8} {'mean ms':>8} {'p99 ms':>8} {'network batch':>14}")
    for (label, concurrency), entry in sorted(results.items(), key=lambda item: item[0][1]):
        print(f"{label:<28} {concurrency:>4} {statistics.median(entry['rps']):>8.1f} "
              f"{statistics.median(entry['mean']):>8.2f} {statistics.median(entry['p99']):>8.2f} "
              f"{statistics.median(entry['batch']):>14.2f}")
    for concurrency in CONCURRENCIES:
        rps = {label: statistics.median(entry["rps"]) for (label, c), entry in results.items() if c == concurrency}
        batch = {label: statistics.median(entry["batch"]) for (label, c), entry in results.items() if c == concurrency}
        pipeline, network = (results[(label, concurrency)] for label in ("pipeline, buckets of 16",
                                                                        "network alone, same tokens"))
        overhead = statistics.median([p - n for p, n in zip(pipeline["mean"], network["mean"], strict=True)])
        print(f"concurrency {concurrency}: pipeline overhead {overhead:.2f} ms per request (mean latency, paired per "
              f"round), requests/s pipeline / network {rps['pipeline, buckets of 16'] / rps['network alone, same tokens']:.2f}")
        print(f"  network batch: buckets of 16 {batch['pipeline, buckets of 16']:.2f}, powers of two "
              f"{batch['pipeline, powers of two']:.2f}, none {batch['pipeline, no buckets']:.2f}; requests/s vs none: "
              f"buckets of 16 {rps['pipeline, buckets of 16'] / rps['pipeline, no buckets']:.2f}, powers of two "
              f"{rps['pipeline, powers of two'] / rps['pipeline, no buckets']:.2f}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
