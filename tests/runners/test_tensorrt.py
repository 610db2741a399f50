"""The TensorRT outputs runner: the builder's recorded outputs, given back for exactly the inputs it ran."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tritongen.errors import TritongenError
from tritongen.runners.tensorrt import TensorRTOutputsRunner
from tritongen.verify import ParityCase, run_cases


def recorded_job(tmp_path: Path) -> Path:
    (tmp_path / "parity").mkdir()
    for i in range(2):
        x = np.full((2, 4), float(i), np.float32)
        np.savez(tmp_path / "parity" / f"in{i:03d}.npz", x=x)
        np.savez(tmp_path / "parity" / f"out{i:03d}.npz", y=x * 10)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"parity": {"inputs": ["parity/in000.npz", "parity/in001.npz"],
                                          "outputs": ["parity/out000.npz", "parity/out001.npz"]}}))
    return job


def test_replays_the_outputs_of_the_inputs_the_engine_ran(tmp_path: Path) -> None:
    cases = [ParityCase(f"case {i}", {"x": np.full((2, 4), float(i), np.float32)}) for i in (1, 0)]
    with TensorRTOutputsRunner.from_job(recorded_job(tmp_path), name="tensorrt (in-process)") as engine:
        outputs = run_cases(engine, cases)
        with pytest.raises(TritongenError, match="was not run on these inputs"):
            engine.infer({"x": np.full((2, 4), 7.0, np.float32)})
    assert outputs.runner == "tensorrt (in-process)"
    assert [float(o["y"][0, 0]) for o in outputs.outputs] == [10.0, 0.0]


def test_missing_outputs_are_one_line_pointing_at_the_reproduce_script(tmp_path: Path) -> None:
    job = recorded_job(tmp_path)
    (tmp_path / "parity" / "out001.npz").unlink()
    with pytest.raises(TritongenError) as err:
        TensorRTOutputsRunner.from_job(job).activate()
    assert "wrote no outputs for the parity inputs" in err.value.message and "reproduce.sh" in err.value.hint
