"""`serve()`: one way to serve a repository, with the same flags for every launcher."""

from __future__ import annotations

from pathlib import Path

import pytest
import tritonclient.http as httpclient

from tests.servers import add_tensorrt_model, built_repository, copy_repository
from tritongen.errors import TritongenError
from tritongen.server import NothingToServe, ServerFlags, serve
from tritongen.server.stage import PYTHON_RUNNER


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repository(built_repository(tmp_path_factory, "two"), tmp_path_factory.mktemp("serve") / "repo",
                           ("two", "two_python"))


def test_server_flags_say_what_tritonserver_gets_and_refuse_contradictions() -> None:
    assert ServerFlags().args() == ["--model-control-mode=none"]
    assert ServerFlags("explicit", load=("a",), extra_args=("--log-verbose=1",)).args() == [
        "--model-control-mode=explicit", "--load-model=a", "--log-verbose=1"]
    with pytest.raises(TritongenError, match="unknown model control mode 'sometimes'"):
        ServerFlags("sometimes")
    with pytest.raises(TritongenError, match="need explicit model control"):
        ServerFlags(load=("a",))
    with pytest.raises(TritongenError, match="'--model-control-mode=poll' is set by tritongen"):
        ServerFlags(extra_args=("--model-control-mode=poll",))


def test_flags_are_refused_for_a_server_tritongen_did_not_start() -> None:
    with pytest.raises(TritongenError) as info, serve(None, "localhost:1", models=["m"],
                                                      flags=ServerFlags("explicit", load=("m",))):
        pass
    assert "can only be given to a server tritongen starts, not to the one at localhost:1" in info.value.message
    assert "start that server yourself with those flags" in info.value.hint


def test_a_model_whose_files_changed_is_refused_before_any_server_starts(repository: Path, tmp_path: Path) -> None:
    tampered = copy_repository(repository, tmp_path / "repo")
    (tampered / "two_python" / "1" / "model.py").write_text("# not what the build wrote\n")
    with pytest.raises(TritongenError) as info, serve(tampered):
        pass
    assert info.value.message.startswith("model 'two_python' is not served: its files are not the ones")
    assert "model.py changed after the build" in info.value.message and "rebuild" in info.value.hint


def test_nothing_to_serve_says_why_for_each_model(tmp_path: Path) -> None:
    add_tensorrt_model(tmp_path)
    with pytest.raises(NothingToServe) as info, serve(tmp_path):
        pass
    (plan,) = info.value.models
    assert plan.served_by is None and "needs the tensorrt backend" in plan.skipped_reason


@pytest.mark.server
def test_explicit_model_control_reaches_the_embedded_server(repository: Path) -> None:
    with serve(repository, flags=ServerFlags("explicit", load=("two",))) as served:
        assert served.model("two").served_by == PYTHON_RUNNER
        assert served.model("two_python").served_by == "python backend"
        assert served.backends == {"python"} and served.repository_problems == ()
        client = httpclient.InferenceServerClient(served.handle.http_url)
        states = {m["name"]: m.get("state") for m in client.get_model_repository_index()}
        client.close()
        assert states == {"two": "READY", "two_python": None}  # known, not loaded: explicit control, as asked
