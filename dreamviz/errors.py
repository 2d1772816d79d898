"""Exceptions with one-line messages that name the fix (layer 0: imports nothing from dreamviz).

The CLI prints the message on one line and exits with ``error.exit_code``: 2 for usage errors (a
bad name, value or path the user typed), 1 for other failures.

Messages name the *argument* to change with :func:`arg`, never a command-line flag: a Python
caller reads ``lower lr`` or ``weights=PATH``, and the CLI, which alone knows its flags, shows the
same message as ``lower --lr`` or ``--weights PATH`` (:meth:`DreamvizError.for_cli`).
"""

from __future__ import annotations

import difflib
import numbers
import re
from collections.abc import Iterable, Mapping

_ARG = re.compile(r"\x02([A-Za-z_][A-Za-z0-9_]*)(?:=([^\x03]*))?\x03")


def arg(name: str, value: str | None = None) -> str:
    """Mark an API argument (and optionally a value for it) inside an error message.

    ``arg("lr")`` reads ``lr`` from Python and ``--lr`` on the command line;
    ``arg("weights", "PATH")`` reads ``weights=PATH`` and ``--weights PATH``.
    """
    return f"\x02{name}\x03" if value is None else f"\x02{name}={value}\x03"


def _python(m: re.Match) -> str:
    name, value = m.group(1), m.group(2)
    return name if value is None else f"{name}={value}"


def cli_text(message: str, flags: Mapping[str, str] | None = None) -> str:
    """A message with its :func:`arg` marks written as command-line flags: ``flags`` maps an
    argument to its flag where the two differ (``param_kind`` -> ``--param``); otherwise
    ``some_name`` becomes ``--some-name``. Quotes around a value are dropped."""
    flags = flags or {}

    def sub(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        flag = flags.get(name) or "--" + name.replace("_", "-")
        return flag if value is None else f"{flag} {value.strip(chr(39) + chr(34))}"

    return _ARG.sub(sub, message)


class DreamvizError(Exception):
    """A failure that is reported to the user as one line, without a traceback."""

    exit_code = 1

    def __str__(self) -> str:
        return _ARG.sub(_python, super().__str__())

    def for_cli(self, flags: Mapping[str, str] | None = None) -> str:
        """The message as the command line shows it (see :func:`cli_text`)."""
        return cli_text(super().__str__(), flags)


class UsageError(DreamvizError, ValueError):
    """The user asked for something that does not exist or is out of range."""

    exit_code = 2


class NonFiniteError(DreamvizError, FloatingPointError):
    """The optimization produced NaN or inf. ``last_good`` holds the last finite images."""

    def __init__(self, message: str, last_good=None, step: int | None = None):
        super().__init__(message)
        self.last_good = last_good
        self.step = step


class DreamvizWarning(UserWarning):
    """A warning that may name arguments with :func:`arg`, shown like an error's message:
    ``lower lr`` from Python, ``lower --lr`` on the command line (:meth:`for_cli`)."""

    def __str__(self) -> str:
        return _ARG.sub(_python, super().__str__())

    def for_cli(self, flags: Mapping[str, str] | None = None) -> str:
        return cli_text(super().__str__(), flags)


def shown(value) -> str:
    """A value as one short line for a message: its repr, or its type (and shape) if long."""
    text = repr(value)
    if len(text) <= 60 and "\n" not in text:
        return text
    shape = getattr(value, "shape", None)
    return type(value).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "")


def is_integer(value) -> bool:
    """Whether ``value`` is an integer (numpy's included), not a bool: the one type test."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(
    name: str,
    value,
    lo: int | None = None,
    hi: int | None = None,
    *,
    auto: bool = False,
    what: str = "",
) -> int | str:
    """The one integer check: ``value`` as an int in ``[lo, hi]`` (either end may be open),
    or, with ``auto``, the string ``"auto"``. A bool or a float
    is no integer; numpy integers are. Anything else is a usage error naming the argument
    ``name`` (``what``, e.g. "images to make", is said after the range)."""
    if auto and isinstance(value, str) and value == "auto":
        return "auto"
    if is_integer(value) and (lo is None or value >= lo) and (hi is None or value <= hi):
        return int(value)
    if lo is not None and hi is not None:
        need = f"an integer in {lo}..{hi}"
    elif lo is not None:
        need = f"an integer >= {lo}"
    else:
        need = "an integer" if hi is None else f"an integer <= {hi}"
    need += " or 'auto'" if auto else ""
    note = f" ({what})" if what else ""
    raise UsageError(f"{arg(name)} must be {need}{note}, got {shown(value)}")


def split_list(text: str, name: str, example: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``. An empty entry (``"a,,b"``, ``"a,"``, ``""``) is a
    usage error naming the argument ``name``, never dropped: it is a typo, not a default."""
    items = [t.strip() for t in str(text).split(",")]
    if not all(items):
        what = "is empty" if not any(items) else "has an empty entry"
        raise UsageError(f"{arg(name)} {str(text)!r} {what}; write e.g. {example}")
    return items


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' (did you mean: a, b?)' for the closest matches, or ''."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:
        lowered = name.lower()
        close = [c for c in choices if lowered and lowered in c.lower()][:n]
    return f" (did you mean: {', '.join(close)}?)" if close else ""
