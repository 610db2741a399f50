"""The legacy (TorchScript-based) ONNX exporter in a child process.

Its C++ side prints whole graphs to the process's stdout when an export fails (torch 2.13 turns its ONNX log on
and never off), which would end up in the user's terminal and in `--json` output. A child process loads the
checkpoint again, exactly as the build did, exports, and reports back in a small JSON file; its output is
discarded. An interrupt reaches the child through the process group, and the parent stops it in any case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tritongen.errors import TritongenError
from tritongen.spec import ModelSpec, spec_from_dict, spec_to_dict


@dataclass(frozen=True)
class Reload:
    """How to load the checkpoint again: the arguments of `tritongen.checkpoint.load_checkpoint`."""

    checkpoint: str
    model_class: str | None = None
    model_kwargs: str | None = None
    pythonpath: tuple[str, ...] = ()
    trust: bool = False


class LegacyExportError(Exception):
    """The child's export failed; `summary` is its one-line account of why."""

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


def export_in_child(reload: Reload, spec: ModelSpec, path: Path, opset: int | None) -> None:
    """Export with the legacy exporter in a child process; raises LegacyExportError with the child's summary."""
    import tritongen

    job = path.with_name(path.name + ".legacy-job.json")
    result = path.with_name(path.name + ".legacy-result.json")
    job.write_text(json.dumps({"reload": asdict(reload), "spec": spec_to_dict(spec), "path": str(path),
                               "opset": opset, "result": str(result)}))
    # The child imports the same tritongen as this process, whatever is installed.
    root = str(Path(tritongen.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        done = subprocess.run([sys.executable, "-m", "tritongen.export.legacy", str(job)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        if result.exists():
            outcome = json.loads(result.read_text())
            if outcome.get("error"):
                raise LegacyExportError(outcome["error"])
            return
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise LegacyExportError(f"the legacy exporter's process stopped with exit code {done.returncode} ({last})")
    finally:
        job.unlink(missing_ok=True)
        result.unlink(missing_ok=True)


def _main(job_path: str) -> int:
    from tritongen.checkpoint import load_checkpoint
    from tritongen.export.onnx import export_legacy, summarise_export_error

    job = json.loads(Path(job_path).read_text())
    reload = Reload(**{**job["reload"], "pythonpath": tuple(job["reload"]["pythonpath"])})
    outcome: dict[str, str | None] = {"error": None}
    try:
        loaded = load_checkpoint(Path(reload.checkpoint), model_class=reload.model_class,
                                 model_kwargs=reload.model_kwargs, pythonpath=tuple(Path(p) for p in reload.pythonpath),
                                 trust=reload.trust)
        export_legacy(loaded.module, spec_from_dict(job["spec"]), Path(job["path"]), job["opset"])
    except TritongenError as exc:
        outcome["error"] = exc.one_line()
    except Exception as exc:
        outcome["error"] = summarise_export_error(exc)
    Path(job["result"]).write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
