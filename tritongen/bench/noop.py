"""The no-op model: a python-backend twin of the benchmarked model (same tensors and batching) that answers zeros.

Its throughput is what the client, the network path and the python backend can do with the model's inputs, so it
shows whether the load generator or the serving path, rather than the model, sets the limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOOP_PREFIX = "tritongen_noop_"


def write_noop_model(repository: Path, config: Any) -> str:
    """Add to a (staged) repository a python-backend model with `config`'s tensors and batching that does nothing."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from tritongen.render import render

    name = NOOP_PREFIX + config.name
    noop = model_config_pb2.ModelConfig()
    noop.CopyFrom(config)
    noop.name = name
    noop.platform = ""
    noop.backend = "python"
    noop.ClearField("default_model_filename")
    noop.ClearField("model_warmup")
    noop.ClearField("parameters")
    noop.ClearField("response_cache")  # the serving path itself, not cache lookups
    noop.ClearField("ensemble_scheduling")  # a pipeline's twin is one python model taking its raw inputs
    (repository / name / "1").mkdir(parents=True, exist_ok=True)
    (repository / name / "1" / "model.py").write_text(render("noop_model.py.j2", {"source": config.name}))
    # Protobuf's own text form: a copy of a config the server already accepted, not a new rendering.
    (repository / name / "config.pbtxt").write_text(text_format.MessageToString(noop))
    return name
