"""``dreamviz dream IMAGE``: deep dream a photo, or a zoom animation of dreams."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

from ..defaults import DREAM as D
from . import add_image_args, add_model_args, emit, float_range, int_range, output, parent, warn

_STILL = (".png", ".jpg", ".jpeg", ".webp")
_ANIMATED = (".gif", ".webp")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "dream",
        parents=[parent()],
        help="deep dream a photo (octaves, tiles for any size, guided, zoom animations)",
        description="Amplify what a layer sees in IMAGE (JPEG, PNG or WebP; EXIF orientation, "
        "alpha, grayscale and 16-bit handled). Classic DeepDream defaults: 4 octaves at scale "
        "1.4, 10 steps each, step 1.5 grey levels / mean |gradient|, random roll of 32 px. "
        "Several objectives add up. The output keeps the input's size; a PNG carries the "
        "recipe. Prints every path it writes.",
    )
    p.add_argument("image", help="the photo to dream on")
    add_model_args(p)
    p.add_argument(
        "--layer",
        action="append",
        type=_layer_weight,
        default=[],
        metavar="LAYER[:WEIGHT]",
        help="dream a layer (mean of squares); repeat for several, with optional weights: "
        "--layer blocks.6 --layer blocks.10:0.5 (default: the model's classic layer)",
    )
    p.add_argument(
        "--unit",
        action="append",
        default=[],
        metavar="LAYER:CHANNEL",
        help="dream one channel (its mean activation); repeatable",
    )
    p.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=[],
        metavar="CLASS",
        help="dream a class logit, by index or ImageNet name; repeatable",
    )
    p.add_argument(
        "--guide",
        metavar="IMAGE",
        help="guided dream: pull each position of the --layer features toward the "
        "best-matching feature of this image",
    )
    p.add_argument(
        "--guide-mode",
        choices=["match", "dot", "mean"],
        default=D["guide_mode"],
        help="match (default): per position, the guide feature closest in direction; dot: "
        "Google's raw dot-product match; mean: the guide's mean feature",
    )
    p.add_argument(
        "--octaves", type=int_range(1, 20), default=D["octaves"], help=f"default {D['octaves']}"
    )
    p.add_argument(
        "--octave-scale",
        type=float_range(1.0, 4.0),
        default=D["octave_scale"],
        help=f"default {D['octave_scale']}",
    )
    p.add_argument(
        "--steps",
        type=int_range(1, 10_000),
        default=D["steps"],
        help=f"steps per octave ({D['steps']})",
    )
    p.add_argument(
        "--lr",
        type=float_range(0.0, 255.0, lo_open=True),
        default=D["lr"],
        help="step size in 0-255 grey levels per step after mean-|gradient| normalization "
        f"(default {D['lr']})",
    )
    p.add_argument(
        "--jitter",
        type=int_range(0, 1024),
        default=D["jitter"],
        help=f"max random roll, px ({D['jitter']})",
    )
    p.add_argument(
        "--tile",
        type=int_range(64, 8192),
        default=D["tile"],
        help=f"images larger than this many px are dreamed in tiles (default {D['tile']})",
    )
    p.add_argument(
        "--lap-levels",
        type=int_range(1, 16),
        default=D["lap_levels"],
        help="Laplacian-pyramid gradient normalization with this many levels (e.g. 4): "
        "smoother results",
    )
    p.add_argument(
        "--frames",
        type=int_range(1, 10_000),
        default=None,
        help="zoom animation: dream, zoom, dream again, N frames (numbered PNGs + a GIF)",
    )
    p.add_argument(
        "--zoom",
        type=float_range(0.5, 2.0),
        default=None,
        help=f"per frame ({D['zoom']})",
    )
    p.add_argument(
        "--rotate",
        type=float_range(-180.0, 180.0),
        default=None,
        help=f"degrees per frame ({D['rotate']})",
    )
    p.add_argument(
        "--fps", type=float_range(0.0, 100.0, lo_open=True), default=D["fps"], help=f"({D['fps']})"
    )
    p.add_argument("--seed", type=int_range(0, 2**62), default=D["seed"], help=f"({D['seed']})")
    add_image_args(p)
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="output: .png (with the recipe), .jpg or .webp; with --frames a .gif or .webp "
        "animation, the frames beside it as FILE_0000.png... (default: IMAGE_dream.png or "
        "IMAGE_dream.gif in the current folder)",
    )
    p.set_defaults(func=run, memory_hint=memory_hint)


def memory_hint(args) -> str:
    return "lower --tile (larger images are dreamed in tiles of this size) or shrink the image"


def _layer_weight(text: str) -> str:
    """argparse type: LAYER or LAYER:WEIGHT with a finite weight, checked at parse time."""
    import argparse

    from ..errors import UsageError

    try:
        parse_layer_weights([text])
    except UsageError as e:
        raise argparse.ArgumentTypeError(e.for_cli()) from None
    return text


_layer_weight.range = "a finite WEIGHT"


def parse_layer_weights(items: list[str]) -> dict[str, float]:
    """``["blocks.6", "blocks.10:0.5"]`` -> ``{"blocks.6": 1.0, "blocks.10": 0.5}``."""
    from ..errors import UsageError

    out: dict[str, float] = {}
    for item in items:
        name, sep, weight = item.strip().rpartition(":")
        if not sep:
            name, weight = item.strip(), "1"
        try:
            w = float(weight)
            if not math.isfinite(w):
                raise ValueError(weight)
        except ValueError:
            raise UsageError(
                f"--layer {item!r}: {weight!r} is not a weight; write LAYER or LAYER:WEIGHT "
                "(for a channel use --unit LAYER:CHANNEL)"
            ) from None
        if not name.strip():
            raise UsageError(f"--layer {item!r} has no layer name")
        out[name.strip()] = out.get(name.strip(), 0.0) + w
    return out


def build_objective(args, model):
    """Sum of the --layer, --unit and --class terms (None: the model's default layer)."""
    from .. import objectives as O
    from ..errors import UsageError

    layers = parse_layer_weights(args.layer)
    if args.guide is not None:
        if args.unit or args.classes:
            raise UsageError("--guide works on layers; drop --unit/--class or the guide")
        return layers or None
    terms = []
    for name, w in layers.items():
        term = O.parse(name, model, kind="unit")
        terms.append(term if w == 1 else w * term)
    for text in args.unit:
        if ":" not in text:
            raise UsageError(f"--unit {text!r} needs a channel: LAYER:CHANNEL, e.g. blocks.10:5")
        terms.append(O.parse(text, model, kind="unit"))
    terms += [O.parse(c, model, kind="class") for c in args.classes]
    return sum(terms) if terms else None


def _outputs(args) -> tuple[Path, Path | None]:
    """(still or animation path, frame pattern stem) from -o and the input's name, checked
    (dreamviz.commands.output) before any work."""
    stem = Path(args.image).stem or "image"
    if args.frames:
        text = f"{stem}_dream.gif" if args.output is None else args.output
        if text.strip() and Path(text).suffix.lower() == ".png":  # the frames are the PNGs
            text = str(Path(text).with_suffix(".gif"))
        out = output.file(text, "-o", list(_ANIMATED), "an animation")
        output.inside(Path(f"{out.with_suffix('')}_0000.png"), "-o")
        return out, out.with_suffix("")
    text = f"{stem}_dream.png" if args.output is None else args.output
    why = ".png keeps the recipe"
    return output.file(text, "-o", list(_STILL), why), None


def run(args) -> int:
    from .. import io
    from ..deepdream import dream, dream_frames
    from ..display import Bar
    from ..errors import UsageError
    from ..io import as_image

    if not args.frames and (args.zoom is not None or args.rotate is not None):
        raise UsageError("--zoom and --rotate make an animation; add --frames N")
    out, frame_stem = _outputs(args)
    image = as_image(args.image)  # one-line error for a missing or unreadable file first
    guide = as_image(args.guide) if args.guide is not None else None
    from . import load_from_args

    model = load_from_args(args)
    objective = build_objective(args, model)
    opts = dict(
        octaves=args.octaves,
        octave_scale=args.octave_scale,
        steps=args.steps,
        lr=args.lr,
        jitter=args.jitter,
        tile=args.tile,
        lap_levels=args.lap_levels,
    )
    recipe = {
        "command": "dream",
        "image": os.path.abspath(args.image),
        "model": model.name,
        "weights": model.weights,
        **opts,
        "lr_units": "0-255 grey levels per step, gradient normalized to unit mean |g|",
        "guide": os.path.abspath(args.guide) if args.guide else None,
        "guide_mode": args.guide_mode if args.guide else None,
        "seed": args.seed,
        "versions": io.versions(),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if not args.frames:
            bars: list = []

            def progress(step, total, values):
                if not bars:  # opened on the first step, after every check has passed
                    bars.append(Bar(total, "dream", delay=0, leave=False))
                bars[0].move_to(step, float(values[0]))

            try:
                res = dream(
                    model,
                    image,
                    objective,
                    guide=guide,
                    guide_mode=args.guide_mode,
                    seed=args.seed,
                    device=model.device,
                    callback=progress,
                    **opts,
                )
            finally:
                for bar in bars:
                    bar.close()
            warn(caught)
            recipe.update(objective=res.objective, octaves_used=res.octaves)
            if res.interrupted:
                recipe["interrupted"] = True
            emit(io.save_image(out, res.image, recipe))
            return 130 if res.interrupted else 0
        frames = []
        zoom = D["zoom"] if args.zoom is None else args.zoom
        rotate = D["rotate"] if args.rotate is None else args.rotate
        gen = dream_frames(
            model,
            image,
            args.frames,
            objective,
            zoom=zoom,
            rotate=rotate,
            guide=guide,
            guide_mode=args.guide_mode,
            seed=args.seed,
            device=model.device,
            **opts,
        )
        recipe.update(frames=args.frames, zoom=zoom, rotate=rotate)
        interrupted = False
        bar = Bar(args.frames, "frames", "frame", delay=0)
        try:
            for i, res in enumerate(gen):
                warn(caught)
                recipe.update(objective=res.objective, octaves_used=res.octaves, frame=i)
                path = Path(f"{frame_stem}_{i:04d}.png")
                emit(io.save_png(path, res.image, recipe))
                frames.append(res.image)
                interrupted = res.interrupted
                bar.update(1)
        finally:
            bar.close()
        recipe.pop("frame", None)
        emit(io.save_animation(out, frames, fps=args.fps))
        return 130 if interrupted else 0


__all__ = ["add_parser", "build_objective", "parse_layer_weights", "run"]
