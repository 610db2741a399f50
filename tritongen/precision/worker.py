"""Convert or load an ONNX model in a child process: FP16 conversion, INT8 quantization, the load probe.

A standalone script (`python3 worker.py JOB.json`, run from a scratch directory) that imports nothing from
tritongen, so that what ONNX Runtime's tools do to a process stays in the child: they log warnings on the root
logger, symbolic shape inference dumps files into the current directory when it fails, and ONNX Runtime has
crashed outright loading some FP16 graphs. The parent (tritongen.precision.convert) writes the job and reads
one error line back.

The job file (JSON): kind: fp16 | int8_static | int8_dynamic | probe; source, dest: model paths;
options: {keep_io_types, op_block_list} (fp16), {method, symmetric_activations, reduce_range} (int8_static),
{reduce_range} (int8_dynamic); feeds: .npz files (calibration batches; for probe: the one batch to run);
external_data: write weights to a .data file; sessions: path of tritongen/runners/sessions.py (probe).
"""

from __future__ import annotations

import json
import logging
import runpy
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ERROR_PREFIX = "tritongen-worker-error: "  # the parent reads this line as the one-line reason
EXIT_ERROR = 3


def load_feeds(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def calibration_reader(paths: list[str]) -> Any:
    """ONNX Runtime's CalibrationDataReader over .npz batches (it checks isinstance, so a subclass)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = [load_feeds(p) for p in paths]
            self.next = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.next >= len(self.feeds):
                return None
            self.next += 1
            return self.feeds[self.next - 1]

        def rewind(self) -> None:
            self.next = 0

        def __len__(self) -> int:
            return len(self.feeds)

    return Reader()


def preprocessed(source: str, scratch: Path) -> str:
    """ONNX Runtime's recommended pre-processing (shape inference, graph optimisation) before quantization.

    Symbolic shape inference fails on some graphs (seen on a transformer encoder); plain ONNX shape inference then
    does, and when that fails too the model is quantized as it is.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = scratch / "preprocessed.onnx"
    for skip_symbolic in (False, True):
        try:
            quant_pre_process(source, str(out), skip_symbolic_shape=skip_symbolic)
            return str(out)
        except Exception:  # any failure means: try the next, plainer pass
            out.unlink(missing_ok=True)
    return source


def fp16(job: dict[str, Any]) -> None:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    options = job["options"]
    model = onnx.load(job["source"])
    converted = convert_float_to_float16(model, keep_io_types=options["keep_io_types"],
                                         op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(options["op_block_list"]))
    dest = Path(job["dest"])
    big = converted.ByteSize() > job["external_data_threshold"]
    onnx.save_model(converted, str(dest), save_as_external_data=big, all_tensors_to_one_file=True,
                    location=dest.name + ".data" if big else None)


def int8_static(job: dict[str, Any], scratch: Path) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    options = job["options"]
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    quantize_static(preprocessed(job["source"], scratch), job["dest"], calibration_reader(job["feeds"]),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=methods[options["method"]],
                    reduce_range=options["reduce_range"], use_external_data_format=job["external_data"],
                    extra_options={"ActivationSymmetric": options["symmetric_activations"], "WeightSymmetric": True})


def int8_dynamic(job: dict[str, Any], scratch: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(preprocessed(job["source"], scratch), job["dest"], per_channel=True, weight_type=QuantType.QInt8,
                     reduce_range=job["options"]["reduce_range"], use_external_data_format=job["external_data"])


def probe(job: dict[str, Any]) -> None:
    # The session the served model would open: tritongen's one session builder, at full graph optimisation
    # (the level Triton's onnxruntime backend and the python runner use: the crash seen was at this level only).
    cpu_session = runpy.run_path(job["sessions"])["cpu_session"]
    cpu_session(job["source"], 1).run(None, load_feeds(job["feeds"][0]))


def run(job_path: Path) -> None:
    job = json.loads(job_path.read_text())
    kind = job["kind"]
    if kind == "fp16":
        fp16(job)
    elif kind == "int8_static":
        int8_static(job, job_path.parent)
    elif kind == "int8_dynamic":
        int8_dynamic(job, job_path.parent)
    elif kind == "probe":
        probe(job)
    else:
        raise ValueError(f"unknown job kind {kind!r}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 worker.py JOB.json", file=sys.stderr)
        return 2
    # This process exists for the job: quiet ONNX Runtime's tools here, where it touches nobody else.
    logging.getLogger().setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    try:
        run(Path(args[0]))
    except Exception as exc:  # reported to the parent as one line
        text = (str(exc).strip().splitlines() or [""])[0][:300]
        print(ERROR_PREFIX + f"{type(exc).__name__}: {text}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
