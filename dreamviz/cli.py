"""The thin argparse front end: ``dreamviz models|layers|render|saliency|dream|gallery``.

Each subcommand lives in ``dreamviz/commands/<name>.py`` and exposes ``add_parser(sub)``, which
registers its options and sets ``func`` to a callable ``func(args) -> int``.

Errors: a :class:`~dreamviz.errors.DreamvizError` is printed as one line on stderr; usage errors
exit with 2, other failures with 1. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ._version import __version__
from .commands import FLAGS
from .errors import DreamvizError

COMMANDS = ["models", "layers", "render", "saliency", "dream", "gallery", "explain", "spectrum"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dreamviz", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dreamviz {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as e:  # a command not built yet
            if e.name and e.name.endswith(f"commands.{name}"):
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except DreamvizError as e:
        if debug:
            raise
        print(f"dreamviz: error: {e.for_cli(FLAGS)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("dreamviz: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
