"""Defaults a user sees on the command line, defined once: the library's option types and the CLI both read them.

This module imports nothing, so the CLI can show these values in --help without loading torch or numpy.
"""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path("model_repository")
MAX_BATCH_SIZE = 32  # the largest batch Triton forms
INSTANCES = 1
MAX_QUEUE_DELAY_US = 100  # how long the dynamic batcher waits to fill a batch
MAX_QUEUE_SIZE = 0  # requests allowed to wait in a model's queue (0: no limit)
QUEUE_TIMEOUT_US = 0  # how long a request may wait in the queue (0: no limit)
AXIS_LENGTHS = (8, 16)  # the two lengths a dynamic axis is exported and checked at
TRT_WORKSPACE_MB = 4096  # TensorRT builder workspace limit
CALIBRATION_ITEMS = 512  # at most this many INT8 calibration items are used

# bench: load levels, the measurement window and the warmup before the first level
BENCH_CONCURRENCIES = (1, 2, 4, 8, 16, 32)
BENCH_DURATION_S = 5.0
BENCH_WARMUP_S = 2.0
# tune: load levels and window per trial, and its budgets
TUNE_CONCURRENCIES = (4, 16, 32)
TUNE_DURATION_S = 2.0
TUNE_MAX_TRIALS = 20
TUNE_TIME_LIMIT_S = 600.0
