"""Which version each rollout replaced, so `rollback` knows where to go back to.

Kept in `<repository>/.tritongen-rollouts.json` (a file at the repository root, which Triton ignores), one list of
switches per model, newest last.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tritongen.repository import write_text_atomic

HISTORY_FILE = ".tritongen-rollouts.json"


def read_history(repository: Path) -> dict[str, list[dict[str, Any]]]:
    path = Path(repository) / HISTORY_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, list)} if isinstance(data, dict) else {}


def record_switch(repository: Path, model: str, from_version: int | None, to_version: int, url: str,
                  kind: str) -> str | None:
    """Append one switch; returns why it could not be recorded (a read-only repository), else None."""
    history = read_history(repository)
    history.setdefault(model, []).append({"from": from_version, "to": to_version, "kind": kind, "url": url,
                                          "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    try:
        write_text_atomic(Path(repository) / HISTORY_FILE, json.dumps(history, indent=2) + "\n")
    except OSError as exc:
        return f"the switch was not recorded in {Path(repository) / HISTORY_FILE} ({exc.strerror})"
    return None


def previous_version(repository: Path, model: str, serving: int, available: list[int]) -> tuple[int | None, str]:
    """The version to roll back to from `serving`, and how it was chosen: the one the last rollout to `serving`
    replaced, else the newest version below it."""
    for entry in reversed(read_history(repository).get(model, [])):
        if entry.get("to") == serving and entry.get("kind") == "rollout" and entry.get("from") in available:
            return int(entry["from"]), f"the version rollout replaced at {entry.get('at')}"
    older = [v for v in available if v < serving]
    if older:
        return older[-1], f"no rollout to version {serving} is recorded: the newest version below it"
    return None, f"no rollout to version {serving} is recorded and no older version exists"
