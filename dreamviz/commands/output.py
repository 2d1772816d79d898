"""Where the commands write, checked before any work: one rule for every command.

A command calls :func:`file` for each ``-o FILE`` it will write and :func:`folder` for an
``--out DIR``, before it loads a model or reads an image. Each refuses, in one line naming the
path and the fix:

* an empty name; a file name that is a folder, or a folder name that is a file;
* a suffix the command cannot write (it writes the format its suffix names, as Pillow does,
  so ``x.bmp`` is refused rather than filled with PNG bytes);
* a folder it cannot create or write into (probed by creating a file there and removing it:
  permission bits say nothing to root, nor on a read-only mount);
* a name longer than the file system allows (the temporary name beside it included).

Nothing is created by the checks: a folder that does not exist yet is made when the first file
is written into it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError

#: what the atomic writer (dreamviz.io.atomic_path) adds to a name for its temporary file
_TEMP_EXTRA = len(".") + len(".") + 8 + len(".tmp")


def _empty(flag: str, example: str) -> UsageError:
    return UsageError(f"{flag} is empty; give a name such as {example}")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _writable(target: Path, flag: str, shown: str) -> None:
    """``target`` (a folder, existing or not) can be made and written into."""
    missing: list[str] = []
    here = target
    while not here.exists():
        if here.is_symlink():  # a dangling link: writing through it would fail later
            raise UsageError(f"{flag} {shown}: {here} is a broken link; remove it or pick another")
        missing.append(here.name)
        if here.parent == here:
            break
        here = here.parent
    if not here.is_dir():
        raise UsageError(f"{flag} {shown}: {here} is a file, not a folder; pick another path")
    limit = _name_max(here)
    for name in missing:
        if len(os.fsencode(name)) > limit:
            raise UsageError(
                f"{flag} {shown}: the name {name[:24]}... is too long (at most {limit} bytes)"
            )
    try:
        fd, probe = tempfile.mkstemp(prefix=".dreamviz-", suffix=".probe", dir=here)
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UsageError(
            f"{flag} {shown}: cannot write in {here} ({why}); pick a folder you can write to"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _path(text, flag: str, example: str) -> Path:
    text = os.fspath(text) if text is not None else ""
    if not str(text).strip():
        raise _empty(flag, example)
    if "\x00" in str(text):
        raise UsageError(f"{flag} {text!r} holds a NUL byte; give a plain file name")
    path = Path(text)
    for part in path.parts:  # before any stat: a long name makes stat itself fail
        if len(os.fsencode(part)) + _TEMP_EXTRA > 255:
            raise UsageError(f"{flag} {part[:24]}...: the name is too long; shorten it")
    return path


def _checked(check):
    """A check whose file-system calls fail (a loop of links, no permission to look) says
    so in one line naming the path."""

    def run(text, flag: str, *args, **kwargs) -> Path:
        try:
            return check(text, flag, *args, **kwargs)
        except OSError as e:
            why = e.strerror or type(e).__name__
            raise UsageError(f"{flag} {text}: {why}; pick another path") from None

    run.__doc__, run.__name__ = check.__doc__, check.__name__
    return run


@_checked
def file(
    text, flag: str, suffixes: Sequence[str], what: str = "", folder_flag: str | None = None
) -> Path:
    """Check ``-o FILE``: a file name (not a folder) with one of ``suffixes`` (lower case,
    with the dot; the first is the one suggested) in a folder that can be written.
    ``what`` says why those suffixes (e.g. "the recipe lives in the PNG"); ``folder_flag``
    is the command's option for a folder, suggested when ``text`` names one."""
    example = f"out{suffixes[0]}"
    path = _path(text, flag, example)
    shown = str(text)
    if str(text).endswith(("/", os.sep)) or path.is_dir():
        other = f" (or {folder_flag} {shown} for a folder)" if folder_flag else ""
        raise UsageError(
            f"{flag} {shown} is a folder; give a file name such as {path / example}{other}"
        )
    if path.suffix.lower() not in suffixes:
        why = f" ({what})" if what else ""
        listed = ", ".join(suffixes)
        raise UsageError(
            f"{flag} {shown}: the output is written as {listed}{why}; end the name with "
            f"{suffixes[0] if len(suffixes) == 1 else 'one of them'}"
        )
    if path.exists() and not path.is_file():
        raise UsageError(f"{flag} {shown} exists and is not a regular file; pick another name")
    if len(os.fsencode(path.name)) + _TEMP_EXTRA > _name_max(_existing(path.parent)):
        raise UsageError(f"{flag} {shown}: the file name is too long; shorten it")
    _writable(path.parent, flag, shown)
    return path


@_checked
def folder(text, flag: str, example: str = "out", file_flag: str | None = None) -> Path:
    """Check ``--out DIR``: not a file, and a folder that can be made and written into."""
    path = _path(text, flag, example)
    shown = str(text)
    if path.exists() and not path.is_dir():
        other = f" (or {file_flag} FILE for one file)" if file_flag else ""
        raise UsageError(f"{flag} {shown} is a file; give a folder{other}")
    _writable(path, flag, shown)
    return path


@_checked
def inside(path: Path, flag: str) -> Path:
    """Check a file that a command names inside a checked folder (its name comes from an
    input's name or a label): not a folder, and not too long."""
    if path.is_dir():
        raise UsageError(f"{flag}: {path} would be written but is a folder; move it away")
    if len(os.fsencode(path.name)) + _TEMP_EXTRA > _name_max(_existing(path.parent)):
        raise UsageError(f"{flag}: the file name {path.name[:24]}... is too long; rename the input")
    return path


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


__all__ = ["file", "folder", "inside"]
