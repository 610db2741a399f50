"""Switching the version a running Triton serves, without dropping a request.

A Triton in explicit model-control mode answers requests that name no version with the highest version it has
loaded, so version N cannot be loaded next to the serving one under the model's own name without taking its traffic
(N is usually higher). `rollout` therefore:

1. loads version N's files under a name of its own (`<model>__rollout_vN`, through the load API's config and file
   override), next to the serving model, which keeps all the traffic;
2. validates it on the live server: the version's saved reference inputs over HTTP and gRPC against the PyTorch
   outputs `build` saved, at the tolerance of its build; and puts its outputs beside the serving version's;
3. unloads it, and switches the model to N by reloading it with its config's version policy set to N alone: Triton
   loads N while the old version keeps serving, then routes every new request to N and unloads the old one;
4. checks the model (no version named) now answers with N's reference outputs, and goes back to the old version if
   not.

Any failure before the switch leaves the old version serving, untouched. Measured here: no request failed during
a switch under continuous load (tests/rollout/test_switch.py). A restarted server serves what config.pbtxt says.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import TritongenError
from tritongen.rollout.control import ControlRefused, ModelControl
from tritongen.rollout.history import previous_version, record_switch
from tritongen.server.base import ServerHandle

Progress = Callable[[str], None]
CANDIDATE_SUFFIX = "__rollout_v"
SETTLE_S = 10.0  # how long the old version may take to unload after the switch


@dataclass(frozen=True)
class RolloutReport:
    """What a rollout (or rollback) did: `switched` is True only when version `to_version` serves and answers with
    its reference outputs."""

    model: str
    kind: str  # "rollout" or "rollback"
    from_version: int | None
    to_version: int
    switched: bool
    checks: tuple[Any, ...] = ()  # validate.ProtocolCheck of the candidate against its reference
    after: tuple[Any, ...] = ()  # the same checks on the model after the switch
    differences: dict[str, float] = field(default_factory=dict)  # per output: max |serving - candidate|
    problem: str | None = None
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.switched, "model": self.model, "kind": self.kind, "from_version": self.from_version,
                "to_version": self.to_version, "switched": self.switched,
                "checks": [_check_dict(c) for c in self.checks], "after": [_check_dict(c) for c in self.after],
                "differences": self.differences, "problem": self.problem, "notes": list(self.notes),
                "seconds": round(self.seconds, 2)}


def _check_dict(check: Any) -> dict[str, Any]:
    return {"protocol": check.protocol, "passed": check.passed, "error": check.error,
            "outputs": [{"name": o.name, "passed": o.passed, "max_abs_err": o.max_abs_err} for o in check.outputs]}


def rollout(repository: str | Path, model: str, version: int, server: str | ServerHandle, *, key: str | None = None,
            protocols: Sequence[str] = ("http", "grpc"), on_progress: Progress | None = None,
            kind: str = "rollout") -> RolloutReport:
    """Switch `model` on `server` (a running Triton's URL, or a handle) to `version` of `repository`: validated on the
    live server first, the serving version untouched on any failure (see the module docstring)."""
    from tritongen.repository import read_model_dir
    from tritongen.server.checks import artifact_problems

    say = on_progress or (lambda _msg: None)
    started = time.perf_counter()
    model_dir = read_model_dir(Path(repository) / model)
    if version not in model_dir.versions:
        have = ", ".join(map(str, model_dir.versions)) or "none"
        raise TritongenError(f"model '{model}' has no version {version} in {repository} (it has: {have})",
                             "build it first with `tritongen build`, or pick one of those versions")
    problems = artifact_problems(model_dir.version_dir(version))
    if problems:
        raise TritongenError(f"version {version} of '{model}' is not as `tritongen build` wrote it: {problems[0]}",
                             "rebuild it (or restore its files); `tritongen validate` lists every difference")
    handle = _handle(server)
    with ModelControl(handle.http_url, key) as control:
        serving = control.ready_versions(model)
        if not serving:
            raise TritongenError(f"the Triton at {handle.http_url} does not serve '{model}'",
                                 "check the model name; a rollout switches a model the server already serves")
        current = serving[-1]  # what a request without a version gets
        if serving == [version]:
            raise TritongenError(f"the Triton at {handle.http_url} already serves version {version} of '{model}'",
                                 "nothing to do; pick another --version")
        switch = _Switch(model_dir, control, handle, protocols, say, kind)
        report = switch.run(current, version)
    report = _with_seconds(report, time.perf_counter() - started)
    if report.switched:
        why = record_switch(Path(repository), model, current, version, handle.http_url, kind)
        if why:
            report = _with_note(report, why)
    return report


def rollback(repository: str | Path, model: str, server: str | ServerHandle, *, to: int | None = None,
             key: str | None = None, protocols: Sequence[str] = ("http", "grpc"),
             on_progress: Progress | None = None) -> RolloutReport:
    """Switch `model` back to the version the last rollout replaced (or `to`), the same safe way as `rollout`."""
    from tritongen.repository import read_model_dir

    handle = _handle(server)
    if to is None:
        with ModelControl(handle.http_url, key) as control:
            serving = control.ready_versions(model)
        if not serving:
            raise TritongenError(f"the Triton at {handle.http_url} does not serve '{model}'",
                                 "check the model name and the URL")
        available = list(read_model_dir(Path(repository) / model).versions)
        to, how = previous_version(Path(repository), model, serving[-1], available)
        if to is None:
            raise TritongenError(f"no version to roll '{model}' back to from version {serving[-1]}: {how}",
                                 "name one with --to VERSION")
        (on_progress or (lambda _m: None))(f"rolling back to version {to} ({how})")
    return rollout(repository, model, to, handle, key=key, protocols=protocols, on_progress=on_progress,
                   kind="rollback")


def _handle(server: str | ServerHandle) -> ServerHandle:
    if isinstance(server, ServerHandle):
        return server
    from tritongen.server.url import handle_from_url

    return handle_from_url(server)


def _with_seconds(report: RolloutReport, seconds: float) -> RolloutReport:
    from dataclasses import replace

    return replace(report, seconds=seconds)


def _with_note(report: RolloutReport, note: str) -> RolloutReport:
    from dataclasses import replace

    return replace(report, notes=(*report.notes, note))


class _Switch:
    """The steps of one switch on one server, in order (see the module docstring)."""

    def __init__(self, model_dir: Any, control: ModelControl, handle: ServerHandle, protocols: Sequence[str],
                 say: Progress, kind: str) -> None:
        self.model_dir = model_dir
        self.model = model_dir.name
        self.control = control
        self.handle = handle
        self.protocols = tuple(protocols)
        self.say = say
        self.kind = kind
        # The server runs ONNX models through the python runner where it lacks the onnxruntime backend (the
        # embedded one): the configs it is given must be in that form too.
        self.runner = _served_by_runner(control.config(self.model), model_dir.config)

    def run(self, current: int, version: int) -> RolloutReport:
        from tritongen.validate import reference_of

        base = {"model": self.model, "kind": self.kind, "from_version": current, "to_version": version}
        config = self.version_config(version)
        inputs, expected, atol, rtol = reference_of(self.model_dir.version_dir(version), config)
        candidate = f"{self.model}{CANDIDATE_SUFFIX}{version}"
        self.say(f"loading version {version} as '{candidate}' next to version {current}, which keeps serving")
        try:
            self.control.load(candidate, self.candidate_config(config, candidate, version),
                              self.candidate_files(version))
        except ControlRefused:
            raise  # how the command is run (key, server mode), not the version: nothing was loaded
        except TritongenError as exc:
            self._unload_quietly(candidate)
            return RolloutReport(**base, switched=False,
                                 problem=f"version {version} did not load: {exc.message}; version {current} still "
                                         "serves")
        try:
            self.say(f"validating version {version} on the live server against its saved reference")
            checks = tuple(self.check(candidate, p, inputs, expected, atol, rtol) for p in self.protocols)
            differences = self.differences(current, candidate, inputs, list(expected))
        finally:
            self._unload_quietly(candidate)
        if not all(c.passed for c in checks):
            failed = next(c for c in checks if not c.passed)
            return RolloutReport(**base, switched=False, checks=checks, differences=differences,
                                 problem=f"version {version} does not answer with its reference outputs over "
                                         f"{failed.protocol.upper()} ({_why(failed)}); version {current} still serves")
        self.say(f"switching '{self.model}' from version {current} to version {version}")
        try:
            self.control.load(self.model, self.served_config(config, version))
        except TritongenError as exc:
            still = current in self.control.ready_versions(self.model)
            return RolloutReport(**base, switched=False, checks=checks, differences=differences,
                                 problem=f"the switch failed: {exc.message}; " + (
                                     f"version {current} still serves" if still else
                                     f"version {current} no longer serves: roll back with --to {current}"))
        self.say(f"checking that '{self.model}' answers as version {version}")
        after = tuple(self.check(self.model, p, inputs, expected, atol, rtol) for p in self.protocols)
        ready = self.settled(version)
        if version in ready and all(c.passed for c in after):
            notes = () if ready == [version] else (f"versions {ready} are still loaded: the server had not unloaded "
                                                   f"version {current} after {SETTLE_S:g} s",)
            return RolloutReport(**base, switched=True, checks=checks, after=after, differences=differences,
                                 notes=notes)
        self.say(f"going back to version {current}")
        self.control.load(self.model, self.served_config(self.version_config(current), current))
        return RolloutReport(**base, switched=False, checks=checks, after=after, differences=differences,
                             problem=f"after the switch the server served versions {ready} and answered "
                                     f"{'as expected' if all(c.passed for c in after) else 'otherwise'}; "
                                     f"version {current} was loaded again")

    def settled(self, version: int) -> list[int]:
        """The ready versions once only `version` is left (the old one unloads after the switch), or after SETTLE_S."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            ready = self.control.ready_versions(self.model)
            if ready == [version] or time.monotonic() > deadline:
                return ready
            time.sleep(0.1)

    def version_config(self, version: int) -> Any:
        """The config version `version` is served with: the live config.pbtxt for the newest version (it follows the
        newest build, tuning included), else the one its build recorded in <version>/tritongen/."""
        from tritongen.config import read_config
        from tritongen.repository import CONFIG, META_DIR
        from tritongen.server.stage import as_python_runner

        recorded = self.model_dir.version_dir(version) / META_DIR / CONFIG
        if version == self.model_dir.latest or not recorded.is_file():
            config = self.model_dir.config
        else:
            config = read_config(recorded.parent)
        return as_python_runner(config) if self.runner else config

    def candidate_config(self, config: Any, name: str, version: int) -> dict[str, Any]:
        from google.protobuf import json_format
        from tritonclient.grpc import model_config_pb2

        candidate = model_config_pb2.ModelConfig()
        candidate.CopyFrom(config)
        candidate.name = name
        candidate.version_policy.specific.versions[:] = [version]
        for group in candidate.instance_group:
            group.count = 1  # enough to validate it; the switch loads the version with its own instances
        return json_format.MessageToDict(candidate, preserving_proto_field_name=True)

    def served_config(self, config: Any, version: int) -> dict[str, Any]:
        from google.protobuf import json_format
        from tritonclient.grpc import model_config_pb2

        served = model_config_pb2.ModelConfig()
        served.CopyFrom(config)
        served.name = self.model
        served.version_policy.specific.versions[:] = [version]
        return json_format.MessageToDict(served, preserving_proto_field_name=True)

    def candidate_files(self, version: int) -> dict[str, bytes]:
        """The version's files as the build wrote them (the manifest lists them), uploaded with the load request;
        for the python runner, its model.py as staging renders it."""
        from tritongen.formats.python import MODEL_PY, python_model_from_onnx

        version_dir = self.model_dir.version_dir(version)
        names = list(self.model_dir.manifest_of(version)["artifacts"])
        files = {f"{version}/{name}": (version_dir / name).read_bytes() for name in names
                 if not (self.runner and name == MODEL_PY)}
        if self.runner:
            onnx_filename = self.model_dir.config.default_model_filename or "model.onnx"
            files[f"{version}/{MODEL_PY}"] = python_model_from_onnx(onnx_filename).encode()
        return files

    def check(self, model: str, protocol: str, inputs: dict[str, np.ndarray], expected: dict[str, np.ndarray],
              atol: float, rtol: float) -> Any:
        from tritongen.validate import reference_check

        url = self.handle.http_url if protocol == "http" else self.handle.grpc_url
        return reference_check(url, model, protocol, inputs, expected, atol, rtol,
                               max_batch_size=self.model_dir.config.max_batch_size)

    def differences(self, current: int, candidate: str, inputs: dict[str, np.ndarray],
                    outputs: list[str]) -> dict[str, float]:
        """Per output, the largest difference between what the serving version and the candidate answer to the same
        inputs (the side-by-side view before the switch); empty where their interfaces differ."""
        from tritongen.runners.triton import TritonRunner

        try:
            with TritonRunner(self.handle.grpc_url, self.model, protocol="grpc", version=str(current),
                              output_names=outputs) as old, \
                    TritonRunner(self.handle.grpc_url, candidate, protocol="grpc", output_names=outputs) as new:
                before, after = old.infer(inputs), new.infer(inputs)
        except TritongenError:
            return {}
        return {name: float(np.max(np.abs(np.asarray(before[name], np.float64) - np.asarray(after[name], np.float64))))
                for name in outputs if name in before and name in after
                and np.shape(before[name]) == np.shape(after[name]) and np.asarray(before[name]).dtype.kind in "fiu"}

    def _unload_quietly(self, name: str) -> None:
        try:
            self.control.unload(name)
        except TritongenError:
            pass  # not loaded, or the server went away: nothing of ours is left to serve


def _served_by_runner(server_config: dict[str, Any], config: Any) -> bool:
    return server_config.get("backend") == "python" and config.platform == "onnxruntime_onnx"


def _why(check: Any) -> str:
    if check.error:
        return check.error
    bad = [o for o in check.outputs if not o.passed]
    return ", ".join(f"{o.name} off by up to {o.max_abs_err:.3g}" for o in bad) or "no outputs"
