"""What `validate` reports: per model, each check and its outcome; for the run, whether everything passed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tritongen.jsonsafe import json_safe
from tritongen.verify import OutputParity


@dataclass(frozen=True)
class ConfigCheck:
    """Every field we wrote has the same value on the server (fields Triton fills in itself are not compared)."""

    passed: bool
    differences: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProtocolCheck:
    """Reference inputs sent over one protocol; each output compared with PyTorch's."""

    protocol: str
    passed: bool
    outputs: tuple[OutputParity, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class BatchingCheck:
    """A burst of concurrent single-item requests, and what the server's statistics say it did with them."""

    checked: bool
    passed: bool
    requests: int = 0
    inferences: int = 0  # items the server ran (from its statistics)
    executions: int = 0  # model executions: fewer than inferences means requests were batched together
    outputs_match: bool = True  # every request got its own item's answer back
    note: str | None = None


@dataclass(frozen=True)
class BadRequestCheck:
    case: str
    protocol: str
    passed: bool  # refused with an error message
    server_error: str | None
    status: str | None = None  # the server's status for it: HTTP 400 or gRPC INVALID_ARGUMENT for a client error


@dataclass(frozen=True)
class ModelValidation:
    name: str
    version: int | None
    state: str  # READY, UNAVAILABLE, SKIPPED, ... (the server's word where it has one)
    served_by: str | None
    passed: bool
    config: ConfigCheck | None = None
    http: ProtocolCheck | None = None
    grpc: ProtocolCheck | None = None
    batching: BatchingCheck | None = None
    bad_requests: tuple[BadRequestCheck, ...] = ()
    ready_after_bad_requests: bool | None = None
    skipped_reason: str | None = None
    problem: str | None = None  # why the checks could not run (not loaded, no reference data)

    def failures(self) -> list[str]:
        """One phrase per failed check, for the human summary."""
        out = [self.problem] if self.problem else []
        if self.skipped_reason:
            out.append(f"skipped: {self.skipped_reason}")
        if self.config and not self.config.passed:
            out.append("served config differs: " + "; ".join(self.config.differences))
        for check in (self.http, self.grpc):
            if check and not check.passed:
                wrong = [f"{o.name} {o.problem or f'max abs err {o.max_abs_err:.3g}'}" for o in check.outputs
                         if not o.passed]
                out.append(f"{check.protocol}: " + (check.error or "; ".join(wrong)))
        if self.batching and not self.batching.passed:
            out.append(f"batching: {self.batching.note}")
        out += [f"bad request '{b.case}' over {b.protocol} was accepted" for b in self.bad_requests if not b.passed]
        if self.ready_after_bad_requests is False:
            out.append("the server or model was not READY after the bad requests")
        return out


@dataclass(frozen=True)
class ValidationReport:
    server: str
    models: tuple[ModelValidation, ...] = field(default_factory=tuple)
    # Entries that would stop a real tritonserver started on the repository (each with its fix).
    repository_problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Every model passed and the repository is one a real server starts on; a skipped model does not pass."""
        return bool(self.models) and all(m.passed for m in self.models) and not self.repository_problems

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"ok": True, "server": self.server, "passed": self.passed,
                          "repository_problems": list(self.repository_problems),
                          "models": [asdict(m) for m in self.models]})
