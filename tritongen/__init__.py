"""tritongen: PyTorch checkpoint to a verified Triton Inference Server deployment."""

__version__ = "0.1.0"
