"""What each step needs at serve time, pinned to what the build ran with (NumPy below 2 for Triton's stub)."""

from __future__ import annotations

from importlib import metadata

from tritongen.pipeline.requirements import python_requirements


def test_each_step_pins_what_its_code_imports_to_the_installed_versions():
    numpy = metadata.version("numpy")
    assert numpy.startswith("1.")  # Triton 2.51's python backend stub predates NumPy 2 (and nvidia-pytriton needs <2)
    assert python_requirements("text") == [f"tokenizers=={metadata.version('tokenizers')}", f"numpy=={numpy}"]
    assert python_requirements("image") == [f"pillow=={metadata.version('pillow')}", f"numpy=={numpy}"]
    assert python_requirements("post") == [f"numpy=={numpy}"]

