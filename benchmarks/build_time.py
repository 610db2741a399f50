"""Time `tritongen build` as a whole process on a ResNet-18-sized CNN, a small transformer encoder and a
BERT-base-sized Hugging Face folder, and say where the time goes (load, introspect, export, simplify, parity).

Target: under 15 s each for the first two on a 2-core machine (Model Navigator's CPU flow: 88 s and 31 s on similar
models). The BERT-base folder (12 layers, hidden 768, vocabulary 30522: 110 M parameters, random weights, written by
save_pretrained) has no target: it shows what a real Hugging Face model costs.
Run: .venv/bin/python benchmarks/build_time.py [--repeat 3] [--only bert]
"""

from __future__ import annotations

import argparse
import json
import os
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


CASES = {
    "ResNet-18 (11.7 M params, 3x224x224)": (
        state_dict_file(lambda: TinyResNet(num_classes=1000, width=64, stages=4, imagenet_stem=True)),
        ["--model-class", "examples.make_checkpoint:TinyResNet",
         "--model-kwargs", '{"num_classes": 1000, "width": 64, "stages": 4, "imagenet_stem": true}',
         "--input", "image:3x224x224:fp32"]),
    "small encoder (4 layers, d=128, int64 tokens+mask, dynamic seq)": (
        state_dict_file(lambda: TinyEncoder(vocab=1000, d_model=128, layers=4, max_len=256)),
        ["--model-class", "tests.models:TinyEncoder",
         "--model-kwargs", '{"vocab": 1000, "d_model": 128, "layers": 4, "max_len": 256}',
         "--input", "tokens:seq:int64", "--input", "mask:seq:int64", "--axis-length", "seq=32,64"]),
    "BERT-base folder (110 M params, save_pretrained, sequence 16/32)": (
        bert_base_folder, ["--axis-length", "sequence=16,32"]),
}


def time_build(make, args: list[str], workdir: Path) -> tuple[float, dict]:
    torch.manual_seed(0)
    ckpt = make(workdir)
    repo = workdir / "repo"
    start = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "tritongen"), "build", str(ckpt), *args,
                           "--repository", str(repo), "--no-deploy", "--json"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr}")
    return elapsed, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="run the cases whose label contains this text (e.g. bert)")
    opts = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}")
    print(f"{'model':<66} {'median s':>9} {'min s':>7}  steps (last run, in-process s)")
    for label, (make, args) in CASES.items():
        if opts.only and opts.only.lower() not in label.lower():
            continue
        times, report = [], {}
        for _ in range(opts.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                t, report = time_build(make, args, Path(tmp))
                times.append(t)
        steps = ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items())
        verdict = "no target" if "BERT-base" in label else "ok" if statistics.median(times) < 15 else "OVER TARGET"
        print(f"{label:<66} {statistics.median(times):>9.1f} {min(times):>7.1f}  {steps}  [{verdict}]")


if __name__ == "__main__":
    main()
