import copy
import sys
import zipfile

import pytest
import torch

from tests import models
from tests.conftest import save_checkpoint
from tritongen.checkpoint import CheckpointKind, import_model_class, kind_of_checkpoint, load_checkpoint
from tritongen.errors import TritongenError

CNN = "tests.models:SmallCNN"


@pytest.mark.parametrize("kind, expected", [
    ("state_dict", CheckpointKind.TORCH_SAVE), ("full", CheckpointKind.TORCH_SAVE),
    ("torchscript", CheckpointKind.TORCHSCRIPT), ("pt2", CheckpointKind.EXPORTED_PROGRAM)])
def test_kind_is_told_apart_by_zip_members(tmp_path, kind, expected):
    path = save_checkpoint(models.SmallCNN(), tmp_path / "m.pt", kind, example=(torch.randn(2, 3, 32, 32),))
    assert kind_of_checkpoint(path) is expected


@pytest.mark.parametrize("kind", ["state_dict", "wrapped", "dataparallel"])
def test_state_dict_variants_load_into_the_class(tmp_path, kind):
    original = models.SmallCNN().eval()
    path = save_checkpoint(original, tmp_path / "m.pt", kind)
    loaded = load_checkpoint(path, model_class=CNN)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded.module(x), original(x))


def test_full_pickle_is_refused_without_trust_and_names_what_it_imports(tmp_path):
    path = save_checkpoint(models.SmallCNN(), tmp_path / "m.pt", "full")
    with pytest.raises(TritongenError) as err:
        load_checkpoint(path)
    assert "tests.models.SmallCNN" in err.value.message and "--trust-checkpoint" in err.value.hint
    assert load_checkpoint(path, trust=True).module.__class__.__name__ == "SmallCNN"


def test_full_pickle_never_runs_code_without_trust(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(TritongenError, match="full pickle"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("setup, fragment", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("hello"), "not a PyTorch checkpoint"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("a.txt", "x"), "not a PyTorch checkpoint"),
])
def test_bad_files_get_clear_errors(tmp_path, setup, fragment):
    path = tmp_path / "m.pt"
    setup(path)
    with pytest.raises(TritongenError, match=fragment):
        load_checkpoint(path, model_class=CNN)


def test_state_dict_needs_model_class(tmp_path):
    path = save_checkpoint(models.SmallCNN(), tmp_path / "m.pt")
    with pytest.raises(TritongenError) as err:
        load_checkpoint(path)
    assert "state_dict" in err.value.message and "--model-class" in err.value.hint


@pytest.mark.parametrize("model_class, fragment", [
    ("nosuchpkg.models:Net", "cannot import module 'nosuchpkg.models'"),
    ("tests.models:Nope", "has no class 'Nope'"),
    ("tests.models", "not MODULE:CLASS"),
])
def test_model_class_errors(tmp_path, model_class, fragment):
    path = save_checkpoint(models.SmallCNN(), tmp_path / "m.pt")
    with pytest.raises(TritongenError, match=fragment):
        load_checkpoint(path, model_class=model_class)


def test_mismatched_state_dict_shows_first_mismatches(tmp_path):
    path = save_checkpoint(models.SmallCNN(width=4), tmp_path / "m.pt")
    with pytest.raises(TritongenError) as err:
        load_checkpoint(path, model_class=CNN)  # default width 8
    assert "features.0.weight (4, 3, 3, 3) vs (8, 3, 3, 3)" in err.value.message
    ok = load_checkpoint(path, model_class=CNN, model_kwargs='{"width": 4}')
    assert ok.module.head.in_features == 8


def test_pythonpath_imports_user_code(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "usernet.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.l = torch.nn.Linear(2, 2)\n    def forward(self, x):\n        return self.l(x)\n")
    torch.save({"l.weight": torch.eye(2), "l.bias": torch.zeros(2)}, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt", model_class="usernet:Net", pythonpath=(code,))
    assert torch.equal(loaded.module(torch.ones(1, 2)), torch.ones(1, 2))


def test_user_code_directories_leave_sys_path_as_it_was_and_the_model_keeps_working(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "usernet_paths.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.l = torch.nn.Linear(2, 2)\n    def forward(self, x):\n        return self.l(x) * 2\n")
    torch.save({"l.weight": torch.eye(2), "l.bias": torch.zeros(2)}, tmp_path / "m.pt")
    before = list(sys.path)
    loaded = load_checkpoint(tmp_path / "m.pt", model_class="usernet_paths:Net", pythonpath=(code,))
    assert sys.path == before and str(code) not in sys.path
    # The user's module stays imported: the model runs, and copies of it (as exporters make) still find its class.
    assert "usernet_paths" in sys.modules
    assert torch.equal(copy.deepcopy(loaded.module)(torch.ones(1, 2)), torch.full((1, 2), 2.0))


def test_sys_path_is_restored_when_importing_fails(tmp_path):
    before = list(sys.path)
    with pytest.raises(TritongenError, match="cannot import module"):
        import_model_class("missing_usernet:Net", pythonpath=(tmp_path,))
    assert sys.path == before
