"""`bench`: drive a served model with closed-loop load, and compare it with what ONNX Runtime does in-process.

- `report.py`: the values (`LatencyStats`, `ServerStats`, `LoadPoint`, `Ceiling`, `GeneratorCheck`, `BenchReport`)
- `workload.py`: the inputs every request carries (`Workload`, `make_workload`, `model_spec`, `--length`)
- `settings.py`: how a level is measured (`LoadSettings`) and the option checks
- `load.py`: one measurement window (`measure_point`) with the generator the settings ask for
- `h2load.py`, `requests.py`, `nativeload.py`: the native generator (Debian's h2load) replaying a request serialized
  once (gRPC or HTTP/KServe v2), and its windows, cross-checked with Triton's statistics
- `pyload.py`: the Python asyncio load generator (the fallback, and where a request's answer must be read)
- `stats.py`: Triton's statistics for a window (`server_stats`) and the machine's CPU time
- `ceiling.py`: in-process ONNX Runtime throughput of the same file (`onnx_ceiling`)
- `noop.py`: the no-op twin of a model (`write_noop_model`, templates/noop_model.py.j2)
- `run.py`: `bench_model`
- `files.py`: report.md, report.json, bench.png
"""

from tritongen.bench.ceiling import batch_sizes_to_try, instance_count, intra_op_threads, onnx_ceiling
from tritongen.bench.files import default_report_dir, plot_report, render_markdown, write_report
from tritongen.bench.load import describe_generator, measure_point, native_generator
from tritongen.bench.noop import NOOP_PREFIX, write_noop_model
from tritongen.bench.report import BenchReport, Ceiling, GeneratorCheck, LatencyStats, LoadPoint, ServerStats, json_safe
from tritongen.bench.run import bench_model, config_summary
from tritongen.bench.settings import (
    DEFAULT_CONCURRENCIES,
    DEFAULT_DURATION_S,
    DEFAULT_WARMUP_S,
    GENERATORS,
    PROTOCOLS,
    LoadSettings,
    check_settings,
    parse_concurrencies,
)
from tritongen.bench.stats import server_stats
from tritongen.bench.workload import Workload, make_workload, model_spec, parse_lengths, spec_from_manifest
from tritongen.spec import spec_from_config

__all__ = [
    "DEFAULT_CONCURRENCIES", "DEFAULT_DURATION_S", "DEFAULT_WARMUP_S", "GENERATORS", "NOOP_PREFIX", "PROTOCOLS",
    "BenchReport", "describe_generator", "native_generator",
    "Ceiling", "GeneratorCheck", "LatencyStats", "LoadPoint", "LoadSettings", "ServerStats", "Workload",
    "batch_sizes_to_try", "bench_model", "check_settings", "config_summary", "default_report_dir", "instance_count",
    "intra_op_threads", "json_safe", "make_workload", "measure_point", "model_spec", "onnx_ceiling",
    "parse_concurrencies", "parse_lengths", "plot_report", "render_markdown", "server_stats", "spec_from_config",
    "spec_from_manifest", "write_noop_model", "write_report",
]
