"""Pinned pip requirements for the code a served model runs (model.py, pipeline steps): the versions installed here,
the ones `build` verified the model with, so an image runs what was checked.

NumPy is the exception: Triton 2.51's python backend stub (the slim image, NVIDIA's 24.10 image) was built against
NumPy 1, and nvidia-pytriton itself requires numpy<2, so a NumPy 2 installed here is never pinned.
"""

from __future__ import annotations

from importlib import metadata

NUMPY_BELOW_2 = "numpy<2"


def pinned(dist: str, as_name: str | None = None) -> str:
    """`dist==<installed version>` (named `as_name` in the requirement, e.g. onnxruntime-gpu at onnxruntime's
    version); `dist` alone when it is not installed; NumPy 2 or newer, or none: `numpy<2`."""
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return NUMPY_BELOW_2 if dist == "numpy" else as_name or dist
    if dist == "numpy":
        major = version.split(".")[0]
        if not major.isdigit() or int(major) >= 2:
            return NUMPY_BELOW_2
    return f"{as_name or dist}=={version}"
