"""Parity: the tolerance rule, the cases, running them once, comparing them, and one line when PyTorch fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import save_checkpoint
from tritongen.errors import TritongenError
from tritongen.runners.base import Runner
from tritongen.runners.torch import TorchRunner
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name, parse_input_spec
from tritongen.verify import (
    CaseOutputs,
    ParityCase,
    Tolerance,
    compare,
    max_abs_error,
    parity_against,
    parity_cases,
    round_up,
    run_cases,
    tolerance_for,
)

FP32 = dtype_from_name("fp32")


def vector_spec(max_batch_size: int = 8) -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("x:4:fp32"),), outputs=(TensorSpec("y", FP32, (4,)),),
                     max_batch_size=max_batch_size)


class Affine(Runner):
    """y = scale * x + shift: a runner whose error against another is known exactly."""

    def __init__(self, name: str, scale: float = 1.0, shift: float = 0.0) -> None:
        self.name, self.scale, self.shift, self.calls = name, scale, shift, 0

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"y": (feeds["x"] * self.scale + self.shift).astype(np.float32)}


# ---------------------------------------------------------------------------------------------------------------
# Tolerances


def test_tolerance_defaults_follow_the_precision_and_the_user_wins() -> None:
    assert (tolerance_for("fp32").atol, tolerance_for("fp32").rtol) == (1e-4, 1e-3)
    assert (tolerance_for("fp16").atol, tolerance_for("fp16").rtol) == (1e-2, 1e-2)
    fp16 = tolerance_for("fp16", "onnxruntime", 5e-3, None)
    assert (fp16.atol, fp16.rtol, fp16.how) == (5e-3, 1e-2, "given with --atol/--rtol")
    assert tolerance_for("fp16").how == "FP16 defaults"
    assert round_up(0.0031) == 0.0031 and round_up(0.00312) == 0.0032 and round_up(0.0) == 0.0


def test_tensorrt_fp32_allows_for_tf32_and_validate_defaults_to_fp32() -> None:
    from tritongen.validate import DEFAULT_ATOL, DEFAULT_RTOL

    trt = tolerance_for("fp32", "tensorrt")
    assert (trt.atol, trt.rtol, trt.how) == (1e-3, 1e-3, "FP32 defaults for TensorRT")
    assert (DEFAULT_ATOL, DEFAULT_RTOL) == (tolerance_for().atol, tolerance_for().rtol) == (1e-4, 1e-3)


def test_int8_tolerance_is_the_measured_error_with_headroom_unless_given() -> None:
    measured = tolerance_for("int8", "onnxruntime", None, None, measured=0.0031)
    assert measured.atol == 0.0062 and measured.rtol == 1e-3
    assert measured.how == "measured INT8 error 0.0031 on the parity inputs × 2 headroom"
    assert tolerance_for("int8", "tensorrt", None, None, measured=0.0031).atol == 0.0062  # one rule for both targets
    assert tolerance_for("int8", measured=1e-6).atol == 1e-4  # never below the FP32 default
    assert tolerance_for("int8", "onnxruntime", 0.5, None, measured=0.0031).atol == 0.5  # the user wins
    assert tolerance_for("fp16", measured=0.3).atol == 1e-2  # only INT8 follows the measurement


def test_a_tolerance_widened_after_accepting_a_model_covers_what_was_seen() -> None:
    wide = Tolerance(1e-4, 1e-3, "FP32 defaults").widened_to(0.012, "after --accept-fidelity")
    assert wide.atol == 0.024 and wide.rtol == 1e-3
    assert wide.how == "FP32 defaults; widened to 0.024 after --accept-fidelity"
    assert Tolerance(1.0, 0.0).widened_to(0.012, "x").atol == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Cases, runs, comparisons


def test_parity_cases_cover_batch_1_2_and_max_with_several_seeds() -> None:
    cases = parity_cases(vector_spec())
    assert [c.label for c in cases] == [f"batch=1 seed={100 + i}" for i in range(4)] + \
        [f"batch=2 seed={104 + i}" for i in range(4)] + ["batch=8 seed=108"]
    assert [len(c.feeds["x"]) for c in cases] == [1] * 4 + [2] * 4 + [8]
    again = parity_cases(vector_spec())
    assert all(np.array_equal(a.feeds["x"], b.feeds["x"]) for a, b in zip(cases, again, strict=True))
    encoder = ModelSpec(inputs=(parse_input_spec("tokens:seq:int64:0-49"),), max_batch_size=0)
    labels = [c.label for c in parity_cases(encoder)]
    assert labels[0].startswith("seq=") and not any("batch" in label for label in labels)


def test_each_length_at_batch_1_and_2_and_the_max_batch_once_at_the_shorter_lengths() -> None:
    """The max batch catches sizes fixed along the batch axis: once, at the cheaper lengths, is enough."""
    spec = ModelSpec(inputs=(parse_input_spec("tokens:seq:int64:0-49"), parse_input_spec("mask:seq:int64:0-1")),
                     max_batch_size=16, axis_lengths={"seq": (24, 8)})
    cases = parity_cases(spec)
    assert [c.label for c in cases] == [f"batch=1 seq=24 seed={100 + i}" for i in range(3)] + \
        [f"batch=2 seq=24 seed={103 + i}" for i in range(3)] + \
        [f"batch=1 seq=8 seed={106 + i}" for i in range(3)] + [f"batch=2 seq=8 seed={109 + i}" for i in range(3)] + \
        ["batch=16 seq=8 seed=112"]
    assert cases[-1].feeds["tokens"].shape == (16, 8)
    two = ModelSpec(inputs=spec.inputs, max_batch_size=2, axis_lengths={"seq": (8, 24)})
    assert sum(c.feeds["tokens"].shape[0] == 2 for c in parity_cases(two)) == 6  # batch 2 is the max: both lengths


def test_run_once_then_compare_at_any_tolerance() -> None:
    cases = parity_cases(vector_spec())
    reference, candidate = Affine("pytorch"), Affine("candidate", shift=0.01)
    expected, actual = run_cases(reference, cases), run_cases(candidate, cases)
    assert reference.calls == candidate.calls == len(cases)
    assert max_abs_error(expected, actual) == pytest.approx(0.01, rel=1e-4)
    strict = compare(expected, actual, Tolerance(1e-4, 0.0))
    loose = compare(expected, actual, Tolerance(0.02, 0.0))
    assert not strict.passed and loose.passed and reference.calls == len(cases)  # comparing runs nothing
    assert strict.runner == "candidate" and strict.cases == tuple(c.label for c in cases)
    assert "y: max abs err 0.01" in strict.failures()


def test_a_shape_mismatch_fails_parity_but_not_the_measurement() -> None:
    cases = [ParityCase("one", {"x": np.ones((2, 4), np.float32)})]
    expected = run_cases(Affine("pytorch"), cases)

    class Wrong(Affine):
        def infer(self, feeds):
            return {"y": np.ones((2, 5), np.float32)}

    actual = run_cases(Wrong("wrong"), cases)
    report = compare(expected, actual, Tolerance(1.0, 1.0))
    assert not report.passed and "shape [2, 5] but PyTorch gives [2, 4]" in report.failures()
    assert max_abs_error(expected, actual) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# A model that fails only at the max batch size


class FailsAboveBatch16(torch.nn.Module):
    """Runs up to batch 16, like a model whose code hard-codes a buffer size."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 16:
            raise RuntimeError(f"buffer holds 16 rows, got {x.shape[0]}")
        return self.linear(x)


def test_pytorch_failing_at_the_max_batch_is_one_error_naming_batch_and_shapes() -> None:
    reference = TorchRunner(FailsAboveBatch16().eval(), ["x"], ["y"], batched=True)
    with pytest.raises(TritongenError) as err:
        parity_against(reference, Affine("candidate"), vector_spec(max_batch_size=32), atol=1e-4, rtol=1e-3)
    assert err.value.message.startswith("the PyTorch model fails at batch 32 (x [32, 4] float32): RuntimeError: "
                                        "buffer holds 16 rows, got 32")
    assert "--max-batch-size" in err.value.hint


def test_build_of_a_model_failing_at_the_max_batch_says_so_in_one_line(tmp_path: Path, cli) -> None:
    checkpoint = save_checkpoint(FailsAboveBatch16(), tmp_path / "m.pt")
    result = cli("build", checkpoint, "--model-class", "tests.test_verify:FailsAboveBatch16", "--input", "x:4:fp32",
                 "--max-batch-size", "32", "--no-deploy", "--no-simplify", "--repository", tmp_path / "repo")
    assert result.exit_code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "batch 32" in lines[0] and "Traceback" not in result.stderr


def padded_case(side: str) -> tuple[ModelSpec, ParityCase]:
    spec = ModelSpec((parse_input_spec("ids:seq:int64"), parse_input_spec("attention_mask:seq:int64:mask")),
                     (TensorSpec("logits", FP32, ("seq", 3)), TensorSpec("pooled", FP32, (3,))), max_batch_size=4,
                     padding=side)
    mask = np.array([[1, 1, 1, 1], [0, 0, 1, 1]])  # the second row is left-padded
    return spec, ParityCase("padded", {"ids": np.zeros((2, 4), np.int64), "attention_mask": mask})


def outputs_of_case(case: ParityCase, logits: np.ndarray, pooled: np.ndarray, runner: str) -> CaseOutputs:
    return CaseOutputs(runner, (case,), ({"logits": logits, "pooled": pooled},))


def test_a_difference_only_at_padding_positions_passes_and_says_so() -> None:
    spec, case = padded_case("left")
    expected = np.zeros((2, 4, 3), np.float32)
    actual = expected.copy()
    actual[1, 0] = 0.3  # a padding position: it sees no real token
    report = compare(outputs_of_case(case, expected, np.zeros((2, 3)), "pytorch"),
                     outputs_of_case(case, actual, np.zeros((2, 3)), "onnxruntime"), Tolerance(1e-4, 1e-3), spec)
    assert report.passed
    (note,) = report.notes()
    assert "differs from PyTorch only at padding positions of output 'logits' (where 'attention_mask' is 0), by up " \
           "to 0.3" in note
    # Without the spec (nothing knows what is padding), the same difference fails.
    assert not compare(outputs_of_case(case, expected, np.zeros((2, 3)), "pytorch"),
                       outputs_of_case(case, actual, np.zeros((2, 3)), "onnxruntime"), Tolerance(1e-4, 1e-3)).passed


@pytest.mark.parametrize("where", ["real position", "output without the padded axis"])
def test_a_difference_anywhere_else_fails(where: str) -> None:
    spec, case = padded_case("left")
    logits, pooled = np.zeros((2, 4, 3), np.float32), np.zeros((2, 3), np.float32)
    bad_logits, bad_pooled = logits.copy(), pooled.copy()
    bad_logits[1, 0] = 0.3
    if where == "real position":
        bad_logits[1, 3] = 0.3
    else:
        bad_pooled[1] = 0.3
    report = compare(outputs_of_case(case, logits, pooled, "pytorch"),
                     outputs_of_case(case, bad_logits, bad_pooled, "onnxruntime"), Tolerance(1e-4, 1e-3), spec)
    assert not report.passed


def test_strings_are_compared_for_equality_and_the_first_difference_named() -> None:
    from tritongen.verify import compare_outputs

    expected = {"label": np.array([[b"cat"], [b"dog"], [b"cat"]], dtype=object)}
    same = compare_outputs({"label": expected["label"].copy()}, expected, 1e-4, 1e-3)["label"]
    assert same.passed and same.max_abs_err == 0 and same.exact  # reports say "equal", not "max abs err 0"
    assert not compare_outputs({"x": np.zeros(2)}, {"x": np.zeros(2)}, 1e-4, 1e-3)["x"].exact
    other = compare_outputs({"label": np.array([[b"cat"], [b"cow"], [b"dog"]], dtype=object)}, expected, 1, 1)["label"]
    assert not other.passed and other.exact and other.problem == "2 of 3 values differ (first at 1: 'cow', expected 'dog')"
