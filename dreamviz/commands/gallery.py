"""``dreamviz gallery``: every channel of some layers (or a set of classes) as a static site.

Units render in batches; a rerun with the same settings renders nothing and an interrupted
run continues where it stopped. Under ``torchrun`` the units are shared out across the
processes (``torchrun --nproc_per_node=N -m dreamviz.cli gallery ...`` or
``scripts/make_gallery.py``).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import PurePosixPath

from .. import defaults
from . import (
    add_image_args,
    add_model_args,
    crop_flags,
    emit,
    float_range,
    image_size,
    int_or_auto,
    int_range,
    number_text,
    output,
    parent,
    scale_range,
    size_text,
)
from .recipe import command_line as render_command_line
from .recipe import from_line

GALLERY, RENDER = defaults.GALLERY, defaults.RENDER


def _option(group, name: str, table, what: str = "", **kwargs) -> None:
    """``--NAME`` with its default from ``table`` (defaults.GALLERY or RENDER), in its help."""
    default = table[name]
    text = f"{what} (default {default})" if what else f"default {default}"
    flag = "--" + name.replace("_", "-")
    group.add_argument(flag, dest=name, default=default, help=text, **kwargs)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The gallery options (shared with scripts/make_gallery.py)."""
    from ..optim import OPTIMIZERS, SCHEDULES
    from ..param import PARAMS
    from ..transforms import PRESETS

    add_model_args(p)
    w = p.add_argument_group("what to show")
    w.add_argument(
        "--layer",
        dest="layers",
        action="append",
        default=[],
        metavar="LAYER",
        help="a layer whose channels to show (repeatable; `dreamviz layers MODEL` lists them)",
    )
    what = "channels of each layer: all, 0-63, 0,5,9-12 or random:32"
    _option(w, "channels", GALLERY, what, metavar="SPEC")
    w.add_argument(
        "--classes",
        default=None,
        metavar="SPEC",
        help="also a class gallery: 0-999, random:16, indices or ImageNet names",
    )
    o = p.add_argument_group("rendering")
    _option(o, "size", GALLERY, type=image_size, metavar="N|WxH")
    _option(o, "steps", GALLERY, type=int_range(1, 1_000_000))
    what = "units optimized together in one pass: auto (sized for the device) or a number"
    _option(o, "batch", GALLERY, what, type=int_or_auto(1, 4096))
    _option(o, "lr", RENDER, type=float_range(0.0, lo_open=True))
    _option(o, "lr_schedule", RENDER, "constant, or cosine (warm-up, decay)", choices=SCHEDULES)
    _option(o, "optimizer", RENDER, choices=sorted(OPTIMIZERS))
    _option(o, "param", RENDER, "image parameterization", choices=sorted(PARAMS))
    o.add_argument(
        "--no-decorrelate",
        dest="decorrelate",
        action="store_false",
        default=RENDER["decorrelate"],
        help="optimize RGB directly instead of ImageNet-decorrelated colour",
    )
    _option(o, "transforms", RENDER, "robustness transforms", choices=sorted(PRESETS))
    what = "--transforms crops: views per image and step"
    _option(o, "crops", RENDER, what, type=int_range(1, 64))
    what = "--transforms crops: crop side as a fraction of the shorter side"
    _option(o, "crop_scale", RENDER, what, type=scale_range, metavar="LO,HI")
    what = "--transforms crops: the crop scale at the last step (default: --crop-scale)"
    o.add_argument("--crop-scale-end", type=scale_range, metavar="LO,HI", help=what)
    what = "final fraction of steps without transforms"
    _option(o, "settle", RENDER, what, type=float_range(0.0, 1.0))
    _option(o, "seed", RENDER, "base seed; each unit hashes it", type=int_range(0, 2**62))
    o.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    d = p.add_argument_group("output")
    _option(d, "out", GALLERY, "output folder", metavar="DIR")
    d.add_argument(
        "--natural",
        default=GALLERY["natural"],
        metavar="DIR|none",
        help="photos for the activation ratio (default: the sample photos inside dreamviz)",
    )
    d.add_argument(
        "--examples",
        default=None,
        metavar="DIR",
        help="show each unit's dataset examples from this folder (made by dreamviz examples)",
    )
    d.add_argument("--quiet", action="store_true", help="no progress bar")


def command_line(args: argparse.Namespace) -> str:
    """The ``dreamviz gallery`` command that builds this gallery: the request and every
    setting that shapes the images, written out even where it is today's default."""
    cmd = ["dreamviz", "gallery", "--model", args.model]
    if args.weights:
        cmd += ["--weights", args.weights]
    for layer in args.layers:
        cmd += ["--layer", layer]
    if args.layers:
        cmd += ["--channels", str(args.channels)]
    if args.classes is not None:
        cmd += ["--classes", str(args.classes)]
    cmd += ["--size", size_text(args.size)]
    for key in ("steps", "lr", "lr_schedule", "optimizer", "param", "transforms", "settle"):
        cmd += ["--" + key.replace("_", "-"), number_text(getattr(args, key))]
    cmd += crop_flags(args.transforms, args.crops, args.crop_scale, args.crop_scale_end)
    if not args.decorrelate:
        cmd.append("--no-decorrelate")
    if args.amp:
        cmd.append("--amp")
    cmd += ["--seed", str(args.seed), "--batch", str(args.batch)]
    if args.natural != GALLERY["natural"]:
        cmd += ["--natural", str(args.natural)]
    if args.examples:
        cmd += ["--examples", args.examples]
    return shlex.join([*cmd, "--out", args.out])


def reproduce(recipe: dict) -> str:
    """The page's commands for one unit, run in the gallery folder: ``render --from`` its PNG,
    then the explicit command that needs no PNG. Both write ``<layer>_<index>.png``."""
    png = PurePosixPath(recipe["gallery"]["file"])  # <layer>/<index:04d>.png
    output = f"{png.parent}_{int(png.stem)}.png"
    return f"{from_line(str(png), output)}\n{render_command_line(recipe, output)}"


def build_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`dreamviz.gallery.build` from parsed options."""
    return dict(
        layers=args.layers,
        channels=args.channels,
        classes=args.classes,
        size=args.size,
        steps=args.steps,
        batch=args.batch,
        out=args.out,
        seed=args.seed,
        lr=args.lr,
        optimizer=args.optimizer,
        param_kind=args.param,
        decorrelate=args.decorrelate,
        transforms=args.transforms,
        settle=args.settle,
        amp=args.amp,
        settings={
            "lr_schedule": args.lr_schedule,
            "crops": args.crops,
            "crop_scale": args.crop_scale,
            "crop_scale_end": args.crop_scale_end,
        },
        weights=args.weights,
        natural=None if str(args.natural).lower() == "none" else args.natural,
        progress=not args.quiet,
        reproduce=reproduce,
        command=command_line(args),
        examples=_examples(args),
    )


def _examples(args: argparse.Namespace) -> dict | None:
    """``--examples DIR`` read for the gallery's page (a one-line error before any work)."""
    if not args.examples:
        return None
    from ..dataset import page_examples

    return page_examples(args.examples, args.out, model=args.model)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "gallery",
        parents=[parent()],
        help="render every channel of some layers into a static HTML gallery",
        description="Render the channels of one or more layers (and/or a set of classes) in "
        "batches into DIR: one PNG per unit with its recipe, manifest.json and index.html "
        "(opens from disk). Reruns skip what is up to date; an interrupted run resumes.",
    )
    add_arguments(p)
    add_image_args(p)
    p.set_defaults(func=run, memory_hint=memory_hint)


def memory_hint(args) -> str:
    return "lower --batch (units optimized together) or --size"


def run(args) -> int:
    from .. import gallery

    output.folder(args.out, "--out")  # before any work
    with gallery.distributed(args.device) as device:
        result = gallery.build(args.model, device=device, **build_kwargs(args))
    for path in [*result.written, result.manifest, result.index]:
        if path is not None:
            emit(path)
    return 0
