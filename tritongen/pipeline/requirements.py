"""What a step's model.py imports at serve time, as pinned pip requirements: recorded in each step version's manifest
(`python_requirements`), from which the deployment's images install them.

Pinned to the versions installed here, the ones the build's end-to-end parity ran with: a tokenizers or Pillow of
another version may tokenize or resize differently. NumPy is pinned below 2 where the installed one is 2 or newer:
Triton 2.51's python backend stub (the slim image, and NVIDIA's 24.10 image) was built against NumPy 1.
"""

from __future__ import annotations

from importlib import metadata

# The distributions each step module imports (tritongen/pipeline/steps/<module>.py).
IMPORTS = {"text": ("tokenizers", "numpy"), "image": ("pillow", "numpy"), "post": ("numpy",)}
NUMPY_BELOW_2 = "numpy<2"


def python_requirements(code: str) -> list[str]:
    """Pinned requirements of the step module `code` (text | image | post), e.g. ["tokenizers==0.23.3", "numpy==1.26.4"]."""
    return [_pinned(dist) for dist in IMPORTS[code]]


def _pinned(dist: str) -> str:
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return NUMPY_BELOW_2 if dist == "numpy" else dist
    major = version.split(".")[0]
    if dist == "numpy" and (not major.isdigit() or int(major) >= 2):
        return NUMPY_BELOW_2
    return f"{dist}=={version}"
