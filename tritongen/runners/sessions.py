"""ONNX Runtime sessions as tritongen runs them everywhere: one options builder, one threads-per-instance rule.

Used by the ONNX Runtime runner (parity, fidelity, speed), the bench ceiling, the precision probe, and rendered
as it is into every python-format model.py (templates/model.py.j2), which runs where tritongen is not installed:
this file imports only the standard library, and onnxruntime inside the functions that need it.
"""

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

# Config parameters that set the threads per instance: ours, and the onnxruntime backend's key, so that one
# config means the same on both.
THREAD_PARAMETERS = ("intra_op_num_threads", "intra_op_thread_count")
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
OPTIMIZATION_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC",
                       "none": "ORT_DISABLE_ALL"}


def cgroup_cpu_limit(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> float | None:
    """CPUs this process's cgroup quota allows (Docker --cpus, Kubernetes CPU limits), or None when unlimited.

    cgroup v2: `cpu.max` ("QUOTA PERIOD" or "max PERIOD") of this process's cgroup and each parent; cgroup v1:
    `cpu.cfs_quota_us` / `cpu.cfs_period_us`. The smallest quota found wins.
    """
    limits = []
    for directory in _cgroup_dirs(root, proc_cgroup):
        try:
            with open(os.path.join(directory, "cpu.max")) as f:
                quota, _, period = f.read().strip().partition(" ")
            if quota != "max" and float(period or 100000) > 0:
                limits.append(float(quota) / float(period or 100000))
            continue
        except (OSError, ValueError):
            pass
        try:
            with open(os.path.join(directory, "cpu.cfs_quota_us")) as f:
                quota_us = float(f.read().strip())
            with open(os.path.join(directory, "cpu.cfs_period_us")) as f:
                period_us = float(f.read().strip())
            if quota_us > 0 and period_us > 0:
                limits.append(quota_us / period_us)
        except (OSError, ValueError):
            pass
    return min(limits) if limits else None


def _cgroup_dirs(root: str, proc_cgroup: str) -> list[str]:
    """This process's cgroup directory and its parents, up to the mount point: v2 (unified) or v1's cpu controller."""
    mounts = []
    try:
        with open(proc_cgroup) as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controllers == "":  # v2
                    mounts.append((root, path))
                elif "cpu" in controllers.split(","):  # v1, mounted as cpu or cpu,cpuacct
                    v1 = os.path.join(root, "cpu")
                    mounts.append((v1 if os.path.isdir(v1) else os.path.join(root, controllers), path))
    except (OSError, ValueError):
        pass
    dirs = []
    for base, path in mounts:
        parts = [p for p in path.split("/") if p]
        dirs += [os.path.join(base, *parts[:depth]) for depth in range(len(parts), -1, -1)]
    return dirs or [root]


def usable_cpus(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> int:
    """CPUs this process may use: its CPU affinity, capped by the cgroup quota (rounded down, at least 1).

    A quota of 1.5 CPUs gives 1: threads beyond the quota are throttled, which costs more than half a CPU left idle.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root, proc_cgroup)
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit)))
    return max(1, cpus)


def instance_total(counts: Iterable[int]) -> int:
    """Instances of a model from its instance groups' counts (a count of 0 is Triton's default, 1)."""
    return sum(max(1, int(c)) for c in counts) or 1


def intra_op_threads(parameters: Mapping[str, str], instances: int, cpus: int | None = None) -> int:
    """Threads per instance: a thread parameter of the config where set, else the usable CPUs shared among instances.

    `parameters` maps config parameter names to their string values. Requests already run in parallel across
    instances, so each instance gets its share of the CPUs rather than all of them.
    """
    for key in THREAD_PARAMETERS:
        value = str(parameters.get(key, "") or "").strip()
        if value.isdigit():
            return max(1, int(value))
    return max(1, (cpus or usable_cpus()) // max(1, int(instances)))


def session_options(ort: Any, threads: int, optimization: str = "all") -> Any:
    """SessionOptions for one instance: `threads` intra-op threads, one inter-op thread, no spinning, errors only."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    # Requests are already parallel across instances; a second thread pool per instance only oversubscribes.
    options.inter_op_num_threads = 1
    # Idle ORT threads spin by default, taking CPU from other instances, tritonserver and the stub's IPC:
    # measured on a small CNN at concurrency 16 on 2 cores, 1,942 inf/s spinning vs 2,241 without.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
    options.log_severity_level = 3  # errors only: warnings about unused initializers are noise
    return options


def cpu_session(path: str | os.PathLike[str], threads: int, optimization: str = "all") -> Any:
    """An ONNX Runtime CPU session of the model at `path`, set up by `session_options`."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(ort, threads, optimization),
                                providers=["CPUExecutionProvider"])
