"""Exceptions with one-line messages that name the fix.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``:
2 for usage errors (a bad name, value or path the user typed), 1 for other failures.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DreamvizError(Exception):
    """A failure that is reported to the user as one line, without a traceback."""

    exit_code = 1


class UsageError(DreamvizError, ValueError):
    """The user asked for something that does not exist or is out of range."""

    exit_code = 2


class NonFiniteError(DreamvizError, FloatingPointError):
    """The optimization produced NaN or inf. ``last_good`` holds the last finite images."""

    def __init__(self, message: str, last_good=None, step: int | None = None):
        super().__init__(message)
        self.last_good = last_good
        self.step = step


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' (did you mean: a, b?)' for the closest matches, or ''."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:
        lowered = name.lower()
        close = [c for c in choices if lowered and lowered in c.lower()][:n]
    return f" (did you mean: {', '.join(close)}?)" if close else ""
