"""The one error type users see: a message that names the problem and the fix."""

from __future__ import annotations


class TritongenError(Exception):
    """An error caused by the user's input or environment, printed as one line without a traceback.

    `message` says what is wrong (with the value seen); `hint` says what to do about it.
    """

    def __init__(self, message: str, hint: str | None = None, *, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Extra lines (a server log excerpt, a table of mismatches) shown after the one-line message.
        self.details = details

    def one_line(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message

    def __str__(self) -> str:
        return self.one_line()


class CheckFailed(TritongenError):
    """A check ran and failed (parity, validation): exit code 1 rather than 2 for bad input."""

    exit_code = 1


def stop_if_interrupted(exc: BaseException) -> None:
    """Raise KeyboardInterrupt when `exc` came from one: torch has turned an interrupt into another error before.

    Both links of every exception are followed (`__cause__` and `__context__`), however deep.
    """
    pending, seen = [exc], set()
    while pending:
        cur = pending.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, KeyboardInterrupt):
            raise KeyboardInterrupt from exc
        pending += [e for e in (cur.__cause__, cur.__context__) if e is not None]
