"""Report values as JSON: nothing a report holds makes `--json` print invalid JSON."""

from __future__ import annotations

import json

from tritongen.jsonsafe import json_safe


def test_non_finite_numbers_become_null_and_keys_strings_at_any_depth():
    value = {"a": float("inf"), 2: [1.5, float("nan"), (float("-inf"), "x")], "b": {"c": None}}
    safe = json_safe(value)
    assert safe == {"a": None, "2": [1.5, None, [None, "x"]], "b": {"c": None}}
    json.dumps(safe, allow_nan=False)  # raises on NaN or Infinity
