"""The one function that turns a recipe into the ``dreamviz render`` command reproducing it.

Recipes are data (:mod:`dreamviz.recipes`); flags belong to the CLI, so the translation lives
here, beside the parser that reads the flags back. Every page and message that shows a
"render it again" command gets it from :func:`command_line`.
"""

from __future__ import annotations

import shlex

from .. import defaults
from . import crop_flags, number_text, size_text


def _size(size) -> list[str]:
    return [] if size is None else ["--size", size_text(size)]


def command_line(recipe: dict, output: str | None = None) -> str:
    """The explicit ``dreamviz render`` command for a recipe: its model and weights, its
    targets, and every setting that shapes the image (written out even when it equals today's
    default, so the command means the same after the defaults change)."""
    s = {**defaults.RENDER, **recipe.get("settings", {})}
    args = ["dreamviz", "render", "--model", recipe.get("model") or defaults.MODEL]
    if recipe.get("weights") not in (None, "bundled"):
        args += ["--weights", str(recipe["weights"])]
    for kind, text in recipe.get("targets", []):
        args += [f"--{kind}", str(text)]
    if int(s["batch"]) != 1:
        args += ["--batch", str(s["batch"])]
    args += _size(s.get("size"))
    for key in ("steps", "lr", "lr_schedule", "optimizer", "param", "transforms", "settle"):
        args += ["--" + key.replace("_", "-"), number_text(s[key])]
    args += crop_flags(s["transforms"], s["crops"], s["crop_scale"], s.get("crop_scale_end"))
    for key in ("init", "accentuate", "accentuate_layer", "spectrum"):
        if s.get(key):
            args += ["--" + key.replace("_", "-"), number_text(s[key])]
    if not s["decorrelate"]:
        args.append("--no-decorrelate")
    for key in ("l1", "l2", "tv", "blur", "diversity"):
        if s[key]:
            args += [f"--{key}", number_text(s[key])]
    if s["amp"]:
        args.append("--amp")
    args += ["--seed", str(s["seed"])]
    if output:
        args += ["-o", output]
    return shlex.join(args)


def from_line(png: str, output: str) -> str:
    """The short form: ``dreamviz render --from PNG -o OUTPUT``."""
    return shlex.join(["dreamviz", "render", "--from", png, "-o", output])


__all__ = ["command_line", "from_line"]
