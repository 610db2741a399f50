"""`validate`: does a real Triton serve the repository, and return what PyTorch returned?

For each model: READY; the served config is the one we wrote; HTTP and gRPC outputs for the reference inputs match
the PyTorch outputs `build` saved; a burst of single-item requests is batched by the server; bad requests are
refused and the server stays READY.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from tritongen.errors import TritongenError
from tritongen.repository import load_reference, read_manifest, versions_of
from tritongen.runners.triton import PROTOCOLS, TritonRequestError, TritonRunner, TritonUnavailableError
from tritongen.server import NothingToServe, Served, ServedModel, ServerHandle, serve, server_alive
from tritongen.validate_report import (
    BadRequestCheck,
    BatchingCheck,
    ConfigCheck,
    ModelValidation,
    ProtocolCheck,
    ValidationReport,
)
from tritongen.verify import compare_outputs, tolerance_for

__all__ = ["BadRequestCheck", "BatchingCheck", "ConfigCheck", "ModelValidation", "ProtocolCheck", "ValidationReport",
           "as_config_dims", "bad_feeds", "config_differences", "reference_check", "reference_of", "validate_repository"]

BURST_SIZES = (32, 64, 64, 128, 128)
STATS_SETTLE_S = 2.0
DEFAULT_ATOL, DEFAULT_RTOL = tolerance_for().atol, tolerance_for().rtol
UNKNOWN_INPUT = "tritongen_no_such_input"
Progress = Callable[[str], None]


def validate_repository(repository: str | Path, *, models: Sequence[str] | None = None, server: str = "embedded",
                        protocols: Sequence[str] = PROTOCOLS, tritonserver: str | Path | None = None,
                        image: str | None = None, timeout_s: float | None = None,
                        on_progress: Progress | None = None) -> ValidationReport:
    """Serve `repository` and check every model (see the module docstring).

    `server`: "embedded" (tritonserver of nvidia-pytriton, or `tritonserver`), "docker" (`image`), or the URL of a
    running Triton that already serves the repository. Where the server lacks a model's backend (the embedded and
    slim servers have only the python backend), ONNX models are served by the python runner around the same file
    and others are reported as skipped. A model whose files differ from what the build wrote fails, and so does a
    repository with an entry that would stop a real tritonserver started on it.
    """
    repository = Path(repository)
    progress = on_progress or (lambda _msg: None)
    protocols = _check_protocols(protocols)
    try:
        with serve(repository, server, models=models, tritonserver=tritonserver, image=image, timeout_s=timeout_s,
                   report_unverified=True, on_progress=progress, on_warning=progress) as served:
            return _validate_on(served, repository, protocols, progress)
    except NothingToServe as exc:
        return ValidationReport(f"{server} tritonserver (not started: no model it can serve)",
                                tuple(_not_served(m) for m in exc.models), exc.repository_problems)


def _check_protocols(protocols: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(p.lower() for p in protocols))
    for p in chosen:
        if p not in PROTOCOLS:
            raise TritongenError(f"unknown protocol '{p}'", "use --protocol http, grpc or both")
    if not chosen:
        raise TritongenError("no protocol chosen", "use --protocol http, grpc or both")
    return chosen


def _not_served(model: ServedModel) -> ModelValidation:
    if model.problems:
        return ModelValidation(model.name, None, "UNVERIFIED", None, False,
                               problem="its files are not the ones `tritongen build` wrote: " + "; ".join(model.problems)
                               + " (rebuild it with `tritongen build`, or restore the files)")
    return ModelValidation(model.name, None, "SKIPPED", None, False, skipped_reason=model.skipped_reason)


def _validate_on(served: Served, repository: Path, protocols: tuple[str, ...], progress: Progress) -> ValidationReport:
    handle = served.handle
    results = []
    with _control_client(handle) as control:
        for model in served.models:
            if model.served_by is None or model.problems:
                results.append(_not_served(model))
                continue
            checker = _ModelChecker(handle, control, repository / model.name, model.written, model.served_by,
                                    protocols, progress)
            results.append(checker.run())
    return ValidationReport(handle.description or handle.http_url, tuple(results), served.repository_problems)


@contextlib.contextmanager
def _control_client(handle: ServerHandle) -> Iterator[Any]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(handle.http_url, connection_timeout=30, network_timeout=30)
    try:
        yield client
    finally:
        client.close()


class _ModelChecker:
    """The checks of one model, in order; a server that dies on the way turns into one clear error."""

    def __init__(self, handle: ServerHandle, control: Any, model_dir: Path, served_config: Any, served_by: str,
                 protocols: tuple[str, ...], progress: Progress) -> None:
        self.handle = handle
        self.control = control
        self.model_dir = model_dir
        self.name = model_dir.name
        self.config = served_config
        self.served_by = served_by
        self.protocols = protocols
        self.progress = progress
        self.step = "starting"

    def say(self, step: str) -> None:
        self.step = step
        self.progress(f"{self.name}: {step}")

    def run(self) -> ModelValidation:
        from tritonclient.utils import InferenceServerException

        try:
            return self._run()
        except Exception as exc:
            if not server_alive(self.handle):
                raise _server_gone(self.handle, self.name, self.step) from exc
            if not isinstance(exc, (TritongenError, InferenceServerException)):
                raise  # a bug of ours: keep the traceback
            # The server is up but a call failed (a timeout, an endpoint error): this model fails, the run goes on.
            text = exc.one_line() if isinstance(exc, TritongenError) else str(exc)
            return ModelValidation(self.name, None, "UNKNOWN", self.served_by, False, problem=f"{self.step}: {text}")

    def _run(self) -> ModelValidation:
        versions = versions_of(self.model_dir)
        version = versions[-1] if versions else None
        base = {"name": self.name, "version": version, "served_by": self.served_by}
        if version is None:
            return ModelValidation(**base, state="UNAVAILABLE", passed=False,
                                   problem=f"{self.model_dir} has no version directory")
        self.say(f"v{version}: readiness")
        state, reason = self._state(version)
        if state != "READY":
            from tritongen.formats.tensorrt.versions import version_mismatch_in_log

            mismatch = version_mismatch_in_log(self.handle.log()) if self.config.platform == "tensorrt_plan" else None
            return ModelValidation(**base, state=state, passed=False,
                                   problem=mismatch or f"the server reports {state}" + (f": {reason}" if reason else ""))
        self.say("served config")
        config = self._config_check()
        version_dir = self.model_dir / str(version)
        try:
            # The reference holds tensors as the model sees them; clients send and receive them as config dims say.
            inputs, expected, atol, rtol = reference_of(version_dir, self.config)
        except TritongenError as exc:
            return ModelValidation(**base, state=state, passed=False, config=config, problem=exc.one_line())
        checks = {}
        for protocol in self.protocols:
            self.say(f"inference over {protocol.upper()}")
            checks[protocol] = self._parity(protocol, inputs, expected, atol, rtol)
        batching = self._batching(version, inputs, expected, atol, rtol)
        bad = []
        for protocol in self.protocols:
            self.say(f"bad requests over {protocol.upper()}")
            bad += self._bad_requests(protocol, inputs)
        ready_after = bool(self.control.is_server_ready() and self.control.is_model_ready(self.name, str(version)))
        passed = (config.passed and all(c.passed for c in checks.values()) and batching.passed
                  and all(b.passed for b in bad) and ready_after)
        return ModelValidation(**base, state=state, passed=passed, config=config, http=checks.get("http"),
                               grpc=checks.get("grpc"), batching=batching, bad_requests=tuple(bad),
                               ready_after_bad_requests=ready_after)

    def _state(self, version: int) -> tuple[str, str]:
        from tritonclient.utils import InferenceServerException

        try:
            index = self.control.get_model_repository_index()
        except InferenceServerException as exc:
            if str(exc.status()) != "403":
                raise
            # A server whose model-repository API is restricted (a deployment for rollouts): readiness says enough.
            ready = self.control.is_model_ready(self.name, str(version))
            return ("READY", "") if ready else ("UNAVAILABLE", "not ready (its reason is behind the restricted API)")
        for entry in index:
            if entry.get("name") == self.name and str(entry.get("version", "")) in ("", str(version)):
                return str(entry.get("state") or "UNKNOWN"), str(entry.get("reason") or "")
        return "UNAVAILABLE", "the server does not list this model (is it the right repository?)"

    def _config_check(self) -> ConfigCheck:
        served = json_format.ParseDict(self.control.get_model_config(self.name), model_config_pb2.ModelConfig(),
                                       ignore_unknown_fields=True)
        differences = config_differences(self.config, served)
        return ConfigCheck(not differences, tuple(differences))

    def _runner(self, protocol: str, output_names: Sequence[str], concurrency: int = 1) -> TritonRunner:
        url = self.handle.http_url if protocol == "http" else self.handle.grpc_url
        return TritonRunner(url, self.name, protocol=protocol, output_names=output_names, concurrency=concurrency)

    def _parity(self, protocol: str, inputs: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                atol: float, rtol: float) -> ProtocolCheck:
        url = self.handle.http_url if protocol == "http" else self.handle.grpc_url
        return reference_check(url, self.name, protocol, inputs, expected, atol, rtol,
                               max_batch_size=self.config.max_batch_size)

    def _batching(self, version: int, inputs: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                  atol: float, rtol: float) -> BatchingCheck:
        # A pipeline (an ensemble) batches in its network: the burst goes to the ensemble, the statistics are the
        # network's.
        counted, counted_version = self._batched_model(version)
        if self.config.max_batch_size <= 1 or counted is None:
            why = "max_batch_size is 0" if self.config.max_batch_size == 0 else "no dynamic_batching in the config"
            return BatchingCheck(checked=False, passed=True, note=f"not applicable: {why}")
        protocol = "grpc" if "grpc" in self.protocols else "http"
        items = len(next(iter(inputs.values())))
        check = None
        # A very fast model can drain the queue as quickly as one client thread fills it, so a burst may show no
        # batching by chance (seen on 2 CPUs): a few more, bigger bursts settle it; each takes milliseconds.
        for count in BURST_SIZES:
            self.say(f"burst of {count} concurrent single-item requests over {protocol.upper()}")
            picks = [i % items for i in range(count)]
            feeds = [{k: v[i:i + 1] for k, v in inputs.items()} for i in picks]
            # Counted before the warm-up request: the server may count a request a moment after answering it.
            before = self._counts(counted, counted_version)
            with self._runner(protocol, list(expected), concurrency=count) as runner:
                try:
                    runner.infer(feeds[0])  # connects first, so the burst is not spread out by connection set-up
                except TritonRequestError as exc:
                    return BatchingCheck(True, False, count, note=f"a single-item request failed: {exc.server_message}")
                answers = runner.infer_many(feeds)
            after = self._counts(counted, counted_version, at_least=before[0] + count + 1)
            after = after[0] - 1, after[1] - 1  # the warm-up request ran alone: one inference, one execution
            for answer in answers:
                if isinstance(answer, TritonUnavailableError):
                    raise answer
            errors = [a for a in answers if isinstance(a, TritongenError)]
            match = not errors and all(_matches(answer, expected, item, atol, rtol)
                                       for answer, item in zip(answers, picks, strict=True))
            inferences, executions = after[0] - before[0], after[1] - before[1]
            batched = 0 < executions < inferences
            note = f"{count} requests ran as {executions} executions" + (f" of {counted}" if counted != self.name else "")
            note += f" ({inferences / executions:.1f} items each)" if batched else ": no batching seen"
            if errors:
                note += f"; {len(errors)} requests failed: {errors[0].one_line()}"
            elif not match:
                note += "; some requests got outputs that do not match their own item's reference"
            check = BatchingCheck(True, batched and match, count, inferences, executions, match, note)
            if batched or errors or not match:
                break
        assert check is not None
        return check

    def _batched_model(self, version: int) -> tuple[str | None, int]:
        """The model whose statistics show the batching of requests sent to this one, and its version: this model
        when it has a dynamic batcher; for a pipeline's ensemble, its network; else None."""
        if self.config.HasField("dynamic_batching"):
            return self.name, version
        if self.config.platform != "ensemble":
            return None, version
        try:
            network = read_manifest(self.model_dir / str(version)).get("pipeline", {}).get("model")
        except TritongenError:
            network = None
        versions = versions_of(self.model_dir.parent / network) if network else []
        return (network, versions[-1]) if versions else (None, version)

    def _counts(self, model: str, version: int, at_least: int = 0) -> tuple[int, int]:
        """(inferences, executions) of `model` so far; waits briefly for `at_least` inferences, as the server may
        count a request a moment after answering it."""
        deadline = time.monotonic() + STATS_SETTLE_S
        while True:
            stats = self.control.get_inference_statistics(model, str(version))
            entry = next((e for e in stats.get("model_stats", []) if e.get("name") == model), {})
            counts = int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0))
            if counts[0] >= at_least or time.monotonic() > deadline:
                return counts
            time.sleep(0.02)

    def _pipeline_kind(self) -> str | None:
        """text | image for a pipeline's ensemble or pre-processing step (which take raw inputs), else None."""
        versions = versions_of(self.model_dir)
        try:
            pipeline = read_manifest(self.model_dir / str(versions[-1])).get("pipeline") if versions else None
        except TritongenError:
            pipeline = None
        if not pipeline or pipeline.get("role") not in ("ensemble", "preprocess"):
            return None
        return str(pipeline.get("kind"))

    def _bad_requests(self, protocol: str, inputs: dict[str, np.ndarray]) -> list[BadRequestCheck]:
        checks = []
        with self._runner(protocol, []) as runner:
            for case, feeds in bad_feeds(inputs, self.config.max_batch_size, self._pipeline_kind()).items():
                try:
                    runner.infer(feeds)
                except TritonRequestError as exc:
                    checks.append(BadRequestCheck(case, protocol, bool(exc.server_message), exc.server_message,
                                                  exc.status))
                    continue
                checks.append(BadRequestCheck(case, protocol, False, None))
        return checks


def reference_check(url: str, model: str, protocol: str, inputs: dict[str, np.ndarray],
                    expected: dict[str, np.ndarray], atol: float, rtol: float, version: str = "",
                    max_batch_size: int = 0) -> ProtocolCheck:
    """Send `inputs` to `model` (a `version` of it, or the one the server picks) over `protocol`, in requests of at
    most `max_batch_size` items (a pipeline keeps more raw inputs than one request may hold), and compare the answers
    with `expected` at the tolerance; a refused request is a failed check with the server's words."""
    try:
        with TritonRunner(url, model, protocol=protocol, version=version, output_names=list(expected)) as runner:
            answers = [runner.infer(feeds) for feeds in _requests(inputs, max_batch_size)]
    except TritonRequestError as exc:
        return ProtocolCheck(protocol, False, error=exc.server_message)
    actual = {name: np.concatenate([a[name] for a in answers]) for name in expected if name in answers[0]}
    outputs = tuple(compare_outputs(actual, expected, atol, rtol).values())
    return ProtocolCheck(protocol, all(o.passed for o in outputs), outputs)


def reference_of(version_dir: Path, config: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float, float]:
    """A version's saved reference inputs and PyTorch outputs, shaped as `config`'s dims say, and the tolerance
    (atol, rtol) its build checked parity with."""
    inputs, expected = load_reference(version_dir)
    batched = config.max_batch_size > 0
    atol, rtol = _tolerance(version_dir)
    return as_config_dims(inputs, config.input, batched), as_config_dims(expected, config.output, batched), atol, rtol


def _matches(answer: Any, expected: dict[str, np.ndarray], item: int, atol: float, rtol: float) -> bool:
    """Whether one burst answer is its own item's reference output (not a neighbour's, after splitting a batch)."""
    own = {k: v[item:item + 1] for k, v in expected.items()}
    return isinstance(answer, dict) and all(p.passed for p in compare_outputs(answer, own, atol, rtol).values())


def as_config_dims(arrays: dict[str, np.ndarray], tensors: Any, batched: bool) -> dict[str, np.ndarray]:
    """Arrays of tensors that have a `reshape` in the config, shaped as `dims` says (a per-item scalar: [1])."""
    reshaped = dict(arrays)
    for tensor in tensors:
        if tensor.HasField("reshape") and tensor.name in arrays:
            array = arrays[tensor.name]
            reshaped[tensor.name] = array.reshape(((len(array),) if batched else ()) + tuple(tensor.dims))
    return reshaped


def bad_feeds(inputs: Mapping[str, np.ndarray], max_batch_size: int,
              pipeline: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Requests the server must refuse, made from valid reference inputs by breaking one thing each. A pipeline's
    raw input (`pipeline`: text | image) also gets an empty batch, and bytes that are not UTF-8 text or an image."""
    batched = max_batch_size > 0
    one = {k: v[:1] for k, v in inputs.items()} if batched else dict(inputs)
    first, array = next(iter(one.items()))
    if array.dtype == object:  # byte strings: a number instead of a string
        wrong = np.zeros(array.shape, dtype=np.float32)
    else:
        wrong_type = np.float32 if array.dtype == np.float64 or not np.issubdtype(array.dtype, np.floating) \
            else np.float64
        wrong = array.astype(wrong_type)
    cases = {
        "wrong dtype": {**one, first: wrong},
        # An extra trailing axis of 2 breaks the rank, or the size of a per-item scalar written as dims [1].
        "wrong shape": {**one, first: np.repeat(array[..., np.newaxis], 2, axis=-1)},
        # Renamed rather than added, so the input count is right and only the name is wrong.
        "unknown input name": {UNKNOWN_INPUT if k == first else k: v for k, v in one.items()},
    }
    if batched:
        cases["batch above max_batch_size"] = {k: np.repeat(v, max_batch_size + 1, axis=0) for k, v in one.items()}
    if pipeline is not None and batched:
        cases["empty batch"] = {k: v[:0] for k, v in one.items()}
        junk = b"\xff\xfe not UTF-8" if pipeline == "text" else b"this is text, not the bytes of an image"
        cases["not UTF-8 text" if pipeline == "text" else "bytes that are not an image"] = {
            **one, first: np.array([[junk]], dtype=object).reshape(array.shape)}
    return cases


def _requests(inputs: dict[str, np.ndarray], max_batch_size: int) -> list[dict[str, np.ndarray]]:
    """The reference inputs in requests of at most `max_batch_size` items (a pipeline keeps more raw inputs)."""
    items = len(next(iter(inputs.values()))) if inputs else 0
    if max_batch_size <= 0 or items <= max_batch_size:
        return [inputs]
    return [{k: v[i:i + max_batch_size] for k, v in inputs.items()} for i in range(0, items, max_batch_size)]


def config_differences(expected: Any, served: Any, path: str = "") -> list[str]:
    """Fields set in `expected` whose value differs on `served`; fields only the server set are Triton's defaults."""
    differences: list[str] = []
    for fd, value in expected.ListFields():
        where = f"{path}{fd.name}"
        other = getattr(served, fd.name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_is_message = fd.message_type.fields_by_name["value"].message_type is not None
            for key in value:
                if key not in other:
                    differences.append(f"{where}[{key!r}] is missing on the server")
                elif value_is_message:
                    differences += config_differences(value[key], other[key], f"{where}[{key!r}].")
                elif value[key] != other[key]:
                    differences.append(f"{where}[{key!r}]: wrote {value[key]!r}, server has {other[key]!r}")
        elif fd.is_repeated and fd.message_type is not None:
            if len(value) != len(other):
                differences.append(f"{where}: wrote {len(value)} entries, server has {len(other)}")
            else:
                for i, (a, b) in enumerate(zip(value, other, strict=True)):
                    differences += config_differences(a, b, f"{where}[{i}].")
        elif fd.message_type is not None:
            differences += config_differences(value, other, f"{where}.")
        elif (list(value) if fd.is_repeated else value) != (list(other) if fd.is_repeated else other):
            differences.append(f"{where}: wrote {_show(fd, value)}, server has {_show(fd, other)}")
    return differences


def _show(fd: Any, value: Any) -> str:
    if fd.enum_type is not None:
        names = fd.enum_type.values_by_number
        return str([names[v].name for v in value]) if fd.is_repeated else names[value].name
    return str(list(value)) if fd.is_repeated else repr(value)


def _tolerance(version_dir: Path) -> tuple[float, float]:
    """The tolerances `build` checked parity with (kept in the manifest)."""
    try:
        tolerance = read_manifest(version_dir).get("tolerance", {})
    except TritongenError:
        tolerance = {}
    return float(tolerance.get("atol", DEFAULT_ATOL)), float(tolerance.get("rtol", DEFAULT_RTOL))


def _server_gone(handle: ServerHandle, model: str, step: str) -> TritongenError:
    return handle.failure(f"while validating model '{model}' ({step})",
                          "see the server log below; rerun when the server is stable")
