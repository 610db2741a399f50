"""One measurement window with the load generator the settings ask for: h2load where it is installed (native, a
few µs of CPU per request), else the Python asyncio generator. Both keep `concurrency` requests in flight, open and
close the window with nothing in flight, and report the generator's own CPU time."""

from __future__ import annotations

from dataclasses import replace

from tritongen.bench import h2load as tool
from tritongen.bench.nativeload import measure_with_h2load
from tritongen.bench.pyload import measure_point as measure_with_python
from tritongen.bench.report import LoadPoint
from tritongen.bench.settings import LoadSettings
from tritongen.bench.workload import Workload
from tritongen.errors import TritongenError

PYTHON_GENERATOR = "python"


def native_generator(settings: LoadSettings) -> tool.H2Load | None:
    """The native generator these settings use, or None for the Python one; an error when h2load is asked for by
    name and is not installed."""
    if settings.generator == PYTHON_GENERATOR:
        return None
    found = tool.find_h2load()
    if found is None and settings.generator == tool.NAME:
        raise TritongenError("--generator h2load: h2load is not installed", tool.INSTALL_HINT)
    return found


def describe_generator(settings: LoadSettings) -> str:
    """What drives the load, in words, for reports."""
    native = native_generator(settings)
    if native is not None:
        return native.describe(settings.protocol)
    client = "gRPC aio client" if settings.protocol == "grpc" else "HTTP aio client (aiohttp)"
    return f"python (one asyncio event loop, tritonclient's {client})"


def measure_point(url: str, workload: Workload, concurrency: int, settings: LoadSettings,
                  model: str | None = None) -> LoadPoint:
    """Keep `concurrency` requests in flight against `url`; measure one window. `model` overrides the workload's.

    A window in which h2load saw a failed request is measured again by the Python generator, which tells each
    request's outcome and error apart (h2load cannot read a gRPC status).
    """
    if model is not None and model != workload.model:  # another model (the no-op twin) has no pipeline steps
        workload = replace(workload, model=model, steps=())
    native = native_generator(settings)
    if native is not None:
        point = measure_with_h2load(native, url, workload, concurrency, settings, model)
        if point is not None:
            return point
    return measure_with_python(url, workload, concurrency, replace(settings, generator=PYTHON_GENERATOR), model)
