import numpy as np
import pytest

from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec, parse_input_spec, random_inputs


def test_parses_fixed_dynamic_and_named_dims():
    t = parse_input_spec("image:3xHxW:fp32")
    assert t.name == "image" and t.dtype.short == "fp32" and t.shape == (3, "H", "W")
    assert t.triton_dims == [3, -1, -1]
    anonymous = parse_input_spec("x:-1x4:float16")
    assert anonymous.shape == ("x_dim1", 4) and anonymous.dtype.triton == "TYPE_FP16"


def test_value_range_and_scalar():
    t = parse_input_spec("tokens:seq:int64:0-999")
    assert t.value_range == (0, 999)
    assert parse_input_spec("flag::bool").shape == ()


@pytest.mark.parametrize("text, fragment", [
    ("image", "expected 3 parts"),
    ("image:3x224:fp33", "unknown dtype 'fp33'"),
    ("image:3x0:fp32", "cannot be 0"),
    ("image:3x?:fp32", "dim '?'"),
    ("9x:3:fp32", "not a valid tensor name"),
    ("x:batchx3:fp32", "batch axis is implicit"),
    ("x:3:fp32:0-9", "value range"),
])
def test_malformed_specs_name_the_problem(text, fragment):
    with pytest.raises(TritongenError) as err:
        parse_input_spec(text)
    assert fragment in str(err.value)
    assert err.value.hint  # every error says what to do


def test_shared_axis_gets_one_length_and_ints_respect_range():
    spec = ModelSpec(inputs=(parse_input_spec("tokens:seq:int64:0-9"), parse_input_spec("mask:seq:bool")),
                     max_batch_size=8)
    assert spec.dynamic_axes == ["seq"]
    feeds = random_inputs(spec, 3, {"seq": 5}, np.random.default_rng(0))
    assert feeds["tokens"].shape == (3, 5) == feeds["mask"].shape
    assert feeds["tokens"].min() >= 0 and feeds["tokens"].max() <= 9 and feeds["tokens"].dtype == np.int64
    assert feeds["mask"].dtype == np.bool_


def test_spec_round_trips_through_the_manifest_form():
    from tritongen.spec import spec_from_dict, spec_to_dict

    spec = ModelSpec(inputs=(parse_input_spec("tokens:seq:int64:0-9"), parse_input_spec("image:3xHxW:fp16")),
                     max_batch_size=8, axis_lengths={"seq": (4, 12)})
    again = spec_from_dict(spec_to_dict(spec))
    assert again.inputs == spec.inputs and again.max_batch_size == 8 and again.lengths("seq") == (4, 12)
