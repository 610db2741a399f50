"""What a step's model.py imports at serve time, as pinned pip requirements: recorded in each step version's manifest
(`python_requirements`), from which the deployment's images install them.

Pinned to the versions installed here, the ones the build's end-to-end parity ran with (`tritongen.pins`): a
tokenizers or Pillow of another version may tokenize or resize differently.
"""

from __future__ import annotations

from tritongen.pins import pinned

# The distributions each step module imports (tritongen/pipeline/steps/<module>.py).
IMPORTS = {"text": ("tokenizers", "numpy"), "image": ("pillow", "numpy"), "post": ("numpy",)}


def python_requirements(code: str) -> list[str]:
    """Pinned requirements of the step module `code` (text | image | post), e.g. ["tokenizers==0.23.3", "numpy==1.26.4"]."""
    return [pinned(dist) for dist in IMPORTS[code]]
