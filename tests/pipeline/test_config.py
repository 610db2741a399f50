"""config.pbtxt of a pipeline's steps and ensemble: rendered from templates, parsed by Triton's schema, checked
against the design (a mis-wired ensemble is caught before the server sees it)."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2

from tests.pipeline.designs import toy_design
from tritongen.config import parse_config
from tritongen.errors import TritongenError
from tritongen.pipeline.config import (
    check_ensemble_config,
    check_step_config,
    ensemble_config_text,
    step_config_text,
)


def test_the_ensemble_takes_raw_text_and_wires_the_three_steps():
    design = toy_design()
    proto = parse_config(ensemble_config_text(design))
    assert proto.platform == "ensemble" and proto.max_batch_size == 4
    assert [(i.name, model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in proto.input] == [
        ("text", "TYPE_STRING", [1])]
    assert [o.name for o in proto.output] == ["label", "score", "logits"]
    steps = proto.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["toy_preprocess", "toy_model", "toy_postprocess"]
    assert all(s.model_version == -1 for s in steps)
    assert dict(steps[1].output_map) == {"logits": "network_logits"}  # never the name of the ensemble's own output
    assert dict(steps[2].input_map) == {"logits": "network_logits"} and dict(steps[2].output_map)["logits"] == "logits"
    check_ensemble_config(proto, design)


def test_a_step_is_a_python_model_that_batches_without_waiting():
    design = toy_design()
    proto = parse_config(step_config_text(design, design.preprocess))
    assert proto.backend == "python" and proto.max_batch_size == 4
    assert proto.dynamic_batching.max_queue_delay_microseconds == 0
    assert proto.instance_group[0].kind == proto.instance_group[0].KIND_CPU
    assert [list(o.dims) for o in proto.output] == [[-1], [-1]]
    check_step_config(proto, design.preprocess)


@pytest.mark.parametrize(("edit", "words"), [
    (lambda p: p.ensemble_scheduling.step[2].input_map.__setitem__("logits", "logits_of_nobody"),
     "reads 'logits_of_nobody' before any step makes it"),
    (lambda p: p.ensemble_scheduling.step[1].output_map.__setitem__("hidden", "hidden"), "maps output 'hidden'"),
    (lambda p: p.ensemble_scheduling.step[0].__setattr__("model_name", "other"), "not a model of this pipeline"),
    (lambda p: p.output[1].__setattr__("name", "confidence"), "outputs are"),
])
def test_a_mis_wired_ensemble_is_refused_with_the_reason(edit, words):
    design = toy_design()
    proto = parse_config(ensemble_config_text(design))
    edit(proto)
    with pytest.raises(TritongenError) as err:
        check_ensemble_config(proto, design)
    assert words in (err.value.message + (err.value.details or ""))


def test_a_step_config_that_differs_from_its_design_is_refused():
    design = toy_design()
    proto = parse_config(step_config_text(design, design.postprocess))
    del proto.output[0].dims[:]
    proto.output[0].dims.extend([2])
    with pytest.raises(TritongenError, match="output 'label' has dims \\[2\\]"):
        check_step_config(proto, design.postprocess)
