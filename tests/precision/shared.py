"""Specs and helpers the precision tests share: the test CNN's and encoder's interfaces."""

from __future__ import annotations

from pathlib import Path

import onnx

from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name, parse_input_spec

ENCODER_ARGS = ("--model-class", "tests.models:TinyEncoder", "--input", "tokens:seq:int64", "--input", "mask:seq:int64",
                "--output", "hidden", "--output", "pooled", "--no-deploy")
FP32 = dtype_from_name("fp32")


def cnn_spec(max_batch_size: int = 32) -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("image:3x32x32:fp32"),),
                     outputs=(TensorSpec("output", FP32, (10,)),), max_batch_size=max_batch_size)


def encoder_spec() -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("tokens:seq:int64:0-49"), parse_input_spec("mask:seq:int64:0-1")),
                     outputs=(TensorSpec("hidden", FP32, ("seq", 16)), TensorSpec("pooled", FP32, (16,))))


def graph_types(path: Path) -> dict[str, int]:
    model = onnx.load(str(path), load_external_data=False)
    return {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}
