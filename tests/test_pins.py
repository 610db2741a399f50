"""Pins for served code: the versions installed here, NumPy below 2 for Triton 2.51's python backend stub."""

from __future__ import annotations

from importlib import metadata

import pytest

from tritongen import pins
from tritongen.pins import pinned


def test_an_installed_distribution_is_pinned_to_its_version_under_either_name():
    assert pinned("onnxruntime") == f"onnxruntime=={metadata.version('onnxruntime')}"
    assert pinned("onnxruntime", "onnxruntime-gpu") == f"onnxruntime-gpu=={metadata.version('onnxruntime')}"
    assert pinned("surely-not-installed-dist") == "surely-not-installed-dist"


def test_numpy_2_is_never_pinned(monkeypatch: pytest.MonkeyPatch):
    assert pinned("numpy") == f"numpy=={metadata.version('numpy')}"  # NumPy 1 here (nvidia-pytriton needs <2)
    monkeypatch.setattr(pins.metadata, "version", lambda dist: "2.1.0")
    assert pinned("numpy") == "numpy<2"
    assert pinned("pillow") == "pillow==2.1.0"
