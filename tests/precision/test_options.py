"""Precision options: mistakes found before anything is exported, and how INT8 is quantized (recorded as such)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CNN_ARGS
from tritongen.errors import TritongenError
from tritongen.precision.options import (
    PrecisionOptions,
    check_precision_options,
    cpu_int8_description,
    quantization_record,
)


def test_int8_static_without_calibration_data_is_refused_with_the_three_ways_out() -> None:
    with pytest.raises(TritongenError) as err:
        check_precision_options(PrecisionOptions(precision="int8"))
    assert "needs calibration data" in err.value.message
    assert "--calibration-data" in err.value.hint and "--quantize dynamic" in err.value.hint
    assert "--calibration random" in err.value.hint


@pytest.mark.parametrize("options, words", [
    (PrecisionOptions(precision="fp32", fp16_io=True), "--fp16-io needs --precision fp16"),
    (PrecisionOptions(precision="int8", calibration="random", calibration_data=Path("x.npz")), "both"),
    (PrecisionOptions(precision="int8", calibration_data=Path("/no/such.npz")), "does not exist"),
    (PrecisionOptions(precision="fp16", min_top1_agreement=1.5), "out of range"),
])
def test_bad_precision_options(options: PrecisionOptions, words: str) -> None:
    with pytest.raises(TritongenError, match=words):
        check_precision_options(options)


def test_unused_calibration_is_a_warning_not_an_error() -> None:
    notes = check_precision_options(PrecisionOptions(precision="int8", quantize="dynamic", calibration="random"))
    assert any("not used" in n for n in notes)
    assert check_precision_options(PrecisionOptions(precision="int8", calibration="random")) == []


def test_the_quantization_choice_and_this_cpu_are_recorded(tmp_path: Path) -> None:
    record = quantization_record(PrecisionOptions(precision="int8", symmetric_activations=True))
    assert record["reduce_range"] is True and "7-bit" in record["weights"]
    assert record["safe_on"].startswith("every x86-64 CPU") and "symmetric" in record["activations"]
    assert quantization_record(PrecisionOptions(precision="fp16")) is None
    full = quantization_record(PrecisionOptions(precision="int8", quantize="dynamic", reduce_range=False))
    assert "without VNNI can saturate" in full["safe_on"] and "full 8-bit" in full["weights"]
    assert "7-bit" in PrecisionOptions(precision="int8").method
    assert "7-bit" not in PrecisionOptions(precision="int8", reduce_range=False).method
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 avx2 fma\n")
    assert cpu_int8_description(cpuinfo).endswith("AVX2, no VNNI")
    cpuinfo.write_text("flags : avx2 avx512f avx512_vnni\n")
    assert cpu_int8_description(cpuinfo).endswith("AVX-512, VNNI (avx512_vnni)")


def test_int8_without_calibration_fails_before_export(tmp_path: Path, cnn_checkpoint: Path, cli) -> None:
    result = cli("build", cnn_checkpoint, *CNN_ARGS, "--precision", "int8", "--repository", tmp_path / "repo")
    assert result.exit_code == 2 and "needs calibration data" in result.stderr and "Traceback" not in result.stderr
