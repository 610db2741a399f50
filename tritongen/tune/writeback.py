"""Writing a tuned config back: atomically, the previous file kept as a backup, rendered like `build` where it can
be, checked against the ONNX graph first, and validated on a real server afterwards (put back if that fails)."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tritongen.bench import model_spec
from tritongen.errors import CheckFailed, TritongenError
from tritongen.tune.trial import TrialConfig

Progress = Callable[[str], None]


def write_tuned_config(model_dir: Path, tuned: TrialConfig, note: str = "") -> tuple[Path, Path]:
    """Replace `<model>/config.pbtxt` with the tuned settings, atomically, keeping the previous file as a backup.

    Only the tuned fields change. The text is rendered through the same template as `build` when the config is
    one `build` could have written, else written by protobuf; either way it parses with Triton's schema and is
    checked against the ONNX graph before anything is touched.
    """
    from tritongen.config import parse_config
    from tritongen.repository import CONFIG, backup_path, read_model_dir, write_text_atomic

    path = model_dir / CONFIG
    previous_text = path.read_text()
    current = parse_config(previous_text)
    expected = tuned.apply(current)
    backup = backup_path(path)
    header = (f"# Tuned by `tritongen tune` on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}: {tuned.describe()}"
              + (f" ({note})" if note else "") + f".\n# The previous config is kept next to this file as {backup.name}.\n")
    text = header + _config_text(model_dir, expected)
    proto = parse_config(text)
    if proto != expected:  # a rendering bug must not change what the user serves
        raise TritongenError("internal error: the tuned config does not parse back to the intended settings",
                             "please report this; nothing was written")
    onnx = read_model_dir(model_dir).artifact_path()
    if onnx is not None and onnx.suffix == ".onnx":
        from tritongen.config import check_config_against_onnx

        check_config_against_onnx(proto, onnx)
    shutil.copy2(path, backup)  # first the backup, so a crash in between loses nothing
    write_text_atomic(path, text)
    return path, backup


def _config_text(model_dir: Path, expected: Any) -> str:
    """The template's rendering when it reproduces `expected` exactly (comments and layout of `build`), else protobuf's."""
    from google.protobuf import text_format

    from tritongen.config import KINDS, ModelConfig, QueuePolicy, parse_config, render_config
    from tritongen.repository import read_manifest, versions_of

    with contextlib.suppress(TritongenError, KeyError, ValueError, TypeError, IndexError):
        versions = versions_of(model_dir)
        manifest = read_manifest(model_dir / str(versions[-1]))
        spec = replace(model_spec(model_dir, expected), max_batch_size=int(expected.max_batch_size))
        kinds = {v: k for k, v in KINDS.items()}
        from tritonclient.grpc import model_config_pb2

        kind_name = model_config_pb2.ModelInstanceGroup.Kind.Name(expected.instance_group[0].kind)
        batching = expected.dynamic_batching
        policy = batching.default_queue_policy
        intent = ModelConfig(
            name=expected.name, spec=spec, format=str(manifest.get("format", "onnx")),
            instance_count=sum(max(1, g.count) for g in expected.instance_group), kind=kinds[kind_name],
            max_queue_delay_us=int(batching.max_queue_delay_microseconds),
            preferred_batch_sizes=tuple(batching.preferred_batch_size), warmup=bool(expected.model_warmup),
            parameters={k: v.string_value for k, v in expected.parameters.items()},
            queue=QueuePolicy(max_queue_size=int(policy.max_queue_size), timeout_us=int(policy.default_timeout_microseconds),
                              timeout_action=model_config_pb2.ModelQueuePolicy.TimeoutAction.Name(
                                  policy.timeout_action).lower(),
                              allow_timeout_override=bool(policy.allow_timeout_override)),
            priority_levels=int(batching.priority_levels), response_cache=bool(expected.response_cache.enable),
            source=Path(str((manifest.get("checkpoint") or {}).get("path", "a PyTorch checkpoint"))).name)
        rendered = render_config(intent)
        if parse_config(rendered) == expected:
            return rendered
    return text_format.MessageToString(expected)


def _free_path(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}-{n}")
        n += 1
    return candidate


def validate_written(repository: Path, model: str, server: str, tritonserver: str | Path | None, image: str | None,
                      timeout_s: float | None, path: Path, backup: Path, progress: Progress) -> bool | None:
    """Run `tritongen validate` on the new config; on failure put the previous one back and keep the tuned one aside."""
    try:
        from tritongen.validate import validate_repository
    except ImportError:
        return None
    from tritongen.repository import write_text_atomic
    from tritongen.server import starts_server

    if not starts_server(server):
        _reload_from_disk(server, model)
    progress("validating the tuned config")
    report = validate_repository(repository, models=[model], server=server, tritonserver=tritonserver, image=image,
                                 timeout_s=timeout_s, on_progress=lambda msg: progress(f"validate: {msg}"))
    if report.passed:
        return True
    failures = "; ".join(f for m in report.models for f in m.failures()) or "see `tritongen validate`"
    kept = _free_path(path.with_name(f"{path.name}.tuned-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"))
    shutil.copy2(path, kept)
    write_text_atomic(path, backup.read_text())
    raise CheckFailed(f"the tuned config of '{model}' failed validation ({failures}); the previous config was put "
                      f"back, the tuned one is kept as {kept.name}", "run `tritongen validate` on it to see why")


def _reload_from_disk(url: str, model: str) -> None:
    """A server we did not start runs the last trial's config: make it read the written file."""
    import tritonclient.grpc as grpcclient

    from tritongen.server import handle_from_url

    handle = handle_from_url(url)
    client = grpcclient.InferenceServerClient(handle.grpc_url)
    try:
        client.load_model(model)
    finally:
        client.close()
