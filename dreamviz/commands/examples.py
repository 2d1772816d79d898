"""``dreamviz examples --layer LAYER --images DIR --out OUT``: each channel's dataset examples.

Under ``torchrun`` the batches of images are shared out across the processes and merged
(``torchrun --nproc-per-node P -m dreamviz.cli examples ...``); across machines add torchrun's
``--nnodes N --node-rank I --rdzv-backend c10d --rdzv-endpoint HOST:PORT``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from .. import defaults
from . import add_image_args, add_model_args, emit, int_or_auto, int_range, output, parent

D = defaults.EXAMPLES


def _quantiles(text: str) -> list[float]:
    """argparse type: ``0.9,0.5`` -> levels in [0, 1); ``none`` -> no quantile examples."""
    if str(text).strip().lower() == "none":
        return []
    levels = []
    for part in str(text).split(","):
        try:
            q = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a number; write levels in [0, 1) such as 0.9,0.5, or none"
            ) from None
        if not 0 <= q < 1:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"{part} is out of range; use levels in [0, 1)")
        levels.append(q)
    return levels


_quantiles.range = "levels in [0, 1), or none"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "examples",
        parents=[parent()],
        help="find the image crops that drive each channel of a layer most (dataset examples)",
        description="Stream every JPEG, PNG and WebP image under --images (recursively) through "
        "the model up to --layer, keep for each channel the --top images by its spatial "
        "maximum, and save each as the crop of the receptive field around that maximum, plus "
        "a few images at lower quantiles. Writes OUT/examples.json, OUT/crops/ and "
        "OUT/index.html. Resumable (a checkpoint every --checkpoint-every images); a rerun "
        "on the same images does no model work; torchrun shares the images out.",
    )
    add_model_args(p)
    p.add_argument("--layer", required=True, help="the layer (`dreamviz layers MODEL`)")
    p.add_argument("--images", required=True, metavar="DIR", help="a folder of images")
    p.add_argument(
        "--channels",
        default=D["channels"],
        metavar="SPEC",
        help=f"all, 0-63, 0,5,9-12 or random:32 (default {D['channels']})",
    )
    p.add_argument(
        "--top", type=int_range(1, 1000), default=D["top"], help=f"images per channel ({D['top']})"
    )
    p.add_argument(
        "--quantiles",
        type=_quantiles,
        default=list(D["quantiles"]),
        metavar="Q,Q",
        help="also images at these quantiles of each channel's maximum "
        f"(default {','.join(map(str, D['quantiles']))})",
    )
    p.add_argument(
        "--per-quantile",
        type=int_range(0, 100),
        default=D["per_quantile"],
        help=f"images per quantile ({D['per_quantile']})",
    )
    p.add_argument(
        "--sample",
        type=int_range(1, 1_000_000),
        default=D["sample"],
        help=f"images sampled for the quantiles ({D['sample']})",
    )
    p.add_argument(
        "--batch-size",
        type=int_range(1, 65536),
        default=D["batch_size"],
        help=f"images per forward pass ({D['batch_size']})",
    )
    p.add_argument(
        "--workers",
        type=int_or_auto(0, 256),
        default=D["workers"],
        help="DataLoader processes reading images (default auto: CPUs less one, at most 8); "
        "range auto or 0..256",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int_range(1, 10**9),
        default=D["checkpoint_every"],
        metavar="N",
        help=f"save the state every N images ({D['checkpoint_every']})",
    )
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument("--out", default=D["out"], metavar="DIR", help=f"output folder ({D['out']})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_image_args(p)
    p.set_defaults(func=run, memory_hint=memory_hint)


def memory_hint(args) -> str:
    return "lower --batch-size or --workers"


def _command(args) -> str:
    parts = ["dreamviz", "examples", "--model", args.model]
    if args.weights:
        parts += ["--weights", args.weights]
    parts += ["--layer", args.layer, "--images", args.images, "--channels", str(args.channels)]
    parts += ["--top", str(args.top)]
    parts += ["--quantiles", ",".join(f"{q:g}" for q in args.quantiles) or "none"]
    parts += ["--per-quantile", str(args.per_quantile), "--sample", str(args.sample)]
    return shlex.join([*parts, "--out", args.out])


def run(args) -> int:
    from ..dataset import distributed, examples

    output.folder(args.out, "--out")  # before any work
    with distributed(args.device) as device:
        result = examples(
            args.model,
            args.layer,
            args.images,
            args.channels,
            args.top,
            out=args.out,
            quantiles=args.quantiles,
            per_quantile=args.per_quantile if args.quantiles else 0,
            sample=args.sample,
            batch_size=args.batch_size,
            workers=args.workers,
            checkpoint_every=args.checkpoint_every,
            weights=args.weights,
            device=device,
            amp=args.amp,
            progress=not args.quiet,
            command=_command(args),
            max_pixels=args.max_pixels,
        )
    if result.index is not None:
        emit(result.json)
        emit(result.index)
        print(f"dreamviz: {result.summary()}", file=sys.stderr, flush=True)
    return 0
