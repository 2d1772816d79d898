"""Subcommands of the ``dreamviz`` CLI, one module each, plus the options they share."""

from __future__ import annotations

import argparse
import re

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


def load_from_args(args: argparse.Namespace):
    from ..models import load_model

    return load_model(args.model, weights=args.weights, device=getattr(args, "device", "auto"))


def int_range(lo: int, hi: int | None = None):
    """argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            top = f"..{hi}" if hi is not None else " or more"
            raise argparse.ArgumentTypeError(f"{value} is out of range; use {lo}{top}")
        return value

    return parse


def int_or_auto(lo: int, hi: int | None = None):
    """argparse type: ``auto`` or an integer in [lo, hi]."""
    number = int_range(lo, hi)

    def parse(text: str) -> int | str:
        return "auto" if str(text).strip().lower() == "auto" else number(text)

    return parse


def float_range(lo: float, hi: float | None = None, lo_open: bool = False):
    """argparse type: a float in [lo, hi] (or (lo, hi] with ``lo_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        bad = value <= lo if lo_open else value < lo
        if bad or (hi is not None and value > hi) or value != value:
            left = "(" if lo_open else "["
            right = f"{hi}]" if hi is not None else "inf)"
            raise argparse.ArgumentTypeError(f"{value} is out of range; use {left}{lo}, {right}")
        return value

    return parse


def image_size(text: str) -> list[int]:
    """argparse type: ``N`` or ``WxH`` -> [H, W]."""
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


def emit(path) -> None:
    """Print one written path per line on stdout, as every command promises."""
    print(str(path), flush=True)


__all__ = [
    "FLAGS",
    "UsageError",
    "add_model_args",
    "emit",
    "float_range",
    "image_size",
    "int_range",
    "number_text",
    "parent",
    "size_text",
]
