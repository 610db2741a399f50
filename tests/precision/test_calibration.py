"""Calibration data: .npz files and folders, checked against the model's inputs with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.precision.shared import cnn_spec, encoder_spec
from tritongen.errors import TritongenError
from tritongen.precision.calibration import calibration_for, calibration_from_npz, count_items, random_calibration
from tritongen.precision.options import PrecisionOptions


def test_calibration_npz_file_and_folder_are_batched_and_cast(tmp_path: Path) -> None:
    spec = cnn_spec()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", image=rng.standard_normal((20, 3, 32, 32)))  # float64: cast to float32
    feeds = calibration_from_npz(tmp_path / "a.npz", spec, batch=8)
    assert [f["image"].shape[0] for f in feeds] == [8, 8, 4] and feeds[0]["image"].dtype == np.float32
    (tmp_path / "dir").mkdir()
    for i in range(3):
        np.savez(tmp_path / "dir" / f"{i}.npz", image=rng.standard_normal((5, 3, 32, 32)).astype(np.float32))
    feeds = calibration_from_npz(tmp_path / "dir", spec, batch=8, max_items=12)
    assert sum(f["image"].shape[0] for f in feeds) == 12


def test_calibration_npz_with_a_dynamic_axis_and_integer_inputs(tmp_path: Path) -> None:
    spec = encoder_spec()
    np.savez(tmp_path / "short.npz", tokens=np.ones((4, 8), np.int32), mask=np.ones((4, 8), np.int64))
    np.savez(tmp_path / "long.npz", tokens=np.ones((4, 24), np.int64), mask=np.ones((4, 24), np.int64))
    feeds = calibration_from_npz(tmp_path, spec)
    assert [f["tokens"].shape for f in feeds] == [(4, 24), (4, 8)]
    assert all(f["tokens"].dtype == np.int64 for f in feeds)


@pytest.mark.parametrize("arrays, words", [
    ({"picture": np.zeros((2, 3, 32, 32), np.float32)}, "model's inputs are image"),
    ({"image": np.zeros((3, 32, 32), np.float32)}, "shape [3, 32, 32]"),
    ({"image": np.zeros((2, 3, 16, 16), np.float32)}, "size 16 at per-item dim 1"),
    ({"image": np.zeros((2, 3, 32, 32), np.int64)}, "is int64, but the input is fp32"),
])
def test_calibration_npz_mistakes_name_the_file_and_the_fix(tmp_path: Path, arrays: dict, words: str) -> None:
    np.savez(tmp_path / "calib.npz", **arrays)
    with pytest.raises(TritongenError) as err:
        calibration_from_npz(tmp_path / "calib.npz", cnn_spec())
    assert words in err.value.message and "calib.npz" in err.value.message and err.value.hint


def test_encoder_calibration_arrays_must_agree_on_the_shared_axis(tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", tokens=np.ones((2, 8), np.int64), mask=np.ones((2, 9), np.int64))
    with pytest.raises(TritongenError, match="disagree on axis 'seq'"):
        calibration_from_npz(tmp_path / "c.npz", encoder_spec())


def test_random_calibration_respects_value_ranges() -> None:
    feeds = random_calibration(encoder_spec(), items=20)
    assert sum(f["tokens"].shape[0] for f in feeds) >= 20
    assert all(f["tokens"].max() <= 49 and f["mask"].max() <= 1 for f in feeds)


def test_random_calibration_is_announced_as_testing_only() -> None:
    said: list[str] = []
    feeds, info = calibration_for(PrecisionOptions(precision="int8", calibration="random"), cnn_spec(), said.append)
    assert info["source"] == "random (testing only)" and info["items"] == count_items(feeds, cnn_spec()) == 64
    assert said and "testing only" in said[0]
