"""Zero-downtime version switches on a running Triton (explicit model control): `rollout(repository, model, version,
url)` validates version N on the live server beside the serving one, then switches; `rollback(...)` goes back.

| module | holds |
| --- | --- |
| `switch.py` | `rollout`, `rollback`, `RolloutReport`: the candidate, its validation, the switch, the check after it |
| `control.py` | `ModelControl`: Triton's model-repository API with the admin key of a restricted API |
| `history.py` | the switches made, so a rollback knows the version to go back to |
"""

from tritongen.rollout.control import ModelControl, admin_key, rollout_flags
from tritongen.rollout.history import HISTORY_FILE, previous_version, read_history
from tritongen.rollout.switch import RolloutReport, rollback, rollout

__all__ = ["HISTORY_FILE", "ModelControl", "RolloutReport", "admin_key", "previous_version", "read_history", "rollback",
           "rollout", "rollout_flags"]
