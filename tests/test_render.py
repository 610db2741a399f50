"""The one Jinja environment: strict about undefined variables, and filters that keep every value on its line."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritongen.errors import TritongenError
from tritongen.render import environment, pbtxt_str, render, yaml_str


@pytest.mark.parametrize("value", ['plain', 'a"b', 'back\\slash', 'new\nline', 'cr\rlf', 'nul\x00', 'ünïcode', '}{'])
def test_pbtxt_str_round_trips_through_tritons_schema(value):
    proto = model_config_pb2.ModelConfig()
    text_format.Parse(f"name: {pbtxt_str(value)}\n# {pbtxt_str(value, quote=False)}\nmax_batch_size: 1", proto)
    assert proto.name == value and proto.max_batch_size == 1  # the comment ended where it should


def test_yaml_str_quotes_and_stops_compose_interpolation():
    assert yaml_str("a: $HOME\nb") == '"a: $$HOME\\nb"'


def test_an_undefined_variable_is_an_error_not_an_empty_string(tmp_path):
    (tmp_path / "t.j2").write_text("name: {{ name | pbtxt_str }} {{ missing }}\n")
    assert environment(tmp_path).get_template("t.j2").render(name="x", missing=1) == 'name: "x" 1\n'
    with pytest.raises(TritongenError, match="internal error rendering t.j2"):
        render("t.j2", {"name": "x"}, templates=tmp_path)
