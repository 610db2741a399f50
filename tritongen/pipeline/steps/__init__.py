"""The code a pipeline's python-backend steps run, one module per step kind: `text` and `image` pre-processing,
`post` processing. Each is standalone (numpy, tokenizers or Pillow, the standard library; nothing from tritongen),
because its source is rendered as it is into the step's model.py (`tritongen.pipeline.steps.source_of`), and the
build's end-to-end parity imports the same modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

MODULES = ("text", "image", "post")


def source_of(module: str) -> str:
    """The code of `steps/<module>.py` without its docstring: what the step's model.py holds."""
    if module not in MODULES:
        raise ValueError(f"no step module '{module}'")
    source = (Path(__file__).parent / f"{module}.py").read_text()
    docstring = ast.parse(source).body[0]
    return "\n".join(source.splitlines()[docstring.end_lineno:]).strip()
