"""TensorRT: profiles, the container builder's command line, configs from engine metadata, version checks.

TensorRT cannot be installed here and there is no GPU, so the builder script runs against a mock `tensorrt`
module (tests say "mock" in their names) that executes the model with ONNX Runtime; the test that needs the real
thing is marked `tensorrt` and skips with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests import models
from tests.conftest import save_checkpoint
from tests.export.fake_tensorrt import make_tensorrt
from tritongen.config import ModelConfig, parse_config, render_config
from tritongen.errors import CheckFailed, TritongenError
from tritongen.export import trt_builder
from tritongen.export.tensorrt import (
    NEEDS,
    EngineMeta,
    TensorRTOptions,
    build_in_container,
    check_config_against_engine,
    check_plan_version,
    check_tensorrt_available,
    container_command,
    container_error,
    parse_dynamic_range,
    plan_into_version_dir,
    plan_version_problem,
    plan_versions_compatible,
    profile_from_spec,
    reproduce_script,
    spec_from_engine,
    tensorrt_unavailable_reason,
    tensorrt_version_from_env,
    version_mismatch_in_log,
)
from tritongen.runners.torch import TorchRunner
from tritongen.spec import ModelSpec, TensorSpec, dtype_from_name, parse_input_spec

FP32 = dtype_from_name("fp32")


def cnn_spec(max_batch_size: int = 32) -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("image:3x32x32:fp32"),), outputs=(TensorSpec("output", FP32, (10,)),),
                     max_batch_size=max_batch_size)


def encoder_spec(max_batch_size: int = 8) -> ModelSpec:
    return ModelSpec(inputs=(parse_input_spec("tokens:seq:int64:0-49"), parse_input_spec("mask:seq:int64:0-1")),
                     outputs=(TensorSpec("hidden", FP32, ("seq", 16)), TensorSpec("pooled", FP32, (16,))),
                     max_batch_size=max_batch_size)


# ---------------------------------------------------------------------------------------------------------------
# Profiles


def test_batch_profile_is_one_to_max_and_named_axes_take_their_ranges() -> None:
    profile = profile_from_spec(cnn_spec(), {})
    assert (profile["image"].min, profile["image"].opt, profile["image"].max) == \
        ((1, 3, 32, 32), (32, 3, 32, 32), (32, 3, 32, 32))
    assert profile_from_spec(cnn_spec(), {}, preferred_batch_sizes=(4, 8))["image"].opt == (8, 3, 32, 32)
    ranges = {"seq": parse_dynamic_range("seq:1:64:256"), "batch": parse_dynamic_range("batch:1:4:8")}
    profile = profile_from_spec(encoder_spec(), ranges)
    assert profile["tokens"].to_dict() == {"min": [1, 1], "opt": [4, 64], "max": [8, 256]}
    assert profile["mask"] == profile["tokens"]  # one named axis, one range, for every input that has it


def test_unbatched_profile_has_no_batch_axis() -> None:
    profile = profile_from_spec(cnn_spec(max_batch_size=0), {})
    assert profile["image"].min == profile["image"].max == (3, 32, 32)


@pytest.mark.parametrize("text, words", [
    ("seq:1:64", "malformed"), ("seq:8:4:16", "MIN <= OPT <= MAX"), ("seq:a:b:c", "integers"), ("1x:1:2:3", "malformed"),
])
def test_bad_dynamic_ranges(text: str, words: str) -> None:
    with pytest.raises(TritongenError, match=words):
        parse_dynamic_range(text)


def test_a_dynamic_axis_without_a_range_is_an_error_with_an_example() -> None:
    with pytest.raises(TritongenError) as err:
        profile_from_spec(encoder_spec(), {})
    assert "axis 'seq' is dynamic" in err.value.message and "--dynamic-range seq:1:16:64" in err.value.hint
    with pytest.raises(TritongenError, match="names axis 'len', which no input has"):
        profile_from_spec(encoder_spec(), {"len": parse_dynamic_range("len:1:2:3")})


# ---------------------------------------------------------------------------------------------------------------
# Builders: availability, the container command line


def test_without_tensorrt_the_error_says_what_is_needed() -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    reason = tensorrt_unavailable_reason(TensorRTOptions())
    assert reason == "the tensorrt Python package is not installed and no --trt-image was given"
    with pytest.raises(TritongenError) as err:
        check_tensorrt_available(TensorRTOptions())
    assert err.value.message.startswith(NEEDS) and "--trt-image" in err.value.message
    assert "--format onnx" in err.value.hint


def test_trt_image_without_docker_says_so() -> None:
    reason = tensorrt_unavailable_reason(TensorRTOptions(image="nvcr.io/nvidia/tensorrt:24.08-py3",
                                                         docker="no-such-docker-binary"))
    assert reason == "--trt-image was given but `no-such-docker-binary` is not installed"


def test_cli_format_tensorrt_fails_in_one_line_before_exporting(tmp_path: Path, cnn_checkpoint: Path, cli) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    result = cli("build", cnn_checkpoint, "--model-class", "tests.models:SmallCNN", "--input", "image:3x32x32:fp32",
                 "--format", "tensorrt", "--repository", tmp_path / "repo", "--no-deploy")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs TensorRT and an NVIDIA GPU" in lines[0] and "--trt-image" in lines[0]
    assert "Traceback" not in result.stderr and "exporting" not in result.stderr


def test_container_command_mounts_the_job_and_asks_for_gpus(tmp_path: Path) -> None:
    options = TensorRTOptions(image="nvcr.io/nvidia/tensorrt:24.08-py3")
    command = container_command(options, tmp_path, "job.json", user="1000:1000")
    assert command == ["docker", "run", "--rm", "--gpus", "all", "--user", "1000:1000", "--env", "HOME=/tmp",
                       "--volume", f"{tmp_path.resolve()}:/tritongen-trt", "--workdir", "/tritongen-trt",
                       "nvcr.io/nvidia/tensorrt:24.08-py3", "python3", "trt_builder.py", "job.json"]
    script = reproduce_script(options)
    assert '--volume "$(pwd)":/tritongen-trt' in script and "--user" not in script
    assert script.startswith("#!/bin/sh") and "nvcr.io/nvidia/tensorrt:24.08-py3 python3 trt_builder.py job.json" in script
    assert "python3 trt_builder.py job.json" in reproduce_script(TensorRTOptions())


def test_container_build_mock_docker_reads_the_metadata_and_maps_errors(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"metadata": "engine.json"}))
    meta = {"tensorrt_version": "10.3.0.26", "compute_capability": "9.0", "cuda_runtime": "12.6",
            "tensors": [{"name": "x", "mode": "input", "dtype": "FLOAT", "shape": [-1, 4],
                         "profile": {"min": [1, 4], "opt": [8, 4], "max": [8, 4]}},
                        {"name": "y", "mode": "output", "dtype": "FLOAT", "shape": [-1, 4]}]}
    seen = []

    def fake_run(command, **kwargs):
        seen.append(command)
        (tmp_path / "engine.json").write_text(json.dumps(meta))
        return subprocess.CompletedProcess(command, 0, "", "")

    options = TensorRTOptions(image="img:1")
    result = build_in_container(options, job, run=fake_run)
    assert result.tensorrt_version == "10.3.0.26" and [t.name for t in result.inputs] == ["x"]
    assert seen[0][:5] == ["docker", "run", "--rm", "--gpus", "all"]
    gpu = container_error("img:1", 125, "docker: Error response from daemon: could not select device driver \"\" "
                                        "with capabilities: [[gpu]].")
    assert "could not give img:1 a GPU" in gpu.message and "NVIDIA Container Toolkit" in gpu.hint
    ours = container_error("img:1", 3, "banner\n" + trt_builder.ERROR_PREFIX + "no CUDA GPU is visible\n")
    assert ours.message == "TensorRT build in img:1 failed: no CUDA GPU is visible"
    missing = container_error("img:1", 125, "Unable to find image 'img:1' locally")
    assert "cannot find or pull" in missing.message


# ---------------------------------------------------------------------------------------------------------------
# Configs from engine metadata


def engine_meta(int_dtype: str = "INT32", max_batch: int = 8) -> EngineMeta:
    profile = {"min": [1, 1], "opt": [4, 64], "max": [max_batch, 256]}
    return EngineMeta.from_dict({
        "tensorrt_version": "8.6.1.6", "compute_capability": "8.6", "cuda_runtime": "12.1",
        "tensors": [{"name": "tokens", "mode": "input", "dtype": int_dtype, "shape": [-1, -1], "profile": profile},
                    {"name": "mask", "mode": "input", "dtype": int_dtype, "shape": [-1, -1], "profile": profile},
                    {"name": "hidden", "mode": "output", "dtype": "FLOAT", "shape": [-1, -1, 16]},
                    {"name": "pooled", "mode": "output", "dtype": "FLOAT", "shape": [-1, 16]}]})


def test_tensorrt_config_takes_dtypes_and_max_batch_from_the_engine() -> None:
    spec = spec_from_engine(engine_meta(max_batch=4), encoder_spec(max_batch_size=32))
    assert [t.dtype.short for t in spec.inputs] == ["int32", "int32"] and spec.max_batch_size == 4
    proto = parse_config(render_config(ModelConfig(name="enc", spec=spec, format="tensorrt")))
    assert proto.platform == "tensorrt_plan" and proto.max_batch_size == 4
    from tritonclient.grpc import model_config_pb2

    assert proto.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert model_config_pb2.DataType.Name(proto.input[0].data_type) == "TYPE_INT32"
    check_config_against_engine(proto, engine_meta(max_batch=4))
    int64 = spec_from_engine(engine_meta("INT64"), encoder_spec())  # TensorRT 10 keeps INT64 inputs
    assert [t.dtype.short for t in int64.inputs] == ["int64", "int64"]


def test_config_that_disagrees_with_the_engine_is_refused() -> None:
    spec = spec_from_engine(engine_meta(), encoder_spec())
    proto = parse_config(render_config(ModelConfig(name="enc", spec=encoder_spec(), format="tensorrt")))
    with pytest.raises(TritongenError, match="TYPE_INT64 in the config but TYPE_INT32 in the engine"):
        check_config_against_engine(proto, engine_meta())
    proto = parse_config(render_config(ModelConfig(name="enc", spec=spec, format="tensorrt")))
    proto.max_batch_size = 16
    with pytest.raises(TritongenError, match="exceeds the profile's max batch 8"):
        check_config_against_engine(proto, engine_meta())


# ---------------------------------------------------------------------------------------------------------------
# Version checks


def test_plan_versions_must_match_to_the_patch_level() -> None:
    assert plan_versions_compatible("10.3.0.26", "10.3.0.26") and plan_versions_compatible("10.3.0.26", "10.3.0")
    assert not plan_versions_compatible("8.0.0.3", "8.0.1.6") and not plan_versions_compatible("10.3.0", "10.4.0")
    assert plan_version_problem("10.3.0.26", None, "m") is None
    problem = plan_version_problem("10.0.1.6", "10.3.0.26", "resnet")
    assert problem and "TensorRT 10.0.1.6 plan but the server runs TensorRT 10.3.0.26" in problem
    with pytest.raises(TritongenError) as err:
        check_plan_version("10.0.1.6", "10.3.0.26", "resnet")
    assert "model 'resnet'" in err.value.message and "--trt-image" in err.value.hint


def test_version_mismatch_from_the_server_log_and_image_environment() -> None:
    log = ("E0530 logging.cc:43] 6: The engine plan file is not compatible with this version of TensorRT, "
           "expecting library version 8.2.4 got 8.2.3, please rebuild.")
    assert "8.2.4 vs 8.2.3" in version_mismatch_in_log(log)
    assert version_mismatch_in_log("all good") is None
    assert tensorrt_version_from_env(["PATH=/usr/bin", "TRT_VERSION=10.3.0.26"]) == "10.3.0.26"
    assert tensorrt_version_from_env({"TENSORRT_VERSION": "8.6.1.6"}) == "8.6.1.6"
    assert tensorrt_version_from_env(["CUDA_VERSION=12.6"]) is None


# ---------------------------------------------------------------------------------------------------------------
# The builder script against a mock TensorRT


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    import torch

    from tritongen.export.onnx import onnx_from_module

    torch.manual_seed(0)
    module = models.TinyEncoder().eval()
    path = tmp_path_factory.mktemp("encoder") / "model.onnx"
    onnx_from_module(module, encoder_spec(), path)
    return module, path


def write_mock_job(work: Path, onnx_path: Path, precision: str, calibration=None, timing_cache=None) -> Path:
    from tritongen.export.tensorrt import write_job
    from tritongen.spec import random_inputs

    spec = encoder_spec()
    ranges = {"seq": parse_dynamic_range("seq:1:16:64")}
    profile = profile_from_spec(spec, ranges)
    feeds = [random_inputs(spec, 2, {"seq": 8}, np.random.default_rng(1))]
    return write_job(work, [onnx_path], spec, profile, precision, TensorRTOptions(dynamic_ranges=("seq:1:16:64",)),
                     calibration, feeds, timing_cache)


def test_builder_script_mock_tensorrt_profile_flags_timing_cache(tmp_path: Path, encoder) -> None:
    _, onnx_path = encoder
    trt = make_tensorrt()
    cache = tmp_path / "timing.cache"
    job = write_mock_job(tmp_path / "job", onnx_path, "fp16", timing_cache=cache)
    meta = trt_builder.run_job(job, trt=trt, cuda=trt.cuda)
    config = trt.config
    assert config.flags == {"FP16"} and config.workspace == 4096 << 20
    assert config.profiles[0].shapes["tokens"] == ((1, 1), (8, 16), (8, 64))
    assert ("create_network", 0) in trt.calls  # TensorRT 10: explicit batch is the only kind, no flag
    assert meta["tensorrt_version"] == "10.3.0.26" and meta["compute_capability"] == "8.6"
    assert meta["timing_cache_reused"] is False and (tmp_path / "job" / "timing.cache").read_bytes() == b"+entries"
    assert [t["name"] for t in meta["tensors"]] == ["tokens", "mask", "hidden", "pooled"]
    outputs = np.load(tmp_path / "job" / "parity" / "out000.npz")
    assert outputs["hidden"].shape == (2, 8, 16)
    # A second build starts from the cache the first wrote.
    cache.write_bytes(b"+entries")
    job = write_mock_job(tmp_path / "job2", onnx_path, "fp16", timing_cache=cache)
    again = make_tensorrt()
    assert trt_builder.run_job(job, trt=again, cuda=again.cuda)["timing_cache_reused"] is True


def test_int8_calibration_mock_tensorrt_uses_the_calibration_profile_and_cache(tmp_path: Path, encoder) -> None:
    from tritongen.precision import random_calibration

    _, onnx_path = encoder
    calibration = random_calibration(encoder_spec(), items=24)  # 3 batches of 8 at seq 16
    odd = {k: v[:, :5] for k, v in calibration[0].items()}  # another shape: TensorRT calibrates at one shape only
    trt = make_tensorrt(version="8.6.1.6")
    job = write_mock_job(tmp_path / "job", onnx_path, "int8", calibration=[*calibration, odd])
    meta = trt_builder.run_job(job, trt=trt, cuda=trt.cuda)
    assert trt.config.flags == {"FP16", "INT8"}
    assert trt.config.calibration_profile.shapes["tokens"] == ((8, 16), (8, 16), (8, 16))
    assert ("create_network", 1) in trt.calls  # TensorRT 8: the EXPLICIT_BATCH flag
    assert meta["calibration_batches_used"] == 3 and (tmp_path / "job" / "calibration.cache").exists()
    # With the cache in place, a rebuild does not calibrate again.
    trt2 = make_tensorrt(version="8.6.1.6")
    meta = trt_builder.run_job(job, trt=trt2, cuda=trt2.cuda)
    assert meta["calibration_batches_used"] == 0 and ("build", ["FP16", "INT8"], 0) in trt2.calls


def test_builder_script_without_a_gpu_mock_tensorrt_says_so(tmp_path: Path, encoder) -> None:
    from tests.export.fake_tensorrt import FakeCuda

    job = write_mock_job(tmp_path / "job", encoder[1], "fp32")
    with pytest.raises(trt_builder.BuildError, match="no CUDA GPU is visible"):
        trt_builder.run_job(job, trt=make_tensorrt(), cuda=FakeCuda(devices=0))


def mock_builder(trt):
    def build(options: TensorRTOptions, job: Path) -> EngineMeta:
        return EngineMeta.from_dict(trt_builder.run_job(job, trt=trt, cuda=trt.cuda))

    return build


def test_plan_into_version_dir_mock_tensorrt_checks_parity_and_keeps_a_reproduce_script(tmp_path: Path,
                                                                                        encoder) -> None:
    module, onnx_path = encoder
    version_dir = tmp_path / "enc" / "1"
    version_dir.mkdir(parents=True)
    options = TensorRTOptions(dynamic_ranges=("seq:1:16:64",), timing_cache=tmp_path / "t.cache")
    reference = TorchRunner(module, ["tokens", "mask"], ["hidden", "pooled"])
    trt = make_tensorrt(version="8.6.1.6", narrow_int64=True)
    artifact = plan_into_version_dir([onnx_path], encoder_spec(), reference, options, "fp32", version_dir,
                                     tmp_path / "work", builder=mock_builder(trt))
    assert artifact.parity.passed and artifact.parity.atol == 1e-3
    assert [t.dtype.short for t in artifact.spec.inputs] == ["int32", "int32"]
    assert (version_dir / "model.plan").exists()
    kept = version_dir / "tritongen" / "tensorrt"
    assert {p.name for p in kept.iterdir()} == {"job.json", "trt_builder.py", "engine.json", "reproduce.sh"}
    assert os.access(kept / "reproduce.sh", os.X_OK)
    assert artifact.manifest["tensorrt_version"] == "8.6.1.6" and artifact.manifest["compute_capability"] == "8.6"
    assert artifact.manifest["profile"]["tokens"] == {"min": [1, 1], "opt": [8, 16], "max": [8, 64]}
    proto = parse_config(render_config(ModelConfig(name="enc", spec=artifact.spec, format="tensorrt")))
    check_config_against_engine(proto, artifact.meta)


def test_fp16_io_engine_mock_tensorrt_has_fp16_outputs_in_its_config(tmp_path: Path, encoder) -> None:
    module, onnx_path = encoder
    version_dir = tmp_path / "v"
    version_dir.mkdir()
    reference = TorchRunner(module, ["tokens", "mask"], ["hidden", "pooled"])
    options = TensorRTOptions(dynamic_ranges=("seq:1:16:64",), timing_cache=tmp_path / "t.cache")
    artifact = plan_into_version_dir([onnx_path], encoder_spec(), reference, options, "fp16", version_dir,
                                     tmp_path / "work", fp16_io=True, builder=mock_builder(make_tensorrt()))
    assert [t.dtype.short for t in artifact.spec.outputs] == ["fp16", "fp16"]
    assert [t.dtype.short for t in artifact.spec.inputs] == ["int64", "int64"]  # only float tensors change
    proto = parse_config(render_config(ModelConfig(name="enc", spec=artifact.spec, format="tensorrt")))
    from tritonclient.grpc import model_config_pb2

    assert model_config_pb2.DataType.Name(proto.output[0].data_type) == "TYPE_FP16"
    assert artifact.parity.passed and artifact.manifest["fp16_io"] is True


def test_int8_engine_below_the_fidelity_threshold_fails_mock_tensorrt(tmp_path: Path, encoder) -> None:
    from tritongen.precision import random_calibration

    module, onnx_path = encoder
    version_dir = tmp_path / "v"
    version_dir.mkdir()

    class Wrong(TorchRunner):
        def infer(self, feeds):
            return {k: v + 10.0 for k, v in super().infer(feeds).items()}

    reference = Wrong(module, ["tokens", "mask"], ["hidden", "pooled"])
    with pytest.raises(CheckFailed, match="TensorRT INT8 engine is too far from PyTorch FP32"):
        plan_into_version_dir([onnx_path], encoder_spec(), reference,
                              TensorRTOptions(dynamic_ranges=("seq:1:16:64",), timing_cache=tmp_path / "t.cache"),
                              "int8", version_dir, tmp_path / "work", calibration=random_calibration(encoder_spec()),
                              builder=mock_builder(make_tensorrt()))


def test_build_format_tensorrt_mock_tensorrt_writes_a_plan_model(tmp_path: Path, monkeypatch) -> None:
    from tritongen.build import BuildOptions, build_model
    from tritongen.export import tensorrt
    from tritongen.repository import load_reference, read_manifest

    trt = make_tensorrt(version="8.6.1.6", narrow_int64=True)
    monkeypatch.setattr(tensorrt, "check_tensorrt_available", lambda options: None)
    monkeypatch.setattr(tensorrt, "_default_builder", mock_builder(trt))
    checkpoint = save_checkpoint(models.TinyEncoder(), tmp_path / "enc.pt")
    result = build_model(BuildOptions(
        checkpoint=checkpoint, model_class="tests.models:TinyEncoder", inputs=("tokens:seq:int64", "mask:seq:int64"),
        outputs=("hidden", "pooled"), formats=("onnx", "tensorrt"), max_batch_size=8, repository=tmp_path / "repo",
        deploy=False, tensorrt=TensorRTOptions(dynamic_ranges=("seq:1:16:64",), timing_cache=tmp_path / "t.cache")))
    plan = result.artifacts[1]
    assert (plan.format, plan.model, plan.path.name) == ("tensorrt", "enc_tensorrt", "model.plan")
    assert plan.parity.passed
    from tritongen.config import read_config

    config = read_config(tmp_path / "repo" / "enc_tensorrt" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
    manifest = read_manifest(tmp_path / "repo" / "enc_tensorrt" / "1")
    assert manifest["format"] == "tensorrt" and manifest["tensorrt"]["tensorrt_version"] == "8.6.1.6"
    assert manifest["tolerance"] == {"atol": 1e-3, "rtol": 1e-3}
    inputs, _ = load_reference(tmp_path / "repo" / "enc_tensorrt" / "1")
    assert inputs["tokens"].dtype == np.int32  # what the engine takes, so validate can send it as is


# ---------------------------------------------------------------------------------------------------------------
# The real thing


def _real_tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "needs the tensorrt Python package (not installable in this environment)"
    from tritongen.export.tensorrt import gpu_visible

    return None if gpu_visible() else "needs an NVIDIA GPU visible to this process"


@pytest.mark.tensorrt
@pytest.mark.skipif(_real_tensorrt_reason() is not None, reason=str(_real_tensorrt_reason()))
def test_real_tensorrt_fp16_plan_of_the_cnn(tmp_path: Path, cnn_checkpoint: Path, cli) -> None:
    result = cli("build", cnn_checkpoint, "--model-class", "tests.models:SmallCNN", "--input", "image:3x32x32:fp32",
                 "--format", "tensorrt", "--precision", "fp16", "--max-batch-size", "8", "--repository",
                 tmp_path / "repo", "--no-deploy", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["artifacts"][0]["parity"]["passed"]
    assert (tmp_path / "repo" / "cnn" / "1" / "model.plan").stat().st_size > 0
