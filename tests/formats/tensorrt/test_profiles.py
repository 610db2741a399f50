"""Optimization profiles from the ModelSpec, and `--dynamic-range` parsing."""

from __future__ import annotations

import pytest

from tests.formats.tensorrt.shared import cnn_spec, encoder_spec
from tritongen.errors import TritongenError
from tritongen.formats.tensorrt.profiles import parse_dynamic_range, parse_dynamic_ranges, profile_from_spec


def test_batch_profile_is_one_to_max_and_named_axes_take_their_ranges() -> None:
    profile = profile_from_spec(cnn_spec(), {})
    assert (profile["image"].min, profile["image"].opt, profile["image"].max) == \
        ((1, 3, 32, 32), (32, 3, 32, 32), (32, 3, 32, 32))
    assert profile_from_spec(cnn_spec(), {}, preferred_batch_sizes=(4, 8))["image"].opt == (8, 3, 32, 32)
    ranges = {"seq": parse_dynamic_range("seq:1:64:256"), "batch": parse_dynamic_range("batch:1:4:8")}
    profile = profile_from_spec(encoder_spec(), ranges)
    assert profile["tokens"].to_dict() == {"min": [1, 1], "opt": [4, 64], "max": [8, 256]}
    assert profile["mask"] == profile["tokens"]  # one named axis, one range, for every input that has it


def test_unbatched_profile_has_no_batch_axis() -> None:
    profile = profile_from_spec(cnn_spec(max_batch_size=0), {})
    assert profile["image"].min == profile["image"].max == (3, 32, 32)


@pytest.mark.parametrize("text, words", [
    ("seq:1:64", "malformed"), ("seq:8:4:16", "MIN <= OPT <= MAX"), ("seq:a:b:c", "integers"), ("1x:1:2:3", "malformed"),
])
def test_bad_dynamic_ranges(text: str, words: str) -> None:
    with pytest.raises(TritongenError, match=words):
        parse_dynamic_range(text)


def test_an_axis_given_twice_is_refused() -> None:
    assert set(parse_dynamic_ranges(["seq:1:2:3", "batch:1:2:4"])) == {"seq", "batch"}
    with pytest.raises(TritongenError, match="gives axis 'seq' twice"):
        parse_dynamic_ranges(["seq:1:2:3", "seq:1:4:8"])


def test_a_dynamic_axis_without_a_range_is_an_error_with_an_example() -> None:
    with pytest.raises(TritongenError) as err:
        profile_from_spec(encoder_spec(), {})
    assert "axis 'seq' is dynamic" in err.value.message and "--dynamic-range seq:1:16:64" in err.value.hint
    with pytest.raises(TritongenError, match="names axis 'len', which no input has"):
        profile_from_spec(encoder_spec(), {"len": parse_dynamic_range("len:1:2:3")})
