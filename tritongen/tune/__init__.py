"""`tune`: search instance count and batching settings on the real server, and write the best config back.

- `trial.py`: `TrialConfig`, the settings searched, read from and applied to a config proto
- `search.py`: `Trials` (measure each config once, judge it) and `search`, hill climbing over an evaluate callable
- `confirm.py`: `confirm`, the winner measured again alternately with the start; kept only if it wins every round
- `run.py`: `tune_model` on a real server (reloads between trials), `TuneReport`
- `writeback.py`: `write_tuned_config` (atomic, with a backup) and the validation of what was written

Settings that mean the same to the server (an explicit thread count equal to the one the runner picks itself) are
one config: measured once, and never a "gain".
"""

from tritongen.tune.confirm import CONFIRM_ROUNDS, Confirmation, confirm, judge_rounds
from tritongen.tune.run import (
    DEFAULT_CONCURRENCIES,
    DEFAULT_DURATION_S,
    DEFAULT_MAX_TRIALS,
    DEFAULT_TIME_LIMIT_S,
    ServerMeasure,
    TuneReport,
    runner_default_threads,
    tune_model,
)
from tritongen.tune.search import MIN_GAIN, Trial, Trials, better, combined, judge, search, search_axes, with_value
from tritongen.tune.trial import THREAD_KEYS, TrialConfig
from tritongen.tune.writeback import validate_written, write_tuned_config

__all__ = [
    "CONFIRM_ROUNDS", "Confirmation", "DEFAULT_CONCURRENCIES", "DEFAULT_DURATION_S", "DEFAULT_MAX_TRIALS",
    "DEFAULT_TIME_LIMIT_S", "MIN_GAIN", "THREAD_KEYS", "ServerMeasure", "Trial", "TrialConfig", "Trials", "TuneReport",
    "better", "combined", "confirm", "judge", "judge_rounds", "runner_default_threads", "search", "search_axes",
    "tune_model", "validate_written", "with_value", "write_tuned_config",
]
