"""Time `tritongen build` as a whole process on a ResNet-18-sized CNN, a small transformer encoder and a
BERT-base-sized Hugging Face folder, against a bare export of the same model, and say where the time goes.

The bare export (benchmarks/bare_export.py) is a plain process that imports torch, builds the model and runs one
`torch.onnx.export(dynamo=True)` with a dynamic batch axis: what a user's own export script costs, with none of
tritongen's checks. Both run as whole processes, side by side, in alternating order (bare first in even rounds, build
first in odd ones) so drift on a shared machine hits them alike. Target: build / bare <= 1.25 for the ResNet-18 and
the BERT-base folder (12 layers, hidden 768, vocabulary 30522: 110 M parameters, random weights, save_pretrained).
The small encoder has no bare baseline; its target is the earlier one: under 15 s (Model Navigator's CPU flow: 88 s
and 31 s on similar models).
Run: .venv/bin/python benchmarks/build_time.py [--repeat 3] [--only bert]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.make_checkpoint import TinyResNet  # noqa: E402
from tests.models import TinyEncoder  # noqa: E402


def bert_base_folder(workdir: Path) -> Path:
    """A save_pretrained folder of a BERT-base-sized classifier (random weights: nothing is downloaded)."""
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    folder = workdir / "bert-base"
    BertForSequenceClassification(BertConfig(num_labels=2)).eval().save_pretrained(str(folder))
    return folder


def state_dict_file(make: Callable[[], torch.nn.Module]) -> Callable[[Path], Path]:
    """A case's checkpoint: the module's state_dict saved with torch.save."""
    def save(workdir: Path) -> Path:
        torch.save(make().eval().state_dict(), workdir / "model.pt")
        return workdir / "model.pt"
    return save


# label -> (write the checkpoint, `tritongen build` arguments, bare_export.py kind or None)
CASES = {
    "ResNet-18 (11.7 M params, 3x224x224)": (
        state_dict_file(lambda: TinyResNet(num_classes=1000, width=64, stages=4, imagenet_stem=True)),
        ["--model-class", "examples.make_checkpoint:TinyResNet",
         "--model-kwargs", '{"num_classes": 1000, "width": 64, "stages": 4, "imagenet_stem": true}',
         "--input", "image:3x224x224:fp32"], "resnet"),
    "small encoder (4 layers, d=128, int64 tokens+mask, dynamic seq)": (
        state_dict_file(lambda: TinyEncoder(vocab=1000, d_model=128, layers=4, max_len=256)),
        ["--model-class", "tests.models:TinyEncoder",
         "--model-kwargs", '{"vocab": 1000, "d_model": 128, "layers": 4, "max_len": 256}',
         "--input", "tokens:seq:int64", "--input", "mask:seq:int64", "--axis-length", "seq=32,64"], None),
    "BERT-base folder (110 M params, save_pretrained, sequence 16/32)": (
        bert_base_folder, ["--axis-length", "sequence=16,32"], "bert"),
}


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def time_build(checkpoint: Path, args: list[str], workdir: Path) -> tuple[float, dict]:
    repo = workdir / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "tritongen"), "build", str(checkpoint), *args,
                           "--repository", str(repo), "--no-deploy", "--json"],
                          cwd=ROOT, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr}")
    return elapsed, json.loads(proc.stdout)


def time_bare(kind: str, checkpoint: Path, workdir: Path) -> float:
    out = workdir / "bare" / "model.onnx"
    shutil.rmtree(out.parent, ignore_errors=True)
    out.parent.mkdir(parents=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bare_export.py"), kind, str(checkpoint),
                           str(out)], cwd=ROOT, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"bare export failed:\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="run the cases whose label contains this text (e.g. bert)")
    opts = parser.parse_args()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"torch {torch.__version__}")
    print(f"{'model':<66} {'build s':>8} {'bare s':>7} {'ratio':>6}  per round (build/bare); steps of the last build "
          "(in-process s)")
    for label, (make, args, bare_kind) in CASES.items():
        if opts.only and opts.only.lower() not in label.lower():
            continue
        builds, bares, report = [], [], {}
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(0)
            checkpoint = make(Path(tmp))
            for r in range(opts.repeat):
                # Alternating order: whatever the machine does meanwhile hits both alike.
                if bare_kind and r % 2 == 0:
                    bares.append(time_bare(bare_kind, checkpoint, Path(tmp)))
                t, report = time_build(checkpoint, args, Path(tmp))
                builds.append(t)
                if bare_kind and r % 2 == 1:
                    bares.append(time_bare(bare_kind, checkpoint, Path(tmp)))
        steps = ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items())
        build_s = statistics.median(builds)
        if bare_kind:
            bare_s = statistics.median(bares)
            rounds = " ".join(f"{b:.1f}/{a:.1f}" for b, a in zip(builds, bares, strict=True))
            verdict = "ok" if build_s / bare_s <= 1.25 else "OVER TARGET (1.25)"
            print(f"{label:<66} {build_s:>8.1f} {bare_s:>7.1f} {build_s / bare_s:>6.2f}  {rounds}; {steps}  [{verdict}]")
        else:
            verdict = "ok" if build_s < 15 else "OVER TARGET (15 s)"
            rounds = " ".join(f"{b:.1f}" for b in builds)
            print(f"{label:<66} {build_s:>8.1f} {'-':>7} {'-':>6}  {rounds}; {steps}  [{verdict}]")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
