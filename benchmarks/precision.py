"""Size, in-process ONNX Runtime speed and fidelity of FP32 / FP16 / INT8 ONNX models, on this machine's CPU.

Two models, random weights (nothing can be downloaded here): a ResNet-18-sized CNN (`TinyResNet(width=64,
stages=4)`, 11.2 M parameters, 3x64x64 images, 10 classes) and a small transformer encoder (`TinyEncoder`, 4
layers, d_model 256, int64 tokens + mask over a dynamic sequence). Each model is exported and simplified as `build`
does, then converted with the same functions `build --precision` uses. INT8 static is calibrated on random inputs
(no real data exists here), so its fidelity is a lower bound of what real calibration data gives.

Fidelity is measured against the FP32 PyTorch model on 64 random items (+ 4 reference items): max abs error,
that error as a share of the output's largest magnitude, and top-1 agreement for the classifier's logits.
Speed is the median latency of one batch with ONNX Runtime's default threads, the variants timed round-robin so
that a change in the machine's load hits all of them alike; the mean load average is printed with it.

Run: .venv/bin/python benchmarks/precision.py [--batch 8] [--seconds 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.make_checkpoint import TinyResNet  # noqa: E402
from tests.models import TinyEncoder  # noqa: E402
from tritongen.export.onnx import example_lengths, onnx_from_module, onnx_output_specs  # noqa: E402
from tritongen.export.simplify import simplify_onnx  # noqa: E402
from tritongen.introspect import outputs_of_module  # noqa: E402
from tritongen.precision import PrecisionOptions, interleaved_latencies, model_bytes, onnx_with_precision  # noqa: E402
from tritongen.runners.torch import TorchRunner  # noqa: E402
from tritongen.spec import ModelSpec, parse_input_spec, random_inputs  # noqa: E402

VARIANTS = {
    "fp32": None,
    "fp16": PrecisionOptions(precision="fp16"),
    "int8 static": PrecisionOptions(precision="int8", calibration="random"),
    "int8 dynamic": PrecisionOptions(precision="int8", quantize="dynamic"),
}


def resnet() -> tuple[torch.nn.Module, ModelSpec]:
    torch.manual_seed(0)
    model = TinyResNet(num_classes=10, width=64, stages=4).eval()
    for m in model.modules():  # BatchNorm statistics that are not the identity, as a trained model has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model, ModelSpec(inputs=(parse_input_spec("image:3x64x64:fp32"),), max_batch_size=32)


def encoder() -> tuple[torch.nn.Module, ModelSpec]:
    torch.manual_seed(0)
    model = TinyEncoder(vocab=1000, d_model=256, layers=4, max_len=256).eval()
    spec = ModelSpec(inputs=(parse_input_spec("tokens:seq:int64:0-999"), parse_input_spec("mask:seq:int64:1-1")),
                     max_batch_size=32, axis_lengths={"seq": (32, 64)})
    return model, spec


MODELS = {"ResNet-18-sized CNN": resnet, "small encoder": encoder}


def measure(name: str, make: Any, batch: int, seconds: float, work: Path) -> list[dict[str, Any]]:
    model, spec = make()
    spec = spec.with_outputs(outputs_of_module(model, spec))
    onnx_path = work / "fp32" / "model.onnx"
    onnx_from_module(model, spec, onnx_path)
    spec = spec.with_outputs(onnx_output_specs(onnx_path, spec))
    simplify_onnx(onnx_path, spec)
    reference = TorchRunner(model, [t.name for t in spec.inputs], [t.name for t in spec.outputs])
    ref_inputs = random_inputs(spec, 4, example_lengths(spec), np.random.default_rng(7))
    lengths = {a: spec.lengths(a)[-1] for a in spec.dynamic_axes}
    feeds = random_inputs(spec, batch, lengths, np.random.default_rng(5))
    params = sum(p.numel() for p in model.parameters())
    rows = []
    for variant, options in VARIANTS.items():
        started = time.perf_counter()
        row: dict[str, Any] = {"model": name, "params": params, "variant": variant, "batch": batch}
        if options is None:
            row["path"] = onnx_path
        else:
            options = replace(options, accept_fidelity=True, measure_speed=False)
            result = onnx_with_precision(onnx_path, spec, reference, options, work / variant.replace(" ", "_"),
                                         ref_inputs)
            row["path"] = result.path
            row["fidelity"] = {o.name: {"max_abs_err": o.max_abs_err, "relative_error": o.relative_error,
                                        "top1_agreement": o.top1_agreement} for o in result.report.fidelity.outputs}
            row["fidelity_items"] = result.report.fidelity.items
            row["tolerance_for_validate"] = result.report.tolerance
            row["notes"] = list(result.report.notes)
        row["convert_s"] = round(time.perf_counter() - started, 2)
        row["size_mb"] = round(model_bytes(row["path"]) / 1e6, 3)
        rows.append(row)
    # Round-robin timing: one run of each variant in turn, so a change in the machine's load hits all of them alike.
    load_before = os.getloadavg()[0]
    timings = interleaved_latencies([row["path"] for row in rows], [feeds] * len(rows), budget_s=seconds * len(rows),
                                    min_runs=5)
    load = round((load_before + os.getloadavg()[0]) / 2, 2)
    for row, (ms, runs) in zip(rows, timings, strict=True):
        row.update(ms_per_batch=round(ms, 3), items_per_s=round(batch * 1000 / ms, 1), runs=runs, load_average=load)
        row["path"] = str(row["path"])
        print(format_row(row), flush=True)
    return rows


def format_row(row: dict[str, Any]) -> str:
    text = (f"{row['model']:<20} {row['variant']:<13} {row['size_mb']:>8.2f} MB {row['ms_per_batch']:>9.2f} ms "
            f"{row['items_per_s']:>9.1f} items/s  (load {row['load_average']:g})")
    for name, f in (row.get("fidelity") or {}).items():
        top1 = f", top-1 {f['top1_agreement']:.1%}" if f["top1_agreement"] is not None else ""
        text += f"\n{'':<35}{name}: max err {f['max_abs_err']:.2e} ({f['relative_error']:.2%} of range){top1}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget per variant")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}; batch {args.batch}; "
          f"ONNX Runtime in-process, default threads\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tritongen-bench-precision-") as tmp:
        for name, make in MODELS.items():
            rows += measure(name, make, args.batch, args.seconds, Path(tmp) / name.replace(" ", "_"))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
