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
