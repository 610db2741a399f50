"""onnx_from_module: opsets as asked or refused, interrupts never taken for exporter failures, no global state changed."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from tests import models
from tests.conftest import save_checkpoint
from tests.test_errors import interrupted_error
from tritongen.errors import TritongenError
from tritongen.export.onnx import check_opset, onnx_from_module
from tritongen.spec import ModelSpec, parse_input_spec

SPEC = ModelSpec(inputs=(parse_input_spec("image:3x32x32:fp32"),), max_batch_size=4)


def test_opsets_outside_the_exporters_range_are_refused():
    check_opset(None, legacy=False)
    check_opset(18, legacy=False)
    check_opset(7, legacy=True)
    for opset, legacy in ((5, False), (17, False), (6, True), (21, True)):
        with pytest.raises(TritongenError, match=f"--opset {opset} is outside"):
            check_opset(opset, legacy=legacy)


def test_an_interrupt_during_the_dynamo_export_never_falls_back_to_the_legacy_exporter(tmp_path, monkeypatch):
    from tritongen.export import onnx as exporter

    def dynamo_fails(*args, **kwargs):
        raise interrupted_error()

    def legacy(*args, **kwargs):
        raise AssertionError("the legacy exporter ran after an interrupt")

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    monkeypatch.setattr(exporter, "export_legacy", legacy)
    with pytest.raises(KeyboardInterrupt):
        onnx_from_module(models.SmallCNN().eval(), SPEC, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.slow
def test_the_export_leaves_stdout_stderr_and_their_descriptors_alone(tmp_path):
    before = (sys.stdout, sys.stderr, os.fstat(1).st_ino, os.fstat(2).st_ino)
    result = onnx_from_module(models.SmallCNN().eval(), SPEC, tmp_path / "model.onnx")
    assert result.exporter == "dynamo"
    assert (sys.stdout, sys.stderr, os.fstat(1).st_ino, os.fstat(2).st_ino) == before


def test_a_failing_legacy_export_runs_in_a_child_and_its_graph_dump_stays_there(tmp_path, capfd):
    class Eig(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.eig(x)[0].real

    ckpt = save_checkpoint(Eig(), tmp_path / "eig.pt", "torchscript")
    spec = ModelSpec(inputs=(parse_input_spec("x:3x3:fp32"),), max_batch_size=4)
    from tritongen.checkpoint import load_checkpoint

    module = load_checkpoint(ckpt).module
    with pytest.raises(TritongenError) as err:
        onnx_from_module(module, spec, tmp_path / "model.onnx")
    assert "linalg_eig" in err.value.message
    out, errors = capfd.readouterr()
    assert "Torch IR graph" not in out + errors  # the C++ side's dump went to the child's discarded output
    assert not list(tmp_path.glob("model.onnx*"))
