"""`.pt2` programs (torch.export.save): what loading one would run, found before `torch.export.load` sees the file.

torch 2.13's loader runs code from the file in several places, none of which a user sees:
- weights and tensor constants marked `use_pickle` are read with `torch.load(weights_only=False)`;
- sample inputs fall back to `weights_only=False` when the safe load fails;
- custom-object constants (TorchScript objects) and opaque objects are unpickled;
- weights of the legacy layout and the pre-2.7 archive layout go through the same fallback;
- AOTInductor folders load compiled shared libraries;
- symbolic-shape expressions are parsed by `sympy.sympify`, which evaluates them as Python;
- graph nodes may name any callable reachable from `torch`, `operator` or `math` (`torch.os.system`), which then
  runs with the model;
- `guards_code`, parameter names and argument names are pasted into Python source that `ExportedProgram.module()`
  compiles.
Each of these is checked here without importing or running anything from the file. A program that needs any of them
is treated like a full pickle: refused without `--trust-checkpoint`, naming what it would run.
"""

from __future__ import annotations

import ast
import builtins
import functools
import io
import json
import math
import operator
import pickletools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tritongen.errors import TritongenError
from tritongen.sources.archive import Archive

_NAME = re.compile(r"^[A-Za-z0-9_.]*$")  # parameter names, argument names, graph values: pasted into Python source
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_TEXT = re.compile(r"^[^'\"\\\n\r]*$")  # text pasted between quotes into generated Python
_NAME_KEYS = frozenset({"name", "parameter_name", "buffer_name", "tensor_constant_name", "custom_obj_name", "fqn"})
_MAX_EXPRESSION = 20_000


@dataclass(frozen=True)
class Pt2Risk:
    """One part of a `.pt2` that would run code from the file when loaded."""

    where: str  # "weight 'linear.weight' is pickled"
    imports: tuple[str, ...] = ()  # what its pickle imports, when known

    def describe(self) -> str:
        return self.where + (f" (imports {', '.join(self.imports[:4])})" if self.imports else "")


def pt2_risks(archive: Archive) -> list[Pt2Risk]:
    """Every part of the program archive that would run code from the file, found without running any."""
    from torch.export.pt2_archive import constants as layout

    risks: list[Pt2Risk] = []
    if archive.records(layout.AOTINDUCTOR_DIR):
        risks.append(Pt2Risk("it holds AOTInductor-compiled code (shared libraries torch loads and runs)"))
    for legacy in ("serialized_state_dict.pt", "serialized_constants.pt", "serialized_example_inputs.pt"):
        if legacy in archive.zip.NameToInfo:  # the pre-2.7 layout, loaded when the new one fails
            data = archive.zip.read(legacy)  # sizes were checked when the archive was opened
            risks += _pickle_risks(data, f"the old-layout member '{legacy}' needs a full unpickle")
    for model, program in programs(archive):
        risks += _payload_risks(archive, layout, model, "weights")
        risks += _payload_risks(archive, layout, model, "constants")
        sample = layout.SAMPLE_INPUTS_FILENAME_FORMAT.format(model)
        if archive.has(sample):
            risks += _sample_input_risks(archive.read(sample, archive.size(sample)))
        risks += program_risks(program)
    return risks


def programs(archive: Archive) -> list[tuple[str, Any]]:
    """(model name, serialized program) of every program in the archive (`models/<name>.json`)."""
    from torch.export.pt2_archive import constants as layout

    found = []
    for record in (n for n in archive.records(layout.MODELS_DIR) if n.endswith(".json")):
        try:
            found.append((record[len(layout.MODELS_DIR):-len(".json")], json.loads(archive.read(record))))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TritongenError(f"'{archive.path}' has a program '{record}' that is not valid JSON ({exc})",
                                 "re-save it with torch.export.save") from exc
    return found


def program_risks(program: Any) -> list[Pt2Risk]:
    """Parts of a serialized program (the archive's `models/<name>.json`) that torch would turn into running code."""
    risks: list[Pt2Risk] = []
    for text in _strings_under(program, "expr_str"):
        if not safe_sympy_expression(text):
            risks.append(Pt2Risk(f"a shape expression is Python code for sympy to evaluate: {_clip(text)}"))
    for guard in (program.get("guards_code") or []) if isinstance(program, dict) else []:
        if not isinstance(guard, str) or not safe_guard(guard):
            risks.append(Pt2Risk(f"a guard is Python code the loaded module compiles: {_clip(str(guard))}"))
    for target in sorted(set(_node_targets(program))):
        problem = _target_problem(target)
        if problem:
            risks.append(Pt2Risk(f"graph node target '{_clip(target)}' {problem}"))
    graph_module = program.get("graph_module", {}) if isinstance(program, dict) else {}
    names = [*_values_under_keys(graph_module, _NAME_KEYS), *_strings_under(graph_module, "forward_arg_names", lists=True)]
    bad = sorted({n for n in names if not isinstance(n, str) or not _NAME.match(n)}, key=str)
    if bad:
        risks.append(Pt2Risk(f"names are pasted into generated Python source: {_clip(repr(bad[0]))}"))
    graph_inputs = graph_module.get("graph", {}).get("inputs", []) if isinstance(graph_module, dict) else []
    texts = [*_strings_under(graph_module.get("signature", {}), "as_string"), *_strings_under(graph_inputs, "as_string")]
    if any(not isinstance(t, str) or not _PLAIN_TEXT.match(t) for t in texts):
        risks.append(Pt2Risk("a text input constant is pasted into generated Python source"))
    for range_ in (program.get("range_constraints") or {}).values() if isinstance(program, dict) else []:
        if not isinstance(range_, dict) or any(not isinstance(range_.get(k), int | None)
                                               for k in ("min_val", "max_val")):
            risks.append(Pt2Risk(f"a shape range is not a number: {_clip(repr(range_))}"))
            break
    return risks


def load_exported_program(archive: Archive, trust: bool, imported: tuple[str, ...] = ()) -> tuple[Any, Any, str]:
    """`torch.export.load` after the checks above and once the program's pytree types are registered: (the program,
    its module, how it was loaded, for the summary). `imported`: the user's --import modules, for messages."""
    import torch

    from tritongen.export.onnx import quiet_logs

    risks = pt2_risks(archive)
    if risks and not trust:
        imports = sorted({i for r in risks for i in r.imports})
        shown = "; ".join(r.where for r in risks[:3]) + (f"; and {len(risks) - 3} more" if len(risks) > 3 else "")
        raise TritongenError(
            f"'{archive.path}' is an exported program (.pt2) that would run code from the file when loaded: {shown}"
            + (f"; it would import {', '.join(imports[:6])}" if imports else ""),
            "if you trust this file pass --trust-checkpoint; otherwise re-export the model with torch.export from "
            "plain tensors (no tensor subclasses or custom objects)")
    from tritongen.sources.pt2_types import pytree_types, register_pytree_types

    register_pytree_types(set().union(*(pytree_types(p) for _, p in programs(archive))), imported)
    try:
        with quiet_logs():  # torch logs a traceback of its own for every failure; the error below says it in a line
            program = torch.export.load(str(archive.path))
            module = program.module()
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [""])[0]
        raise TritongenError(f"cannot load exported program '{archive.path}': {type(exc).__name__}: {text}",
                             "re-save it with torch.export.save from PyTorch 2.13") from exc
    how = "torch.export program"
    if risks:
        how += " (trusted with --trust-checkpoint: " + "; ".join(r.describe() for r in risks[:3]) + ")"
    return program, module, how


# ------------------------------------------------------------------------------------------------ pickled payloads
def _payload_risks(archive: Archive, layout: Any, model: str, kind: str) -> list[Pt2Risk]:
    folder = layout.WEIGHTS_DIR if kind == "weights" else layout.CONSTANTS_DIR
    legacy = f"{folder}{model}.pt"
    if archive.has(legacy):
        return _pickle_risks(archive.read(legacy, archive.size(legacy)), f"the legacy {kind} file needs a full unpickle")
    config_name = (layout.WEIGHTS_CONFIG_FILENAME_FORMAT if kind == "weights"
                   else layout.CONSTANTS_CONFIG_FILENAME_FORMAT).format(model)
    if not archive.has(config_name):
        return []
    try:
        entries = json.loads(archive.read(config_name)).get("config", {})
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise TritongenError(f"'{archive.path}' has a {kind} config that is not valid JSON ({exc})",
                             "re-save it with torch.export.save") from exc
    risks: list[Pt2Risk] = []
    for fqn, meta in entries.items() if isinstance(entries, dict) else []:
        path_name = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
        record = f"{folder}{path_name}"
        what = f"{kind[:-1]} '{_clip(fqn)}'"
        if path_name.startswith(layout.CUSTOM_OBJ_FILENAME_PREFIX):
            risks.append(Pt2Risk(f"{what} is a TorchScript custom object, unpickled on load",
                                 _raw_pickle_globals(_maybe_read(archive, record))))
        elif path_name.startswith(layout.OPAQUE_OBJ_FILENAME_PREFIX):
            risks.append(Pt2Risk(f"{what} is a pickled Python object", _raw_pickle_globals(_maybe_read(archive, record))))
        elif isinstance(meta, dict) and meta.get("use_pickle") and archive.has(record):
            # torch loads these with weights_only=False: safe only when the safe loader reads them as well.
            risks += _pickle_risks(archive.read(record, archive.size(record)), f"{what} is pickled and needs a full unpickle")
    return risks


def _pickle_risks(data: bytes, what: str) -> list[Pt2Risk]:
    """A torch.save payload torch would load without weights_only: a risk unless the safe loader reads it."""
    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        return []
    except Exception:
        pass
    try:
        imports = tuple(sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)))))
    except Exception:  # not a torch.save archive: list the raw pickle's imports
        imports = _raw_pickle_globals(data)
    return [Pt2Risk(what, imports)]


def _sample_input_risks(data: bytes) -> list[Pt2Risk]:
    """Sample inputs: torch tries weights_only=True first and falls back to a full unpickle when that fails."""
    import torch

    if not data:
        return []
    try:
        loaded = torch.load(io.BytesIO(data), weights_only=True)
    except Exception:
        return _pickle_risks(data, "the sample inputs need a full unpickle")
    # Keys and text of the sample inputs end up in generated Python source (guard messages).
    bad = [k for k in _pytree_strings(loaded) if not _PLAIN_TEXT.match(k)]
    return [Pt2Risk(f"the sample inputs hold text pasted into generated Python source: {_clip(bad[0])}")] if bad else []


def _raw_pickle_globals(data: bytes) -> tuple[str, ...]:
    """The `module.name` globals a raw pickle imports, read with pickletools (nothing is imported or run)."""
    found: set[str] = set()
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name in ("GLOBAL", "INST"):
                found.add(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.add(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # a truncated or non-pickle payload: report what was found so far
        pass
    return tuple(sorted(found))


def _maybe_read(archive: Archive, record: str) -> bytes:
    return archive.read(record) if archive.has(record) else b""


def _pytree_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                yield k
            yield from _pytree_strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _pytree_strings(v)


# ------------------------------------------------------------------------------------- expressions, guards, targets
def safe_sympy_expression(text: str) -> bool:
    """Whether `sympy.sympify(text)` can only build a symbolic expression (it evaluates the text as Python).

    torch writes these with `sympy.srepr`: `Mul(Integer(2), Symbol('s27', positive=True, integer=True))`.
    """
    tree = _parse(text)
    return tree is not None and all(_sympy_node_ok(node) for node in ast.walk(tree))


def safe_guard(text: str) -> bool:
    """Whether a guard (`L['x'].size()[1] == L['y'].size()[1]`) is only a comparison of input sizes and numbers."""
    tree = _parse(text)
    return tree is not None and all(_guard_node_ok(node) for node in ast.walk(tree))


_ARITHMETIC = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Load, ast.operator, ast.unaryop,
               ast.cmpop, ast.boolop, ast.Tuple, ast.keyword)


@functools.cache
def _sympy_names() -> tuple[frozenset[str], frozenset[str]]:
    """(classes that build sympy expressions, sympy constants): what torch's shape expressions may name."""
    import sympy
    import torch.utils._sympy.functions as torch_functions

    classes = {n for space in (vars(sympy), vars(torch_functions)) for n, v in space.items()
               if isinstance(v, type) and issubclass(v, sympy.Basic) and not n.startswith("_")}
    constants = {n for n in dir(sympy) if isinstance(getattr(sympy, n, None), sympy.Basic)}
    return frozenset(classes), frozenset(constants)


def _sympy_node_ok(node: ast.AST) -> bool:
    classes, constants = _sympy_names()
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id in classes
    if isinstance(node, ast.Name):
        if node.id in classes or node.id in constants:
            return True
        # Any other name becomes a Symbol, unless it is a builtin (eval would find `exec` or `open`).
        return bool(_IDENT.match(node.id)) and not hasattr(builtins, node.id) and not node.id.startswith("_")
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float | bool | type(None)) or (
            isinstance(node.value, str) and bool(re.match(r"^[A-Za-z0-9_.+\-]*$", node.value)))
    return isinstance(node, _ARITHMETIC)


_GUARD_CALLS = frozenset({"max", "min", "abs", "int", "float", "round", "IsNonOverlappingAndDenseIndicator",
                          "cast_symbool_to_symint_guardless"})
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_GUARD_MATH = frozenset({"isnan", "inf", "floor", "ceil", "trunc", "sqrt", "log2"})


def _guard_node_ok(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in {"L", "math", "inf", *_GUARD_CALLS}
    if isinstance(node, ast.Attribute):
        base = node.value
        if isinstance(base, ast.Name) and base.id == "math":
            return node.attr in _GUARD_MATH
        return node.attr in _GUARD_METHODS
    if isinstance(node, ast.Call):
        func = node.func
        return not node.keywords and (
            (isinstance(func, ast.Name) and func.id in _GUARD_CALLS) or isinstance(func, ast.Attribute))
    if isinstance(node, ast.Subscript):
        return True  # its value and slice are checked as nodes of their own
    if isinstance(node, ast.Constant):
        # Text here is pasted into a quoted error message of the generated code: identifiers only.
        return isinstance(node.value, int | float | bool) or (isinstance(node.value, str) and bool(_NAME.match(node.value)))
    return isinstance(node, _ARITHMETIC)


def _parse(text: str) -> ast.Expression | None:
    if not isinstance(text, str) or len(text) > _MAX_EXPRESSION:
        return None
    try:
        return ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return None


def _target_problem(target: str) -> str | None:
    """Why a node target is not a PyTorch operator (None when it is), resolved as torch's deserializer does."""
    import torch
    from torch._export.serde.serialize import _SYM_OPS

    if target.startswith("#"):  # an extension registered in this process, looked up by name
        return None
    if target.startswith("_operator"):
        base, parts = operator, target.split(".")[1:]
    elif target.startswith("torch"):
        base, parts = torch, target.split(".")[1:]
    elif target.startswith("math"):
        base, parts = math, target.split(".")[1:]
    else:
        return None  # stays a string: torch refuses to load the node
    resolved: Any = base
    for part in parts:
        # A dunder reaches into Python internals (`torch.__builtins__`), except an operator of an operator namespace
        # named after one (`torch.ops.aten.__and__`, `__lshift__`): looked up there, it is only ever an operator.
        dunder_op = isinstance(resolved, torch._ops._OpNamespace) and isinstance(
            getattr(resolved, part, None), torch._ops.OpOverloadPacket)
        if part.startswith("__") and not dunder_op:
            return "reaches into Python internals"
        if not hasattr(resolved, part):
            return None  # stays a string: torch refuses to load the node
        resolved = getattr(resolved, part)
    if isinstance(resolved, torch._ops.OpOverload | torch._ops.OpOverloadPacket | torch._ops.HigherOrderOperator):
        return None
    if resolved in _SYM_OPS or resolved is operator.getitem:
        return None
    if not callable(resolved):
        return None  # torch refuses a target that cannot be called
    return "is a Python function, not a PyTorch operator, and would run with the model"


# --------------------------------------------------------------------------------------------------- JSON walking
def _walk(value: Any) -> Iterator[tuple[str | None, Any]]:
    """(key, value) pairs of a JSON document, skipping node metadata (stack traces: never evaluated)."""
    stack: list[tuple[str | None, Any]] = [(None, value)]
    while stack:
        key, item = stack.pop()
        yield key, item
        if isinstance(item, dict):
            stack.extend((k, v) for k, v in item.items() if k != "metadata")
        elif isinstance(item, list):
            stack.extend((key, v) for v in item)


def _strings_under(value: Any, wanted: str, lists: bool = False) -> Iterator[Any]:
    for key, item in _walk(value):
        if key == wanted and (isinstance(item, str) or (not lists and not isinstance(item, dict | list))):
            yield item


def _values_under_keys(value: Any, keys: frozenset[str]) -> Iterator[Any]:
    for key, item in _walk(value):
        if key in keys and not isinstance(item, dict | list):
            yield item


def _node_targets(program: Any) -> Iterator[str]:
    for _, item in _walk(program):
        if isinstance(item, dict) and "target" in item and "inputs" in item and "outputs" in item:
            target = item["target"]
            yield target if isinstance(target, str) else repr(target)


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
