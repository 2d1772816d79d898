"""Subcommands of the ``dreamviz`` CLI, one module each, plus the options they share."""

from __future__ import annotations

import argparse
import math
import re
import sys

from .. import defaults
from ..errors import UsageError

#: API argument -> CLI flag, where the flag is not simply ``--name-with-dashes``: error
#: messages name arguments (:func:`dreamviz.errors.arg`) and the CLI shows them as these flags.
FLAGS = {
    "param_kind": "--param",
    "internal_batch_size": "--batch-size",
    "diversity_weight": "--diversity",
    "per_target": "--batch",
    "layers": "--layer",  # repeatable: one flag per layer
}


def parent() -> argparse.ArgumentParser:
    """Options every subcommand accepts. ``--debug`` may come before or after the subcommand;
    SUPPRESS keeps the subcommand's parser from overwriting a ``--debug`` given before it."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors"
    )
    return p


def add_model_args(p: argparse.ArgumentParser, device: bool = True) -> None:
    p.add_argument(
        "--model", default=defaults.MODEL, help=f"model name (default: {defaults.MODEL})"
    )
    p.add_argument(
        "--weights",
        default=None,
        help="default weights if omitted; a local state_dict PATH; 'random'; "
        "or a torchvision weights name such as IMAGENET1K_V2",
    )
    if device:
        p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")


def add_image_args(p: argparse.ArgumentParser) -> None:
    """``--max-pixels``: the size limit of every image the command reads (see
    :func:`dreamviz.io.pixel_limit`; ``cli.main`` puts it in force)."""
    from ..defaults import MAX_PIXELS

    p.add_argument(
        "--max-pixels",
        type=int_range(1, 10**12),
        default=None,
        metavar="N",
        help=f"refuse images of more pixels than this, from their header, before decoding "
        f"(default {MAX_PIXELS:,}: a decompression bomb claims far more)",
    )


def load_from_args(args: argparse.Namespace):
    from ..models import load_model

    return load_model(args.model, weights=args.weights, device=getattr(args, "device", "auto"))


def _ranged(parse, text: str):
    parse.range = text  # shown in --help by range_help
    return parse


def int_range(lo: int, hi: int | None = None):
    """argparse type: an integer in [lo, hi]."""
    top = f"2^{hi.bit_length() - 1}" if hi is not None and hi > 2**20 and hi & (hi - 1) == 0 else hi
    shown = f"{lo}..{top}" if hi is not None else f"{lo} or more"

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; use {shown}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is out of range; use {shown}")
        return value

    return _ranged(parse, shown)


def int_or_auto(lo: int, hi: int | None = None):
    """argparse type: ``auto`` or an integer in [lo, hi]."""
    number = int_range(lo, hi)

    def parse(text: str) -> int | str:
        return "auto" if str(text).strip().lower() == "auto" else number(text)

    return parse


def float_range(lo: float, hi: float | None = None, lo_open: bool = False):
    """argparse type: a finite float in [lo, hi] (or (lo, hi] with ``lo_open``); NaN and inf
    are refused whatever the range."""
    left = "(" if lo_open else "["
    shown = f"{left}{lo:g}, {hi:g}]" if hi is not None else f"{left}{lo:g}, inf)"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; use {shown}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; use {shown}")
        bad = value <= lo if lo_open else value < lo
        if bad or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value:g} is out of range; use {shown}")
        return value

    return _ranged(parse, shown)


def _nonblank(flag: str):
    def parse(text: str) -> str:
        if not str(text).strip():
            raise argparse.ArgumentTypeError(f"empty; give a value or leave {flag} out")
        return text

    return parse


def range_help(parser: argparse.ArgumentParser) -> None:
    """Append each numeric option's range to its help text (the types above carry it), and
    refuse an empty value for any text option (``--layer ''`` is no layer, not the default).
    Output paths are left to :mod:`dreamviz.commands.output`, which says more."""
    for action in parser._actions:
        shown = getattr(action.type, "range", None)
        if shown and action.help is not argparse.SUPPRESS and "range " not in (action.help or ""):
            action.help = f"{action.help or ''}; range {shown}".lstrip("; ")
        takes_text = type(action).__name__ in ("_StoreAction", "_AppendAction")
        if (
            takes_text
            and action.type is None
            and action.option_strings
            and action.dest not in ("output", "out")
        ):
            action.type = _nonblank(action.option_strings[-1])


def image_size(text: str) -> list[int]:
    """argparse type: ``N`` or ``WxH`` -> [H, W], each side 16..8192 px."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+))?\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write N or WxH, e.g. 224x160")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    for v in (w, h):
        if not 16 <= v <= 8192:
            raise argparse.ArgumentTypeError(f"size {v} is out of range; use 16..8192 px")
    return [h, w]


def size_text(size) -> str:
    """The inverse of :func:`image_size`: ``N`` or ``[H, W]`` -> ``"N"`` or ``"WxH"``."""
    h, w = (size, size) if isinstance(size, int) else size
    return str(h) if h == w else f"{w}x{h}"


def number_text(x) -> str:
    """A number as a flag value: floats in their shortest form (``0.05``, ``1e-05``)."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def scale_range(text: str) -> list[float]:
    """argparse type: ``LO,HI`` with 0 < LO <= HI <= 1 (a crop scale)."""
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write LO,HI, e.g. 0.6,1.0") from None
    if not 0 < lo <= hi <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 < LO <= HI <= 1, e.g. 0.6,1.0")
    return [lo, hi]


def crop_flags(transforms: str, crops: int, scale, scale_end) -> list[str]:
    """The crop flags of a render or gallery command line (none unless the transforms are
    ``crops``); the inverse of :func:`scale_range` for the scales."""
    if transforms != "crops":
        return []
    flags = ["--crops", str(crops), "--crop-scale", ",".join(map(number_text, scale))]
    if scale_end is not None:
        flags += ["--crop-scale-end", ",".join(map(number_text, scale_end))]
    return flags


image_size.range = "16..8192 px a side"


def warning_text(message) -> str:
    """A warning as one line, with its argument marks written as flags."""
    text = message.for_cli(FLAGS) if hasattr(message, "for_cli") else str(message)
    return " ".join(text.split())


def warn(caught: list) -> None:
    """Print caught warnings, one line each, each text once; empties ``caught``."""
    for text in dict.fromkeys(warning_text(w.message) for w in caught):
        print(f"dreamviz: warning: {text}", file=sys.stderr)
    caught.clear()


def emit(path) -> None:
    """Print one written path per line on stdout, as every command promises."""
    print(str(path), flush=True)


__all__ = [
    "FLAGS",
    "UsageError",
    "add_image_args",
    "add_model_args",
    "emit",
    "float_range",
    "image_size",
    "int_range",
    "number_text",
    "parent",
    "size_text",
    "range_help",
    "warn",
    "warning_text",
]
