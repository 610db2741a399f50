#!/usr/bin/env bash
# The main job end to end on the embedded Triton: make a checkpoint, build a verified repository, validate it.
# TRITONGEN_EXAMPLE_OUT chooses where files go (default examples/out); TRITONGEN_SKIP_INSTALL=1 skips the install.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${TRITONGEN_SKIP_INSTALL:-0}" == 1 ]] || bash scripts/install.sh all
out="${TRITONGEN_EXAMPLE_OUT:-examples/out}"
rm -rf "$out/model_repository" "$out/deploy"
.venv/bin/python examples/make_checkpoint.py "$out/tiny_resnet.pt"
.venv/bin/tritongen build "$out/tiny_resnet.pt" \
  --model-class examples.make_checkpoint:TinyResNet \
  --input image:3x64x64:fp32 \
  --format onnx --format python \
  --repository "$out/model_repository"
.venv/bin/tritongen validate "$out/model_repository"
