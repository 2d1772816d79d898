"""The thin argparse front end: ``dreamviz COMMAND``, one command for each name in COMMANDS.

The commands are :data:`COMMANDS` (models, layers, render, saliency, dream, gallery, explain,
examples, spectrum, and any added there; ``dreamviz --help`` lists them all). Each lives in
``dreamviz/commands/<name>.py`` and exposes ``add_parser(sub)``, which registers its options
and sets ``func`` to a callable ``func(args) -> int``.

Errors: a :class:`~dreamviz.errors.DreamvizError` is printed as one line on stderr; usage errors
exit with 2, other failures with 1. Running out of memory, a file that cannot be written and
any unexpected exception are one line too (exit 1); ``--debug`` shows the traceback instead.

Ctrl-C exits with 130 and one line, at any moment. While dreamviz starts up (importing torch
is most of its start-up time) a KeyboardInterrupt must not be raised: inside torch's import it
prints a long traceback or even aborts the interpreter (pybind11). So when the process is the
dreamviz command, ``dreamviz/__init__.py`` installs a handler before it imports torch
(:mod:`dreamviz.interrupts`) that exits at once with one line, nothing having been
done yet; in-process, ``main(argv)`` only remembers a Ctrl-C and raises it when the command
starts. Once the command runs, Ctrl-C raises KeyboardInterrupt as usual, and render, dream and
gallery save what they have. ``main(argv)`` restores the caller's SIGINT handler when it
returns. (The interpreter's own first ~0.1 s, before any dreamviz code runs, is out of reach.)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from ._version import __version__
from .commands import FLAGS, range_help, warning_text
from .errors import DreamvizError, DreamvizWarning
from .interrupts import Interrupts, installed

COMMANDS = [
    "models",
    "layers",
    "render",
    "saliency",
    "dream",
    "gallery",
    "explain",
    "examples",
    "spectrum",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dreamviz", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dreamviz {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).add_parser(sub)
    for command in sub.choices.values():
        range_help(command)
    return parser


def _out_of_memory(e: BaseException) -> str | None:
    """'the GPU' or 'the CPU' when ``e`` reports exhausted memory, else None."""
    if isinstance(e, MemoryError):
        return "the CPU"
    text = str(e).lower()
    if type(e).__name__ == "OutOfMemoryError" or "out of memory" in text:
        return "the GPU" if ("cuda" in text or "gpu" in text or "mps" in text) else "the CPU"
    if isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text
    ):
        return "the CPU"
    return None


_HERE = os.path.dirname(os.path.abspath(__file__))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning from dreamviz as one line on stderr; other libraries' warnings (deprecations
    inside torch, ...) are not the user's business, and --debug shows them as usual."""
    if issubclass(category, DreamvizWarning) or str(filename).startswith(_HERE):
        print(f"dreamviz: warning: {warning_text(message)}", file=sys.stderr, flush=True)


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(e).__name__


def _error(text: str) -> None:
    print(f"dreamviz: error: {text}", file=sys.stderr, flush=True)


def _failure(e: Exception, args) -> None:
    """Any other failure as one line: out of memory (with the command's fix), a file that
    cannot be read or written, or an unexpected error (to report)."""
    where = _out_of_memory(e)
    if where is not None:
        hint = getattr(args, "memory_hint", None)
        fix = hint(args) if callable(hint) else "use smaller inputs"
        _error(f"out of memory on {where} ({_first_line(e)}); {fix}")
    elif isinstance(e, OSError):
        name = f"{e.filename}: " if getattr(e, "filename", None) else ""
        _error(f"{name}{e.strerror or _first_line(e)}")
    else:
        _error(
            f"unexpected {type(e).__name__}: {_first_line(e)}; rerun with --debug for the "
            "traceback and please report it"
        )


def _run_command(args, guard: Interrupts, debug: bool) -> int:
    """The parsed command, run with Ctrl-C live, its image size limit in force and its
    warnings shown as one line each; a Ctrl-C that came after its work still counts."""
    importlib.import_module(".models", __package__)  # torch and torchvision, still guarded
    from .io import pixel_limit

    guard.live()
    with pixel_limit(getattr(args, "max_pixels", None)), warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        code = int(args.func(args) or 0)
    guard.hold()
    if guard.pending:  # Ctrl-C after the work was done: still an interrupted run
        raise KeyboardInterrupt
    return code


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (2 for a usage error, argparse's included;
    ``--help`` and ``--version`` raise SystemExit(0) as argparse does). ``argv=None`` reads
    ``sys.argv`` and means dreamviz owns the process: after the command, Ctrl-C stays
    remembered (not raised) while the interpreter shuts down. Given ``argv`` (in-process use),
    the caller's SIGINT handler is restored on return."""
    program = argv is None
    guard = (installed() if program else None) or Interrupts(program).install()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = None
    debug = "--debug" in argv
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # a usage error (one line, printed) returns 2 like any other;
            if e.code:  # --help and --version still exit as argparse does
                guard.hold()
                return int(e.code)
            raise
        debug = bool(getattr(args, "debug", False))
        if not getattr(args, "func", None):
            guard.live()
            print(
                f"usage: dreamviz COMMAND: give one of {', '.join(COMMANDS)}; see dreamviz --help",
                file=sys.stderr,
            )
            return 2
        return _run_command(args, guard, debug)
    except KeyboardInterrupt:
        guard.hold()
        if debug:
            raise
        print("dreamviz: interrupted", file=sys.stderr)
        return 130
    except DreamvizError as e:
        guard.hold()
        if debug:
            raise
        _error(e.for_cli(FLAGS))
        return e.exit_code
    except BrokenPipeError:
        guard.hold()
        return 1
    except SystemExit:
        guard.hold()
        if guard.pending:
            print("dreamviz: interrupted", file=sys.stderr)
            return 130
        raise
    except Exception as e:
        guard.hold()
        if debug:
            raise
        _failure(e, args)
        return 1
    finally:
        if not program:
            guard.restore()


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
