"""safetensors weights: a JSON header and raw tensor bytes, nothing that runs. The header is checked before the
`safetensors` library reads a byte of data, so a truncated or hostile file is one clear error."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError

SUFFIX = ".safetensors"
# The header is JSON describing each tensor; real ones are kilobytes to a few megabytes.
MAX_HEADER_BYTES = 100 << 20


def is_safetensors(path: Path) -> bool:
    """Whether `path` is a safetensors file: its name, or a header that reads as one."""
    if path.suffix == SUFFIX:
        return True
    try:
        header_tensors(path)
        return True
    except TritongenError:
        return False


def header_tensors(path: Path) -> dict[str, dict[str, Any]]:
    """The tensors a safetensors file declares ({name: {dtype, shape, data_offsets}}), checked against its size."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise TritongenError(f"'{path}' is too short to be a safetensors file ({size} bytes)",
                                 "check that the file was copied completely")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise TritongenError(f"'{path}' is not a readable safetensors file (its header claims {length} bytes; the "
                                 f"file has {size})", "check that the file was copied completely")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TritongenError(f"'{path}' is not a safetensors file (its header is not JSON)",
                             "pass a file written by safetensors.torch.save_file or save_pretrained") from exc
    if not isinstance(header, dict):
        raise TritongenError(f"'{path}' is not a safetensors file (its header is not a JSON object)",
                             "pass a file written by safetensors.torch.save_file or save_pretrained")
    data = size - 8 - length
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    for name, entry in tensors.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data):
            raise TritongenError(f"'{path}' is truncated or damaged: tensor '{name}' lies outside the file",
                                 "check that the file was copied completely")
    return tensors


def load_safetensors(path: Path) -> dict[str, Any]:
    """All tensors of a safetensors file, on the CPU."""
    header_tensors(path)
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise TritongenError("reading .safetensors files needs the safetensors package",
                             "pip install 'tritongen[hf]' (or pip install safetensors)") from exc
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise TritongenError(f"cannot read safetensors file '{path}': {type(exc).__name__}: {first}",
                             "check that the file was copied completely") from exc
