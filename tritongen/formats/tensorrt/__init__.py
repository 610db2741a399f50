"""The `tensorrt` format: TensorRT plans served by Triton's tensorrt backend (registry entry in `format.py`)."""
