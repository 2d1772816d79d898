"""``dreamviz explain PHOTO...``: why the model gives a photo its class, unit by unit."""

from __future__ import annotations

import shlex
from pathlib import Path

from .. import defaults
from . import add_image_args, add_model_args, emit, int_range, output, parent

D = defaults.EXPLAIN


def add_parser(sub) -> None:
    from ..explain import METHODS

    p = sub.add_parser(
        "explain",
        parents=[parent()],
        help="explain a photo's class: the hidden channels that drive it, each with its picture",
        description="Rank the channels of a hidden layer for the target class (--method ig, "
        "the default: Integrated Gradients at the layer, each channel's part of the logit's "
        "drop when the whole layer is zeroed; ablation: the drop when the channel alone is "
        "zeroed), and show the top channels each with its feature "
        "visualization and where on the photo it counts, plus Grad-CAM and SmoothGrad maps "
        "and, with --groups, NMF factors of the layer. Writes a static page per photo into "
        "--out (index.html, the images, explain.json) and prints the page's path.",
    )
    p.add_argument("images", nargs="+", metavar="PHOTO", help="photos (JPEG, PNG, WebP)")
    add_model_args(p)
    p.add_argument("--target", help="class name or index (default: each photo's top-1 class)")
    p.add_argument("--layer", help="the hidden layer (default: the model's Grad-CAM layer)")
    p.add_argument("--top", type=int_range(1, 512), default=D["top"], help=f"({D['top']})")
    p.add_argument(
        "--groups", type=int_range(0, 32), default=D["groups"], help="NMF factors (0: none)"
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default=D["method"],
        help=f"how channels are ranked ({D['method']}; see README: explain)",
    )
    p.add_argument(
        "--steps",
        type=int_range(1, 1024),
        default=D["steps"],
        help=f"Integrated Gradients steps at the layer ({D['steps']})",
    )
    p.add_argument(
        "--render-steps",
        type=int_range(1, 100_000),
        default=None,
        help=f"steps of each channel's picture (default {defaults.RENDER['steps']})",
    )
    p.add_argument(
        "--render-size", type=int_range(16, 1024), default=None, help="px of each picture"
    )
    p.add_argument("--gallery", metavar="DIR", help="take channel pictures from this gallery")
    p.add_argument(
        "--examples",
        metavar="DIR",
        help="show each ranked channel's dataset examples from this folder (made by dreamviz "
        "examples; its layer is the default --layer)",
    )
    p.add_argument("--out", default="explain", metavar="DIR", help="output folder (explain/)")
    add_image_args(p)
    p.set_defaults(func=run, memory_hint=memory_hint)


def memory_hint(args) -> str:
    return "lower --steps, --render-size or --top, or give smaller photos"


def _command(args) -> str:
    parts = ["dreamviz", "explain", *args.images, "--model", args.model]
    for flag, value in (
        ("--weights", args.weights),
        ("--target", args.target),
        ("--layer", args.layer),
        ("--top", args.top),
        ("--groups", args.groups or None),
        ("--steps", args.steps),
        ("--render-steps", args.render_steps),
        ("--render-size", args.render_size),
        ("--gallery", args.gallery),
        ("--examples", args.examples),
        ("--out", args.out),
    ):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def run(args) -> int:
    from ..explain import explain, write_page
    from ..io import read_image, write_text
    from . import load_from_args

    out = output.folder(args.out, "--out")
    photos = [read_image(path) for path in args.images]  # one-line errors before any work
    examples = None
    if args.examples:
        from ..dataset import load, page_examples
        from ..errors import UsageError

        made = load(args.examples)
        if args.layer and args.layer != made["layer"]:
            raise UsageError(
                f"the examples in {args.examples!r} are of {made['layer']}, not {args.layer}; "
                f"leave --layer out or give examples of {args.layer}"
            )
        args.layer = made["layer"]

        def examples(folder):
            return page_examples(args.examples, folder, model=args.model)

        examples(out)  # a model mismatch is a one-line error before any work
    model = load_from_args(args)
    settings = {}
    if args.render_steps:
        settings["steps"] = args.render_steps
    if args.render_size:
        settings["size"] = [args.render_size, args.render_size]
    results = explain(
        model, photos, args.target, args.layer, args.top, args.groups, method=args.method,
        steps=args.steps, gallery=args.gallery, render_settings=settings,
    )  # fmt: skip
    command = _command(args)
    if len(results) == 1:
        emit(write_page(results[0], out, command, examples and examples(out)))
        return 0
    links = []
    for path, ex in zip(args.images, results):
        folder = out / _slug(Path(path).stem)
        write_page(ex, folder, command, examples and examples(folder))
        links.append(
            f'<li><a href="{folder.name}/index.html">{Path(path).name}</a>: '
            f"{ex.target_name} ({ex.top5[0][2]:.0%})</li>"
        )
    index = out / "index.html"
    write_text(
        index,
        "<!DOCTYPE html><meta charset=utf-8><title>dreamviz explain</title>"
        f"<h1>Explanations</h1><ul>{''.join(links)}</ul>",
    )
    emit(index)
    return 0


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "photo"
