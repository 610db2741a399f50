#!/usr/bin/env bash
# Create .venv (if missing) and install tritongen with the given extras, from PyPI only.
# torch is pinned to 2.13.0 in pyproject.toml: that version is a CPU wheel here; other specs pull CUDA builds.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"
PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
# -qq: errors only (setuptools' editable-install notice is not one); a failed install stops here.
.venv/bin/python -m pip install -qq -e ".[${extras}]"
.venv/bin/python -c "import tritongen, torch, onnxruntime; print(f'tritongen {tritongen.__version__} installed (torch {torch.__version__}, onnxruntime {onnxruntime.__version__})')"
