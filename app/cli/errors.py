"""The one error a command raises: what the user reads (what went wrong, what to do) and the exit code."""

from __future__ import annotations


class CliError(Exception):
    """`message` is printed as it is on stderr; `code` 2 means usage or configuration, 1 a failure while
    working."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
