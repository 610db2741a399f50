"""The embedded tritonserver, for real: it starts, serves, explains failures, and never outlives its owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.servers import built_repository, copy_repository, group_members, tritonserver_pids, wait_until_gone
from tritongen.errors import TritongenError
from tritongen.runners.triton import TritonRunner
from tritongen.server import launch
from tritongen.server.local import find_tritonserver, relevant_log_lines, sweep_leftovers

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def python_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the python-format model: the embedded server loads it as written."""
    built = built_repository(tmp_path_factory, "two")
    return copy_repository(built, tmp_path_factory.mktemp("local") / "repository", ("two_python",))


def test_finds_the_wheel_binary_with_a_stub_for_this_python() -> None:
    install = find_tritonserver()
    assert install.binary.name == "tritonserver" and install.binary.is_file()
    assert install.python_stub is not None and f"{sys.version_info[0]}.{sys.version_info[1]}" in str(install.python_stub)
    assert install.backend_names == {"python"}


def test_a_bad_tritonserver_path_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(TritongenError, match="--tritonserver .* is not an executable file") as info:
        find_tritonserver(tmp_path / "nope")
    assert "nvidia-pytriton" in info.value.hint


def test_serves_then_stops_leaving_no_process_and_no_shared_memory(python_repository: Path) -> None:
    with launch(python_repository) as handle:
        (pid,) = tritonserver_pids()
        with urllib.request.urlopen(f"http://{handle.http_url}/v2/health/ready", timeout=5) as response:
            assert response.status == 200
        feeds = {"x": np.ones((2, 4), np.float32), "ids": np.zeros((2, 2), np.int64)}
        with TritonRunner(handle.grpc_url, "two_python", protocol="grpc") as runner:
            outputs = runner.infer(feeds)
        assert outputs["output_0"].shape == (2, 4) and outputs["output_1"].shape == (2, 2)
        assert "successfully loaded 'two_python'" in handle.log()
        assert handle.kind == "embedded" and "2.51" in handle.description
        stubs = group_members(pid)
        assert len(stubs) >= 2  # the server and at least one python backend stub
        shm = [p.name for p in Path("/dev/shm").glob(f"tritongen_{os.getpid()}_*")]
        assert shm, "the python backend should be using our named shared memory"
    assert wait_until_gone(stubs, 1) == [] and group_members(pid) == []
    assert not list(Path("/dev/shm").glob(f"tritongen_{os.getpid()}_*"))
    assert "successfully unloaded" in handle.log()  # still readable after the stop, for error messages


def test_a_model_that_fails_to_load_shows_the_servers_error(python_repository: Path, tmp_path: Path) -> None:
    broken = copy_repository(python_repository, tmp_path / "repository")
    (broken / "two_python" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(TritongenError) as info, launch(broken, timeout_s=60):
        pass
    error = info.value
    assert "failed to load 'two_python' version 1" in error.message
    assert "Protobuf parsing failed" in error.message  # ONNX Runtime's own words, from the server log
    assert "full log:" in error.hint and error.details and "failed to load" in error.details
    assert tritonserver_pids() == []


def test_ctrl_c_inside_the_block_stops_the_server(python_repository: Path) -> None:
    with pytest.raises(KeyboardInterrupt), launch(python_repository):
        (pid,) = tritonserver_pids()
        raise KeyboardInterrupt
    assert wait_until_gone([pid], 1) == [] and group_members(pid) == []


def test_the_server_dies_with_a_killed_owner(python_repository: Path, tmp_path: Path) -> None:
    """SIGKILL gives no chance to clean up: the kernel's parent-death signal takes the server down anyway."""
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        from tritongen.server import launch
        with launch({str(python_repository)!r}):
            pid = next(int(p) for p in os.listdir("/proc") if p.isdigit()
                       and open(f"/proc/{{p}}/stat").read().split(") ")[1].split()[1] == str(os.getpid()))
            print(pid, flush=True)
            time.sleep(600)
    """))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(owner.stdout.readline())
        assert Path(f"/proc/{server_pid}").exists()
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        assert wait_until_gone([server_pid], 10) == [], "tritonserver outlived the process that started it"
        assert wait_until_gone(group_members(server_pid), 15) == [], "python backend stubs outlived their server"
        # What the killed owner could not remove, its watchdog does.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (leftovers := owned_leftovers(owner.pid)):
            time.sleep(0.1)
        assert leftovers == []
    finally:
        owner.kill()
        owner.wait()


def owned_leftovers(owner: int) -> list[Path]:
    return [*Path(tempfile.gettempdir()).glob(f"tritongen-server-{owner}-*"),
            *Path(tempfile.gettempdir()).glob(f"tritongen-stage-{owner}-*"), *Path("/dev/shm").glob(f"tritongen_{owner}_*")]


def test_the_sweep_removes_what_a_dead_owner_left_and_nothing_of_a_live_one(tmp_path: Path) -> None:
    """Where even the watchdog could not clean up (it was killed too), the next launch does."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folders = [Path(tempfile.mkdtemp(prefix=f"{prefix}{dead.pid}-")) for prefix in ("tritongen-server-", "tritongen-stage-")]
    region = Path(f"/dev/shm/tritongen_{dead.pid}_1_model_0")
    region.write_bytes(b"x")
    live = Path(tempfile.mkdtemp(prefix=f"tritongen-stage-{os.getpid()}-"))
    # A python backend stub whose tritongen is gone (what a SIGKILL used to leave): its command line names the
    # owner's shared memory, as the real stub's does.
    stub = tmp_path / "triton_python_backend_stub"
    stub.symlink_to(sys.executable)
    orphan = subprocess.Popen([str(stub), "-c", "import time; time.sleep(120)", f"/tritongen_{dead.pid}_1_model_0"])
    # Popen returns once the child's exec has closed its descriptors, which can be before the kernel shows the new
    # command line: a real stub has long been running when a sweep looks, so wait for the command line here too.
    deadline = time.monotonic() + 10
    while b"tritongen_" not in Path(f"/proc/{orphan.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        removed = sweep_leftovers()
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert set(folders) | {region} <= set(removed) and not any(p.exists() for p in [*folders, region])
        assert live.exists() and live not in removed
    finally:
        orphan.kill()
        live.rmdir()


def test_relevant_log_lines_keep_errors_and_drop_cpu_only_noise() -> None:
    traceback = "\\n\\nAt:\\n  /r/m/1/model.py(4): initialize\\n"  # as Triton escapes it into one line
    log = textwrap.dedent(f"""\
        W1123 18:00:56.843325 11139 pinned_memory_manager.cc:273] "Unable to allocate pinned system memory"
        E1123 18:00:56.843507 11139 server.cc:241] "CudaDriverHelper has not been initialized."
        I1123 18:00:56.844877 11139 model_lifecycle.cc:472] "loading: m:1"
        E1123 18:00:57.257355 11139 model_lifecycle.cc:642] "failed to load 'm' version 1: Internal: ValueError: bad{traceback}"
        error: creating server: Internal - failed to load all models
        """)
    assert relevant_log_lines(log) == ["failed to load 'm' version 1: Internal: ValueError: bad",
                                       "error: creating server: Internal - failed to load all models"]


def test_a_declared_huge_shape_is_refused_and_the_fatal_line_of_a_crash_is_kept(python_repository: Path) -> None:
    """Over gRPC and HTTP with binary data, Triton 2.51 checks a declared shape against the model before allocating;
    over HTTP with JSON data it allocates first and aborts with std::bad_alloc (fixed in Triton 2.59): the error
    then says so instead of only "SIGABRT"."""
    import json

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from tritongen.server import server_alive

    huge = [1, 100_000_000_000]
    with launch(python_repository) as handle:
        for module, url in ((grpcclient, handle.grpc_url), (httpclient, handle.http_url)):
            client = module.InferenceServerClient(url)
            inputs = []
            for name, array in (("x", np.ones((1, 4), np.float32)), ("ids", np.zeros((1, 2), np.int64))):
                tensor = module.InferInput(name, list(array.shape), "FP32" if name == "x" else "INT64")
                tensor.set_data_from_numpy(array)  # binary data, then a shape that claims far more of it
                tensor.set_shape(huge)
                inputs.append(tensor)
            with pytest.raises(Exception, match="unexpected shape"):
                client.infer("two_python", inputs)
            client.close()
        assert server_alive(handle)
        body = json.dumps({"inputs": [{"name": "x", "shape": huge, "datatype": "FP32", "data": [1.0]}]}).encode()
        request = urllib.request.Request(f"http://{handle.http_url}/v2/models/two_python/infer", data=body,
                                         headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(OSError):
            opener.open(request, timeout=30)
        error = handle.failure("while answering a request", "see the log")
    assert "exited with signal SIGABRT while answering a request" in error.message
    assert "terminate called after throwing an instance of 'std::bad_alloc'" in error.message


HANGING_MODEL = """
import time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("y", np.zeros(1, np.float32))]) for _ in requests]

    def finalize(self):
        time.sleep(600)  # a model that never finishes unloading
"""


def test_a_server_that_does_not_stop_is_killed_after_the_grace_period_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "repo" / "hang" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "hang" / "1" / "model.py").write_text(HANGING_MODEL)
    (tmp_path / "repo" / "hang" / "config.pbtxt").write_text(
        'backend: "python" max_batch_size: 0 input { name: "x" data_type: TYPE_FP32 dims: [1] } '
        'output { name: "y" data_type: TYPE_FP32 dims: [1] }')
    warnings: list[str] = []
    with launch(tmp_path / "repo", stop_grace_s=2, on_progress=warnings.append):
        (pid,) = tritonserver_pids()
        members = group_members(pid)
        started = time.monotonic()
    took = time.monotonic() - started
    assert took < 2 + 5 + 3, f"the stop took {took:.1f} s"
    assert wait_until_gone(members, 1) == []
    assert len(warnings) == 1 and "did not stop within 2 s of SIGTERM" in warnings[0] and "SIGKILL" in warnings[0]
