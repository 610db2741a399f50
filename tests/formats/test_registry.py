"""The format registry: every registered format keeps the contract, and every one has tests of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritongen import formats
from tritongen.config import ModelConfig, parse_config, render_config
from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name, parse_input_spec

TESTS = Path(__file__).resolve().parent.parent
SPEC = ModelSpec(inputs=(parse_input_spec("x:4:fp32"),), outputs=(TensorSpec("y", dtype_from_name("fp32"), (4,)),),
                 max_batch_size=8)


@pytest.mark.parametrize("name", formats.NAMES + formats.PIPELINE_PARTS)
def test_every_registered_format_has_a_test_module_mirroring_its_source(name):
    module = type(formats.get(name)).__module__  # tritongen.formats.tensorrt.format
    parts = module.split(".")[1:]
    test_file = TESTS.joinpath(*parts[:-1], f"test_{parts[-1]}.py")
    assert test_file.is_file(), f"format '{name}' ({module}) has no tests in {test_file}"
    assert "def test_" in test_file.read_text()
    if name in formats.PIPELINE_PARTS:
        assert f'"{name}"' in test_file.read_text(), f"{test_file} does not test the pipeline part '{name}'"


@pytest.mark.parametrize("fmt", formats.all_formats(), ids=lambda f: f.name)
def test_every_format_keeps_the_contract(fmt):
    assert formats.get(fmt.name.upper()) is fmt
    assert bool(fmt.platform) != bool(fmt.backend), "a format names a platform or a backend, not both"
    assert fmt.artifact
    proto = parse_config(render_config(ModelConfig("m", SPEC, format=fmt.name)))
    assert (proto.platform, proto.backend) == (fmt.platform, fmt.backend)
    assert proto.instance_group[0].kind == proto.instance_group[0].Kind.Value(fmt.instance_kind("auto"))


def test_an_unknown_format_names_the_choices():
    with pytest.raises(TritongenError) as err:
        formats.get("coreml")
    assert err.value.message == "unknown --format 'coreml'" and "onnx, python, tensorrt" in err.value.hint
