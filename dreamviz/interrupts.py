"""Ctrl-C for the command line (see :mod:`dreamviz.cli`): exit at once while dreamviz starts
up, then KeyboardInterrupt as usual while a command runs.

Layer 0: this module imports nothing from dreamviz and nothing heavy, so the package, which
calls :func:`guard_startup` before it imports torch when the process is the dreamviz
command, and the CLI, which installs the guard for a command's run, both import it from
below. (It cannot live in ``dreamviz.cli``: ``python -m dreamviz.cli`` runs that file as
``__main__``, and importing it from the package first makes Python warn about the double
import; nor in ``dreamviz.commands``: the package imports nothing from the commands.)
"""

from __future__ import annotations

import os
import signal
import threading


class Interrupts:
    """SIGINT during start-up: when dreamviz owns the process (``immediate``) it exits at once
    with one line, since nothing has been done yet; in-process (``main(argv)``) it is
    remembered and raised once the command starts. After the command: remembered."""

    guards_dreamviz = True

    def __init__(self, immediate: bool = False):
        self.pending = False
        self.previous = None
        self.installed = False
        self.immediate = immediate

    def _remember(self, signum, frame) -> None:
        if self.immediate:  # mid-import: a KeyboardInterrupt could abort the interpreter
            os.write(2, b"dreamviz: interrupted\n")
            os._exit(130)
        self.pending = True

    def install(self) -> Interrupts:
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may handle signals; leave them alone
        try:
            previous = signal.getsignal(signal.SIGINT)
            if previous is signal.SIG_IGN:  # started in the background (`cmd &`): keep that
                return self
            signal.signal(signal.SIGINT, self._remember)
        except (ValueError, OSError):
            return self
        self.previous, self.installed = previous, True
        return self

    def live(self) -> None:
        """From now on Ctrl-C raises KeyboardInterrupt; one that came earlier raises now."""
        self.immediate = False
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def hold(self) -> None:
        """Remember Ctrl-C again (the command has finished: nothing is left to save)."""
        self.immediate = False
        if self.installed:
            signal.signal(signal.SIGINT, self._remember)

    def restore(self) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)
            self.installed = False


def guard_startup() -> None:
    """Exit at once, with one line, on Ctrl-C from now until the command starts. Called by
    the package itself, before it imports torch, when the process is the dreamviz command."""
    if installed() is None:
        Interrupts(immediate=True).install()


def installed() -> Interrupts | None:
    """The guard that handles SIGINT now, if one is."""
    owner = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    return owner if getattr(owner, "guards_dreamviz", False) else None


__all__ = ["Interrupts", "guard_startup", "installed"]
