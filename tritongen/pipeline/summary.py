"""What `build` tells the user about a pipeline: its models, its interface, the end-to-end parity, and a
ready-to-run client (templates/pipeline_client.py.j2: tritonclient over HTTP and gRPC)."""

from __future__ import annotations

from typing import Any

from tritongen.pipeline.design import PipelineDesign
from tritongen.verify import ParityReport

CLIENT_EXAMPLES = ["hello world", "Triton serves models, fast!"]


def client_code(design: PipelineDesign) -> str:
    """A Python script that sends the pipeline raw inputs (strings, or the image files on its command line) over
    HTTP and gRPC and prints every answer."""
    from tritongen.render import render

    text = render("pipeline_client.py.j2", {
        "name": design.name, "kind": design.kind, "raw_input": design.raw_input,
        "outputs": [t.name for t in design.spec.outputs], "examples": CLIENT_EXAMPLES})
    compile(text, "client.py", "exec")
    return text


def pipeline_summary(design: PipelineDesign, report: ParityReport) -> dict[str, Any]:
    return {
        **design.to_dict(),
        "inputs": [t.describe() for t in design.spec.inputs],
        "answers": [t.describe() for t in design.spec.outputs],
        "parity": report.to_dict(),
        "client_example": client_code(design),
    }
