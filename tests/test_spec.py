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
    masked = ModelSpec(inputs=(parse_input_spec("ids:seq:int64"), parse_input_spec("attention_mask:seq:int64:mask")),
                       max_batch_size=8, padding="left")
    again = spec_from_dict(spec_to_dict(masked))
    assert again.inputs[1].role == "mask" and again.padding == "left"  # what bench's random inputs are made from


def test_roles_are_given_in_place_of_a_value_range():
    assert parse_input_spec("m:seq:int64:mask").role == "mask"
    assert parse_input_spec("p:seq:int64:positions").role == "positions"
    with pytest.raises(TritongenError, match="needs an axis"):
        parse_input_spec("m::int64:mask")


@pytest.mark.parametrize("shape, dims", [
    ("3x224x224", ["3", "224", "224"]),
    ("3xHxW", ["3", "H", "W"]),
    ("Tx5", ["T", "5"]),
    ("seqx768", ["seq", "768"]),
    ("max_len", ["max_len"]),  # was read as the two axes `ma` and `_len`
    ("box", ["box"]),
    ("max_lenx16", ["max_len", "16"]),
    ("boxx4", ["box", "4"]),
    ("max_len,box,3", ["max_len", "box", "3"]),
])
def test_dims_split_only_between_complete_dims(shape, dims):
    from tritongen.spec import split_dims

    assert split_dims(shape) == dims


def test_axis_names_may_contain_x_and_describe_round_trips():
    assert parse_input_spec("tokens:max_len:int64").shape == ("max_len",)
    assert parse_input_spec("x:box:fp32").shape == ("box",)
    for text in ("tokens:max_len,16:int64", "image:3xHxW:fp32", "pts:boxes,seq:fp32"):
        t = parse_input_spec(text)
        assert parse_input_spec(t.describe()) == t


@pytest.mark.parametrize("text, fragment", [
    ("tokens:seq:int64:9-0", "the value range 9-0 is empty (LOW is above HIGH)"),
    ("small:4:int8:0-999", "does not fit int8 (-128 to 127)"),
    ("flag:4:bool:0-1", "not LOW-HIGH for an integer input"),
])
def test_bad_value_ranges_are_one_clear_error(text, fragment):
    with pytest.raises(TritongenError) as err:
        parse_input_spec(text)
    assert fragment in err.value.message and err.value.hint


def test_an_absurd_dim_is_refused_before_anything_is_allocated():
    from tritongen.spec import check_example_size

    with pytest.raises(TritongenError) as err:
        check_example_size(ModelSpec(inputs=(parse_input_spec("x:100000000000:fp32"),), max_batch_size=32))
    assert "would take" in err.value.message and "at batch 32" in err.value.message and "--max-batch-size" in err.value.hint
    check_example_size(ModelSpec(inputs=(parse_input_spec("image:3x224x224:fp32"),), max_batch_size=32))
