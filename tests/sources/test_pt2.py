"""Hostile `.pt2` files: every way torch 2.13's loader runs code from the file is refused without --trust-checkpoint.

Each file is a real torch.export.save archive with one part rewritten so that loading it would run
`os.system("touch MARKER")`. The first five kinds really run in torch 2.13 (the test proves it with
--trust-checkpoint). The others are shut off in advance: for the versions tried here, torch's verifier stopped the
Python-function node and code generation the injected argument name before the payload ran; the old layout,
custom objects and AOTInductor folders were not tried against torch.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tritongen.checkpoint import load_checkpoint
from tritongen.errors import TritongenError
from tritongen.sources.pt2 import program_risks, safe_guard, safe_sympy_expression

Edit = Callable[[dict[str, bytes], str, Path], None]


class Payload:
    """Unpickling this creates the marker file: the stand-in for an attacker's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "linear.pt2"
    module = torch.nn.Linear(4, 2).eval()
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(module, (torch.randn(2, 4),), dynamic_shapes=({0: batch},)), str(path))
    return path


def rewritten(source: Path, dest: Path, edit: Edit, marker: Path) -> Path:
    with zipfile.ZipFile(source) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    edit(members, next(iter(members)).split("/")[0], marker)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return dest


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def edit_json(members: dict[str, bytes], name: str, change: Callable[[dict], None]) -> None:
    document = json.loads(members[name])
    change(document)
    members[name] = json.dumps(document).encode()


def pickled_weight(members: dict[str, bytes], root: str, marker: Path) -> None:
    def change(config: dict) -> None:
        entry = config["config"]["weight"]
        entry["use_pickle"] = True
        members[f"{root}/data/weights/{entry['path_name']}"] = saved(Payload(marker))

    edit_json(members, f"{root}/data/weights/model_weights_config.json", change)


def pickled_sample_inputs(members: dict[str, bytes], root: str, marker: Path) -> None:
    members[f"{root}/data/sample_inputs/model.pt"] = saved(((Payload(marker),), {}))


def opaque_constant(members: dict[str, bytes], root: str, marker: Path) -> None:
    edit_json(members, f"{root}/data/constants/model_constants_config.json", lambda c: c["config"].update(
        evil={"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}))
    members[f"{root}/data/constants/opaque_obj_0"] = pickle.dumps(Payload(marker))


def sympy_expression(members: dict[str, bytes], root: str, marker: Path) -> None:
    name = f"{root}/models/model.json"
    text = members[name].decode()
    symbol = re.search(r"Symbol\('s\d+', positive=True, integer=True\)", text).group(0)
    evil = f"({symbol} if __import__('os').system('touch {marker}') == 0 else {symbol})"
    members[name] = text.replace(json.dumps(symbol), json.dumps(evil), 1).encode()


def guard_code(members: dict[str, bytes], root: str, marker: Path) -> None:
    edit_json(members, f"{root}/models/model.json",
              lambda p: p.update(guards_code=[f"__import__('os').system('touch {marker}') == 0"]))


def argument_name(members: dict[str, bytes], root: str, marker: Path) -> None:
    def change(program: dict) -> None:
        for entry in program["graph_module"]["module_call_graph"]:
            if entry["signature"]:
                entry["signature"]["forward_arg_names"] = [f"x=__import__('os').system('touch {marker}')"]

    edit_json(members, f"{root}/models/model.json", change)


def python_function_node(members: dict[str, bytes], root: str, marker: Path) -> None:
    node = {"target": "torch.os.system", "inputs": [{"name": "command", "arg": {"as_string": f"touch {marker}"},
                                                     "kind": 1}], "outputs": [], "metadata": {}, "name": "evil"}
    edit_json(members, f"{root}/models/model.json", lambda p: p["graph_module"]["graph"]["nodes"].insert(0, node))


def compiled_code(members: dict[str, bytes], root: str, marker: Path) -> None:
    members[f"{root}/data/aotinductor/model/model.so"] = b"\x7fELF not really"


def old_layout_member(members: dict[str, bytes], root: str, marker: Path) -> None:
    # torch.export.load falls back to the pre-2.7 layout when the new one fails to load.
    members["serialized_example_inputs.pt"] = saved(((Payload(marker),), {}))


def custom_object_constant(members: dict[str, bytes], root: str, marker: Path) -> None:
    edit_json(members, f"{root}/data/constants/model_constants_config.json", lambda c: c["config"].update(
        obj={"path_name": "custom_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}))
    members[f"{root}/data/constants/custom_obj_0"] = pickle.dumps(Payload(marker))


RUNS_IN_TORCH = [pickled_weight, pickled_sample_inputs, opaque_constant, sympy_expression, guard_code]
SHUT_OFF = [argument_name, python_function_node, compiled_code, old_layout_member, custom_object_constant]


@pytest.mark.parametrize("edit, fragment", [
    (pickled_weight, "weight 'weight' is pickled"), (pickled_sample_inputs, "sample inputs need a full unpickle"),
    (opaque_constant, "constant 'evil' is a pickled Python object"), (sympy_expression, "Python code for sympy"),
    (guard_code, "a guard is Python code"), (argument_name, "names are pasted into generated Python"),
    (python_function_node, "'torch.os.system' is a Python function"), (compiled_code, "AOTInductor-compiled code"),
    (old_layout_member, "old-layout member 'serialized_example_inputs.pt'"),
    (custom_object_constant, "constant 'obj' is a TorchScript custom object"),
], ids=lambda v: getattr(v, "__name__", ""))
def test_hostile_pt2_is_refused_and_runs_nothing(tmp_path, program, edit, fragment):
    marker = tmp_path / "pwned"
    path = rewritten(program, tmp_path / "hostile.pt2", edit, marker)
    with pytest.raises(TritongenError) as err:
        load_checkpoint(path)
    assert fragment in err.value.message and "--trust-checkpoint" in err.value.hint
    if edit in (pickled_weight, pickled_sample_inputs, opaque_constant, old_layout_member, custom_object_constant):
        # listed like a full pickle's imports
        assert "it would import posix.system" in err.value.message
    assert not marker.exists()


@pytest.mark.parametrize("edit", RUNS_IN_TORCH, ids=lambda e: e.__name__)
def test_with_trust_the_payload_really_runs(tmp_path, program, edit):
    """What the refusal prevents: trusted, torch 2.13 runs each of these (at load, or when the model runs)."""
    marker = tmp_path / "pwned"
    path = rewritten(program, tmp_path / "hostile.pt2", edit, marker)
    try:
        loaded = load_checkpoint(path, trust=True)
        assert "trusted with --trust-checkpoint" in loaded.how
        loaded.module(torch.randn(3, 4))
    except TritongenError as exc:  # the payload replaced a tensor: loading fails after it ran, in one line
        assert "cannot load exported program" in exc.message
    assert marker.exists()


def test_a_normal_program_loads_without_trust_and_says_nothing_about_it(program):
    loaded = load_checkpoint(program)
    assert loaded.how == "torch.export program"
    assert loaded.module(torch.ones(3, 4)).shape == (3, 2)


def test_build_refuses_a_hostile_program_in_one_line(tmp_path, program, cli):
    marker = tmp_path / "pwned"
    path = rewritten(program, tmp_path / "hostile.pt2", pickled_sample_inputs, marker)
    result = cli("build", path, "--repository", tmp_path / "repo", "--no-deploy")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")][0].count("--trust-checkpoint")
    assert not marker.exists() and not (tmp_path / "repo").exists()


@pytest.mark.parametrize("text, safe", [
    ("Symbol('s27', positive=True, integer=True)", True),
    ("Mul(Integer(16), Symbol('s27', positive=True, integer=True))", True),
    ("Min(Integer(16), Mul(Integer(16), Symbol('s31', positive=True, integer=True)))", True),
    ("GreaterThan(Symbol('u0', integer=True), Integer(0))", True),
    ("Float('0.5', precision=53)", True), ("-oo", True), ("true", True),
    ("__import__('os').system('x')", False), ("exec('1')", False), ("S('1')", False),
    ("Symbol('a').__class__", False), ("sympify('x')", False), ("[x for x in ()]", False), ("lambda: 0", False),
])
def test_shape_expressions_are_read_as_sympy_builds_and_nothing_else(text, safe):
    assert safe_sympy_expression(text) is safe


@pytest.mark.parametrize("text, safe", [
    ("L['tokens'].size()[1] == L['mask'].size()[1]", True),
    ("L['x'].size()[1] == ((-1) + L['y'].size()[1])", True),
    ("L['x'].size()[0] <= 64 and not math.isnan(1.0)", True),
    ("L['x'].size()[0] >= 2", True),
    ("torch.load('f')", False), ("L['a\" + open(1) + \"'].size()[0] == 1", False), ("__import__('os')", False),
])
def test_guards_are_size_comparisons_and_nothing_else(text, safe):
    assert safe_guard(text) is safe


@pytest.mark.parametrize("target, refused", [
    ("torch.ops.aten.__and__.Tensor", False), ("torch.ops.aten.__lshift__.Scalar", False),
    ("torch.ops.aten.__class__", True), ("torch.__builtins__", True), ("torch.ops.__dict__", True),
])
def test_operators_named_like_dunders_are_operators_and_nothing_else(target, refused):
    node = {"target": target, "inputs": [], "outputs": [], "metadata": {}, "name": "n"}
    risks = program_risks({"graph_module": {"graph": {"nodes": [node]}}})
    assert bool(risks) is refused


def test_an_unregistered_pytree_type_is_named_with_the_fix(tmp_path, program):
    def change(members: dict[str, bytes], root: str, marker: Path) -> None:
        name = f"{root}/models/model.json"
        members[name] = members[name].replace(b'builtins.tuple', b'mypkg.outputs.Scores', 1)

    path = rewritten(program, tmp_path / "typed.pt2", change, tmp_path / "unused")
    with pytest.raises(TritongenError) as err:
        load_checkpoint(path)
    assert "'mypkg.outputs.Scores', a type torch rebuilds only once the code that registers it is imported" \
        in err.value.message
    assert "--import mypkg.outputs" in err.value.hint


@pytest.mark.slow
def test_import_registers_the_users_own_output_type(tmp_path):
    """In a fresh process (where nothing registered the type), the program loads with --import and only then."""
    from tests.pytree_outputs import Scorer

    path = tmp_path / "scores.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(Scorer().eval(), (torch.randn(2, 4),), dynamic_shapes=({0: batch},)),
                      str(path))
    code = ("import sys; from tritongen.checkpoint import load_checkpoint; from tritongen.errors import TritongenError\n"
            "try:\n    c = load_checkpoint(sys.argv[1], imports=tuple(sys.argv[2:])); print('loaded', c.how)\n"
            "except TritongenError as e:\n    print('refused', e.message)\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}

    def load(*imports: str) -> str:
        return subprocess.run([sys.executable, "-c", code, str(path), *imports], capture_output=True, text=True,
                              env=env, cwd=root, timeout=300).stdout

    refused = load()
    assert refused.startswith("refused") and "tests.pytree_outputs.Scores" in refused
    assert load("tests.pytree_outputs").startswith("loaded torch.export program")
