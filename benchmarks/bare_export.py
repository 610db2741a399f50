"""The baseline of benchmarks/build_time.py: what a user's own export script costs, as one plain process.

    python benchmarks/bare_export.py resnet CHECKPOINT OUT.onnx
    python benchmarks/bare_export.py bert FOLDER OUT.onnx

It imports torch, builds the model (the ResNet-18 from its state_dict; BERT with transformers' from_pretrained) and
runs one `torch.onnx.export(dynamo=True)` with a dynamic batch axis (and BERT's dynamic sequence axis), with the same
inputs tritongen exports. Nothing else: no checks, no simplification, no parity.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def resnet(checkpoint: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor], dict[str, dict[int, object]]]:
    sys.path.insert(0, str(ROOT))
    from examples.make_checkpoint import TinyResNet

    model = TinyResNet(num_classes=1000, width=64, stages=4, imagenet_stem=True)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    batch = torch.export.Dim("batch", min=1, max=32)
    return model.eval(), {"image": torch.randn(2, 3, 224, 224)}, {"image": {0: batch}}


def bert(folder: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor], dict[str, dict[int, object]]]:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    batch, sequence = torch.export.Dim("batch", min=1, max=32), torch.export.Dim("sequence", min=1, max=512)
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    return model.eval(), inputs, {name: {0: batch, 1: sequence} for name in inputs}


def main() -> None:
    kind, source, out = sys.argv[1:4]
    model, inputs, dynamic = {"resnet": resnet, "bert": bert}[kind](source)
    with torch.no_grad():
        torch.onnx.export(model, (), out, kwargs=inputs, dynamo=True, input_names=list(inputs),
                          dynamic_shapes=dynamic)


if __name__ == "__main__":
    main()
