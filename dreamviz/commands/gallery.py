"""``dreamviz gallery``: every channel of some layers (or a set of classes) as a static site.

Units render in batches; a rerun with the same settings renders nothing and an interrupted
run continues where it stopped. Under ``torchrun`` the units are shared out across the
processes (``torchrun --nproc_per_node=N -m dreamviz.cli gallery ...`` or
``scripts/make_gallery.py``).
"""

from __future__ import annotations

import argparse

from . import add_model_args, emit, float_range, image_size, int_range, parent


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The gallery options (shared with scripts/make_gallery.py)."""
    from ..gallery import DEFAULT_BATCH, DEFAULT_SIZE, DEFAULT_STEPS
    from ..optim import OPTIMIZERS
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
    w.add_argument(
        "--channels",
        default="all",
        metavar="SPEC",
        help="channels of each layer: all (default), 0-63, 0,5,9-12 or random:32",
    )
    w.add_argument(
        "--classes",
        default=None,
        metavar="SPEC",
        help="also a class gallery: 0-999, random:16, indices or ImageNet names",
    )
    o = p.add_argument_group("rendering")
    o.add_argument(
        "--size", type=image_size, default=None, metavar="N|WxH", help=f"default {DEFAULT_SIZE}"
    )
    o.add_argument(
        "--steps", type=int_range(1, 1_000_000), default=DEFAULT_STEPS, help="default 256"
    )
    o.add_argument(
        "--batch",
        type=int_range(1, 4096),
        default=DEFAULT_BATCH,
        help=f"units optimized together in one pass (default {DEFAULT_BATCH})",
    )
    o.add_argument("--lr", type=float_range(0.0, lo_open=True), default=0.05, help="default 0.05")
    o.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    o.add_argument("--param", choices=sorted(PARAMS), default="fft", help="default fft")
    o.add_argument(
        "--no-decorrelate",
        dest="decorrelate",
        action="store_false",
        help="optimize RGB directly instead of ImageNet-decorrelated colour",
    )
    o.add_argument("--transforms", choices=sorted(PRESETS), default="standard")
    o.add_argument(
        "--settle",
        type=float_range(0.0, 1.0),
        default=0.15,
        help="final fraction of steps without transforms (default 0.15)",
    )
    o.add_argument(
        "--seed", type=int_range(0, 2**62), default=0, help="base seed; each unit hashes it"
    )
    o.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    d = p.add_argument_group("output")
    d.add_argument("--out", default="gallery", metavar="DIR", help="output folder (gallery/)")
    d.add_argument(
        "--natural",
        default="auto",
        metavar="DIR|none",
        help="photos for the activation ratio (default: the bundled sample photos)",
    )
    d.add_argument("--quiet", action="store_true", help="no progress bar")


def build_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`dreamviz.gallery.build` from parsed options."""
    from ..gallery import DEFAULT_SIZE

    return dict(
        layers=args.layers,
        channels=args.channels,
        classes=args.classes,
        size=args.size or DEFAULT_SIZE,
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
        weights=args.weights,
        natural=None if str(args.natural).lower() == "none" else args.natural,
        progress=not args.quiet,
    )


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
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import gallery

    with gallery.distributed(args.device) as device:
        result = gallery.build(args.model, device=device, **build_kwargs(args))
    for path in [*result.written, result.manifest, result.index]:
        if path is not None:
            emit(path)
    return 0
