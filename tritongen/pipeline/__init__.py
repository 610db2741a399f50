"""Pipelines: raw text or images in, answers out, served as a Triton ensemble of three models.

    design.py       the models, their interfaces, the steps' settings (step.json) and the ensemble's wiring,
                    from the Hugging Face folder as transformers resolves it
    options.py      `PipelineOptions` (--pipeline, --top-k, --normalize, --length-buckets) and the early checks
    steps/          the code the python-backend steps run (text, image, post), rendered verbatim into model.py
    runners.py      the pipeline in-process (the steps' code + ONNX Runtime) and the reference (transformers + PyTorch)
    samples.py      the strings and images the pipeline is checked on (edge cases included)
    parity.py       the end-to-end check at build time, and the reference data of each model for `validate`
    config.py       config.pbtxt of the steps and the ensemble (templates), and their checks
    requirements.py what each step imports at serve time, pinned (the manifest's `python_requirements`)
    summary.py      what `build` prints: the models, the interface, the parity, a ready-to-run client
"""

from tritongen.pipeline.design import PipelineDesign, StepDesign, check_pipeline_interface, design_pipeline
from tritongen.pipeline.options import PipelineOptions, parse_length_buckets
from tritongen.pipeline.parity import PipelineCheck, check_pipeline
from tritongen.pipeline.requirements import python_requirements

__all__ = ["PipelineCheck", "PipelineDesign", "PipelineOptions", "StepDesign", "check_pipeline",
           "check_pipeline_interface", "design_pipeline", "parse_length_buckets", "python_requirements"]
