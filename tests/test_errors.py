"""The error types, and telling an interrupt apart from the error a library turned it into."""

from __future__ import annotations

import pytest

from tritongen.errors import CheckFailed, TritongenError, stop_if_interrupted


def interrupted_error() -> AttributeError:
    """An AttributeError raised while a KeyboardInterrupt was being handled, as torch once did."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError:
        try:
            raise AttributeError("'NoneType' object has no attribute 'graph'")  # __context__: the RuntimeError
        except AttributeError as exc:
            return exc


def test_an_interrupt_hidden_in_an_exception_chain_stops():
    with pytest.raises(KeyboardInterrupt):
        stop_if_interrupted(interrupted_error())
    stop_if_interrupted(ValueError("an ordinary export failure"))  # returns


def test_one_line_holds_the_problem_and_the_fix():
    assert TritongenError("input 'x' is int32", "pass --input x:4:int64").one_line() == \
        "input 'x' is int32; pass --input x:4:int64"
    assert CheckFailed("parity").exit_code == 1
