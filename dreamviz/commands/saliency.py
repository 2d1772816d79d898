"""``dreamviz saliency IMAGE...``: saliency maps as overlay PNGs (and raw ``.npy`` arrays)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..defaults import SALIENCY
from . import FLAGS, add_model_args, emit, float_range, int_or_auto, int_range, parent


def add_parser(sub) -> None:
    from ..attribution import METHODS

    p = sub.add_parser(
        "saliency",
        parents=[parent()],
        help="saliency maps: which pixels drive a class or a unit",
        description="Compute a saliency map per image and method, and write it as a heat map "
        "blended over the photo (or, with --panel, photo | map | overlay with the predicted "
        "class). Prints every path written. Exit code 1 if some images failed (the others "
        "still get their maps).",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, WebP...)")
    add_model_args(p)
    p.add_argument(
        "--method",
        default=SALIENCY["method"],
        help=f"one of {', '.join(METHODS)}; several separated by commas, or 'all' "
        f"(default: {SALIENCY['method']})",
    )
    p.add_argument(
        "--target",
        default=None,
        help="class index or name, or a unit LAYER:CHANNEL (default: each image's top-1 class)",
    )
    p.add_argument("--layer", default=None, help="Grad-CAM layer (default: last conv block)")
    p.add_argument(
        "--samples",
        type=int_range(1),
        default=SALIENCY["samples"],
        help=f"SmoothGrad samples (default: {SALIENCY['samples']})",
    )
    p.add_argument(
        "--noise",
        type=float_range(0.0),
        default=SALIENCY["noise"],
        help="SmoothGrad noise sigma as a fraction of the pixel range [0, 1] "
        f"(default: {SALIENCY['noise']})",
    )
    p.add_argument(
        "--steps",
        type=int_range(1),
        default=SALIENCY["steps"],
        help=f"Integrated Gradients steps (default: {SALIENCY['steps']})",
    )
    p.add_argument(
        "--baseline",
        default=SALIENCY["baseline"],
        help="Integrated Gradients baseline: black, white, blurred or a grey level in [0, 1] "
        f"(default: {SALIENCY['baseline']})",
    )
    p.add_argument(
        "--size",
        type=int_range(0),
        default=None,
        help="resize each image so its shorter side has SIZE pixels (default: the model's "
        "input size; 0 keeps the original size)",
    )
    p.add_argument(
        "--batch-size",
        type=int_or_auto(1),
        default=SALIENCY["internal_batch_size"],
        help="rows per pass: auto (sized for the device and image) or a number "
        f"(default: {SALIENCY['internal_batch_size']})",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", default=".", metavar="DIR", help="output folder (default: .)")
    out.add_argument("-o", "--output", metavar="FILE", help="output PNG (one image, one method)")
    p.add_argument("--save-raw", action="store_true", help="also write the raw map as .npy")
    p.add_argument("--panel", action="store_true", help="write photo | map | overlay panels")
    p.add_argument("--cmap", default=None, help="viridis, inferno, diverging or gray")
    p.add_argument(
        "--clip",
        type=float_range(0.0, 100.0, lo_open=True),
        default=SALIENCY["clip"],
        help=f"clip the map at this percentile before scaling (default: {SALIENCY['clip']:g})",
    )
    p.add_argument(
        "--alpha",
        type=float_range(0.0, 1.0),
        default=SALIENCY["alpha"],
        help=f"heat map opacity (default: {SALIENCY['alpha']:g})",
    )
    p.set_defaults(func=run)


def _methods(text: str) -> list[str]:
    from ..attribution import METHODS, get_method

    if text.strip() == "all":
        return list(METHODS)
    names = [get_method(t.strip())[0] for t in text.split(",") if t.strip()]
    return list(dict.fromkeys(names))


def _options(args, method: str) -> dict:
    """The CLI options the method takes, as keywords for saliency()."""
    from ..attribution import method_options

    try:
        baseline = float(args.baseline)
    except ValueError:
        baseline = args.baseline
    given = {
        "samples": args.samples,
        "noise": args.noise,
        "steps": args.steps,
        "baseline": baseline,
        "layer": args.layer,
    }
    return {k: v for k, v in given.items() if k in method_options(method)}


def _load(path: str, size: int | None, model):
    from torchvision.transforms.v2.functional import resize

    from ..io import read_image

    image = read_image(path)
    side = min(model.input_size) if size is None else size
    if side and min(image.shape[-2:]) != side:
        image = resize(image, [side], antialias=True)
    return image


def _validate(args, model, methods: list[str]) -> None:
    """Fail before any image is read: the target, layer and colours depend only on the model."""
    from ..attribution import make_baseline, resolve_target
    from ..colormaps import table
    from ..errors import UsageError
    from ..hooks import check_layer

    resolve_target(model, args.target)
    if args.layer:
        if not any("layer" in _options(args, m) for m in methods):
            raise UsageError("--layer is for gradcam and guided_gradcam; add --method gradcam")
        check_layer(model, args.layer)
    if "integrated_gradients" in methods:
        import torch

        make_baseline(torch.zeros(1, 3, 2, 2), _options(args, "integrated_gradients")["baseline"])
    if args.cmap:
        table(args.cmap)


def run(args) -> int:
    from ..attribution import METHODS, reduce, saliency
    from ..errors import DreamvizError, UsageError
    from ..io import save_png, versions
    from ..visualize import overlay, panel

    methods = _methods(args.method)
    if args.output and (len(args.images) > 1 or len(methods) > 1):
        raise UsageError("-o FILE takes one image and one method; use --out DIR for more")
    model = _load_model(args)
    _validate(args, model, methods)
    failed, usage_only = 0, True
    for path in args.images:
        try:
            image = _load(path, args.size, model)
            for method in methods:
                opts = _options(args, method)
                maps, info = saliency(
                    model,
                    image,
                    args.target,
                    method,
                    reduce=None,
                    internal_batch_size=args.batch_size,
                    return_info=True,
                    **opts,
                )
                raw, m = maps[0], reduce(maps, METHODS[method].reduce)[0]
                out = _out_path(args, path, method)
                style = dict(cmap=args.cmap, alpha=args.alpha, clip=args.clip)
                if args.panel:
                    caption = f"{method}: {info.targets[0]}"
                    picture = panel(image, m, model=model, caption=caption, **style)
                else:
                    picture = overlay(image, m, **style)
                recipe = {
                    "command": "saliency",
                    "image": os.path.basename(path),
                    "model": model.name,
                    "weights": model.weights,
                    "method": method,
                    "target": info.targets[0],
                    "options": opts,
                    "versions": versions(),
                }
                if info.completeness_error is not None:
                    rel = float(info.relative_error[0])
                    recipe["completeness_error"] = rel
                    print(
                        f"{path}: integrated_gradients completeness error {rel:.2%} of "
                        f"f(x) - f(baseline) at {args.steps} steps",
                        file=sys.stderr,
                    )
                emit(save_png(out, picture, recipe))
                if args.save_raw:
                    emit(_save_npy(out.with_suffix(".npy"), raw.cpu().numpy()))
        except DreamvizError as e:
            if args.debug:
                raise
            failed += 1
            usage_only = usage_only and isinstance(e, UsageError)
            print(f"dreamviz: error: {path}: {e.for_cli(FLAGS)}", file=sys.stderr)
    if failed == len(args.images) and usage_only:
        return 2
    return 1 if failed else 0


def _load_model(args):
    from . import load_from_args

    return load_from_args(args)


def _out_path(args, image_path: str, method: str) -> Path:
    if args.output:
        return Path(args.output)
    return Path(args.out) / f"{Path(image_path).stem}_{method}.png"


def _save_npy(path: Path, array) -> str:
    import numpy as np

    from ..io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array.astype("float32"))
    return str(path)
