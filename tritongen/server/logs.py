"""Reading a Triton server log: the lines that explain a failure, without the noise of a CPU-only machine."""

from __future__ import annotations

import re

# Log lines that are errors in form but harmless on a CPU-only machine.
NOISE = re.compile(r"CudaDriverHelper|NVML|DCGM|pinned memory|CUDA driver|cuda_memory_manager|GPU metrics", re.I)
# What a process prints when it dies of an uncaught C++ exception or a fatal signal: the cause of an abort.
FATAL = re.compile(r"^(terminate called|what\(\):|Signal \(\d+\) received|Segmentation fault|Aborted|"
                   r"Killed|.*std::bad_alloc)", re.I)
_LOG_PREFIX = re.compile(r"^[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ")
_STACK_FRAME = re.compile(r"^\d+# ")
TRITONGEN_NOTE = "[tritongen]"  # lines tritongen itself appends to a log (how the process ended)


def relevant_log_lines(log: str, limit: int = 12) -> list[str]:
    """The lines of a server log that explain a failure: errors, failed loads and fatal lines (an uncaught
    `std::bad_alloc`, a signal), without CPU-only noise or stack frames."""
    picked: list[str] = []
    for raw in log.splitlines():
        line = raw.strip()
        is_error = line.startswith("E") and _LOG_PREFIX.match(line)
        if not (is_error or "failed to load" in line or line.startswith(("error:", TRITONGEN_NOTE))
                or "Failed to initialize Python stub" in line or "Failed to preinitialize Python stub" in line
                or "Unable to find backend" in line or FATAL.match(line)):
            continue
        if NOISE.search(line) or _STACK_FRAME.match(line):
            continue
        text = _LOG_PREFIX.sub("", line).strip().strip('"')
        # Triton escapes a Python traceback into one quoted line; keep the message, drop the frame list.
        text = text.split("\\n\\nAt:")[0].replace("\\n", " ").strip()
        if text and text not in picked:
            picked.append(text)
    return picked[-limit:]


def start_failure_reason(lines: list[str]) -> tuple[str, bool]:
    """The line that best says why a server did not start, and whether it names a model to fix.

    Best first: a model that failed to load (with its version), a directory Triton could not read as a model, any
    load failure, a fatal line; "failed to load all models" alone says nothing, so it comes last.
    """
    for pattern, names_model in ((r"failed to load '.+' version", True), (r"Poll failed for model directory", True),
                                 (r"failed to load '", True), (r"Failed to", True)):
        found = [line for line in lines if re.search(pattern, line)]
        if found:
            return found[0], names_model
    fatal = [line for line in lines if FATAL.match(line)]
    others = [line for line in lines if not line.startswith(TRITONGEN_NOTE)]
    return (fatal or others or lines or ["the log has no error lines"])[0], False


def tail(log: str, lines: int = 20) -> str:
    """The last lines of a log (without CPU-only noise), for errors where no line stands out."""
    kept = [line for line in log.strip().splitlines() if not NOISE.search(line)]
    return "server log (last lines):\n  " + "\n  ".join(kept[-lines:])
