"""The pytree types a `.pt2` program's inputs and outputs are made of, and importing what registers them.

torch rebuilds a program's call structure (a Hugging Face `ModelOutput`, the user's own dataclass) only for types
registered with `torch.utils._pytree` in this process. transformers registers its output classes when their module
is imported; the user's own types need `--import MODULE`. Nothing the file names is imported except transformers'
own modules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tritongen.errors import TritongenError


def pytree_types(program: Any) -> set[str]:
    """The types a program's inputs and outputs are made of (`transformers.modeling_outputs.BaseModelOutput`), as its
    call specs name them; torch rebuilds them only when they are registered in this process."""
    names: set[str] = set()
    for text in _call_specs(program):
        try:
            stack = [json.loads(text)[1]]
        except (TypeError, ValueError, IndexError, KeyError):
            continue
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("type"), str):
                    names.add(node["type"])
                stack.extend(node.get("children_spec") or [])
    return names


def register_pytree_types(types: set[str], imported: tuple[str, ...] = ()) -> None:
    """Import what registers each type a program needs: transformers' modules for its output types (a library, never
    a module the file chose), else the user's `--import` modules (imported already). An error names what is missing."""
    import importlib

    from torch.utils._pytree import SERIALIZED_TYPE_TO_PYTHON_TYPE

    def missing() -> list[str]:
        return sorted(t for t in types if t not in SERIALIZED_TYPE_TO_PYTHON_TYPE)

    for name in missing():
        module = name.rpartition(".")[0]
        if module == "transformers" or module.startswith("transformers."):
            try:
                from tritongen.sources.hf import quiet_transformers

                with quiet_transformers():
                    importlib.import_module(module)
            except (ImportError, TritongenError):
                pass
    unknown = missing()
    if unknown:
        library = unknown[0].startswith("transformers.")
        raise TritongenError(
            f"the exported program's inputs or outputs are a '{unknown[0]}', a type torch rebuilds only once the code "
            "that registers it is imported" + (f" (--import {', '.join(imported)} did not)" if imported else ""),
            "install transformers: pip install 'tritongen[hf]'" if library else
            f"pass --import MODULE naming the module that registers it with torch.utils._pytree (e.g. --import "
            f"{unknown[0].rpartition('.')[0] or 'mypkg'}), and --pythonpath DIR if it is not installed")


def _call_specs(value: Any) -> Iterator[str]:
    """The `in_spec` and `out_spec` texts of a serialized program (its module call graph's signatures)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if key in ("in_spec", "out_spec") and isinstance(child, str):
                    yield child
                elif key != "metadata":
                    stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
