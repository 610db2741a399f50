"""The inputs every request carries: lengths of dynamic axes, batch sizes, and the spec they come from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritongen.bench import make_workload, model_spec, parse_lengths, spec_from_config
from tritongen.config import parse_config
from tritongen.errors import TritongenError
from tritongen.repository import write_manifest
from tritongen.spec import ModelSpec, parse_input_spec, spec_to_dict

SPEC = ModelSpec((parse_input_spec("tokens:seq:int64:0-49"), parse_input_spec("mask:seq:int64:0-1")),
                 (parse_input_spec("hidden:seqx8:fp32"),), 8, {"seq": (6, 12)})


def test_lengths_options() -> None:
    assert parse_lengths(["seq=128", "H=4"]) == {"seq": 128, "H": 4}
    for bad in ("seq", "seq=0", "=3", "seq=x"):
        with pytest.raises(TritongenError, match=f"malformed --length '{bad}'"):
            parse_lengths([bad])


def test_workload_inputs_follow_the_spec() -> None:
    workload = make_workload("enc", SPEC, 3)
    assert workload.lengths == {"seq": 6} and workload.batch_size == 3 and workload.outputs == ("hidden",)
    assert workload.inputs["tokens"].shape == (3, 6) and workload.inputs["tokens"].dtype == np.int64
    assert workload.inputs["tokens"].min() >= 0 and workload.inputs["tokens"].max() <= 49
    assert make_workload("enc", SPEC, 1, {"seq": 20}).inputs["mask"].shape == (1, 20)
    again = make_workload("enc", SPEC, 3)
    assert all(np.array_equal(again.inputs[k], workload.inputs[k]) for k in workload.inputs)  # seeded


@pytest.mark.parametrize("batch, lengths, message", [
    (9, None, "--batch-size 9 is above the model's max_batch_size 8"),
    (0, None, "--batch-size 0 must be at least 1"),
    (1, {"H": 3}, "--length names axis 'H', which no input of 'enc' has"),
])
def test_workload_errors(batch: int, lengths: dict | None, message: str) -> None:
    with pytest.raises(TritongenError, match=message):
        make_workload("enc", SPEC, batch, lengths)
    unbatched = ModelSpec(SPEC.inputs, SPEC.outputs, 0, SPEC.axis_lengths)
    with pytest.raises(TritongenError, match="does not batch"):
        make_workload("enc", unbatched, 2)


def test_a_config_alone_gives_every_dynamic_dim_an_axis_of_its_own(configs: Path) -> None:
    config = parse_config((configs / "fcn" / "config.pbtxt").read_text())
    spec = spec_from_config(config)
    assert spec.max_batch_size == 8 and [t.name for t in spec.inputs] == ["image"]
    assert spec.inputs[0].shape == (3, "image_dim2", "image_dim3")
    assert spec.outputs[0].shape == (1, "output_dim2", "output_dim3")
    assert model_spec(configs / "fcn", config) == spec  # no manifest: the config's


def test_the_manifest_spec_wins_with_the_served_max_batch(configs: Path) -> None:
    config = parse_config((configs / "fcn" / "config.pbtxt").read_text())
    recorded = ModelSpec((parse_input_spec("image:3xHxW:fp32"),), (parse_input_spec("output:1xHxW:fp32"),), 32,
                         {"H": (12, 16), "W": (10, 20)})
    write_manifest(configs / "fcn" / "1", {"spec": spec_to_dict(recorded)})
    spec = model_spec(configs / "fcn", config)
    assert spec.inputs == recorded.inputs and spec.lengths("H") == (12, 16)
    assert spec.max_batch_size == 8  # as served, not as built


PIPELINE_CONFIG = """
name: "p"
platform: "ensemble"
max_batch_size: 4
input { name: "text" data_type: TYPE_STRING dims: [ 1 ] }
output { name: "label" data_type: TYPE_STRING dims: [ 1 ] }
ensemble_scheduling {
  step { model_name: "p_pre" model_version: -1 input_map { key: "text" value: "text" }
         output_map { key: "ids" value: "ids" } }
  step { model_name: "p_net" model_version: -1 input_map { key: "ids" value: "ids" }
         output_map { key: "logits" value: "logits" } }
  step { model_name: "p_post" model_version: -1 input_map { key: "logits" value: "logits" }
         output_map { key: "label" value: "label" } }
}
"""


def test_a_pipeline_is_sent_its_saved_raw_inputs_of_median_size(tmp_path: Path) -> None:
    from tritongen.bench.workload import pipeline_workload
    from tritongen.repository import save_reference

    texts = ["a", "a much longer sentence than the rest of them", "mid sized", "medium text", "", "longer text here"]
    save_reference(tmp_path / "1", {"text": np.array([[t] for t in texts], dtype=object)},
                   {"label": np.array([[b"x"]] * len(texts), dtype=object)})
    config = parse_config(PIPELINE_CONFIG)

    one = pipeline_workload("p", tmp_path, config, 1)
    assert one.steps == ("p_pre", "p_net", "p_post") and one.outputs == ("label",) and one.lengths == {}
    assert one.inputs["text"].tolist() == [[b"medium text"]]  # sizes 0 1 9 11 16 44: the median, not "" or the longest
    three = pipeline_workload("p", tmp_path, config, 3)
    assert sorted(len(t[0]) for t in three.inputs["text"]) == [9, 11, 16]

    save_reference(tmp_path / "2", {"text": np.array([["only one"]], dtype=object)}, {})
    assert pipeline_workload("p", tmp_path, config, 4).inputs["text"].tolist() == [[b"only one"]] * 4  # repeated
    with pytest.raises(TritongenError, match=r"--batch-size 5 is outside 1..4 for pipeline 'p'"):
        pipeline_workload("p", tmp_path, config, 5)
    with pytest.raises(TritongenError, match="no saved raw inputs"):
        pipeline_workload("p", tmp_path / "nothing", config, 1)
