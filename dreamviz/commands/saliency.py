"""``dreamviz saliency IMAGE...``: saliency maps as overlay PNGs (and raw ``.npy`` arrays)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..defaults import SALIENCY
from . import (
    FLAGS,
    add_image_args,
    add_model_args,
    emit,
    float_range,
    int_or_auto,
    int_range,
    output,
    parent,
)

#: what -o may end with: the format follows the suffix (the recipe: PNG text, JPEG comment)
SUFFIXES = [".png", ".jpg", ".jpeg", ".webp"]


def baseline(text: str):
    """argparse type: black, white, blurred, or a grey level in [0, 1]."""
    import argparse

    word = str(text).strip().lower()
    if word in ("black", "white", "blurred"):
        return word
    try:
        value = float_range(0.0, 1.0)(word)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"unknown baseline {text!r}; give --baseline black, white, blurred or a grey level "
            "in [0, 1]"
        ) from None
    return value


baseline.range = "black, white, blurred or [0, 1]"


def add_parser(sub) -> None:
    from ..attribution import METHODS
    from ..visualize import SIGNS

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
        type=int_range(1, 100_000),
        default=SALIENCY["samples"],
        help=f"SmoothGrad samples (default: {SALIENCY['samples']})",
    )
    p.add_argument(
        "--noise",
        type=float_range(0.0, 10.0),
        default=SALIENCY["noise"],
        help="SmoothGrad noise sigma as a fraction of the pixel range [0, 1] "
        f"(default: {SALIENCY['noise']})",
    )
    p.add_argument(
        "--steps",
        type=int_range(1, 100_000),
        default=SALIENCY["steps"],
        help=f"Integrated Gradients steps (default: {SALIENCY['steps']})",
    )
    p.add_argument(
        "--baseline",
        type=baseline,
        default=SALIENCY["baseline"],
        help="Integrated Gradients baseline: black, white, blurred or a grey level in [0, 1] "
        f"(default: {SALIENCY['baseline']})",
    )
    p.add_argument(
        "--size",
        type=int_range(0, 8192),
        default=None,
        help="resize each image so its shorter side has SIZE pixels (default: the model's "
        "input size; 0 keeps the original size)",
    )
    p.add_argument(
        "--batch-size",
        type=int_or_auto(1, 4096),
        default=SALIENCY["internal_batch_size"],
        help="rows per pass: auto (sized for the device and image) or a number "
        f"(default: {SALIENCY['internal_batch_size']})",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", default=".", metavar="DIR", help="output folder (default: .)")
    out.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="output file (one image, one method): .png (with the recipe), .jpg or .webp",
    )
    p.add_argument("--save-raw", action="store_true", help="also write the raw map as .npy")
    p.add_argument("--panel", action="store_true", help="write photo | map | overlay panels")
    p.add_argument(
        "--cmap",
        default=None,
        help="inferno, viridis, gray, diverging_dark or diverging "
        "(default: diverging_dark for --sign signed, else inferno)",
    )
    p.add_argument(
        "--sign",
        choices=SIGNS,
        default=None,
        help="which part of the map is drawn: abs (|map|), positive, negative, or signed (both, "
        f"in two colours) (default: per method: {_per_method('sign')})",
    )
    p.add_argument(
        "--smooth",
        type=float_range(0.0, 1.0),
        default=None,
        help="display smoothing: Gaussian sigma as a fraction of the map's shorter side, so "
        f"pixel-sparse maps show regions (0: none; default: per method: {_per_method('smooth')}"
        "); --save-raw arrays are never smoothed",
    )
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
        help=f"heat map opacity where the map is high (default: {SALIENCY['alpha']:g})",
    )
    p.add_argument(
        "--dim",
        type=float_range(0.0, 1.0),
        default=SALIENCY["dim"],
        help="how much the photo darkens (and greys) where the map is low; 0 keeps the photo "
        f"(default: {SALIENCY['dim']:g})",
    )
    add_image_args(p)
    p.set_defaults(func=run, memory_hint=memory_hint)


def memory_hint(args) -> str:
    knobs = ["--batch-size (rows per pass)", "--size"]
    method = str(args.method)
    if "integrated" in method or method.strip() in ("all", "ig"):
        knobs.insert(0, "--steps (integrated_gradients keeps a gradient image per step)")
    if "smooth" in method or method.strip() == "all":
        knobs.append("--samples")
    return "lower " + ", ".join(knobs)


def _per_method(key: str) -> str:
    """A per-method display default as help text: 'gradient abs, smoothgrad abs, ...'."""
    return ", ".join(
        f"{m} {v:g}" if isinstance(v, float) else f"{m} {v}" for m, v in SALIENCY[key].items()
    )


def _methods(text: str) -> list[str]:
    from ..attribution import METHODS, get_method
    from ..errors import UsageError, arg, split_list

    if text.strip() == "all":
        return list(METHODS)
    if not text.replace(",", "").strip():
        raise UsageError(
            f"{arg('method')} {text!r} names no method; give one of {', '.join(METHODS)}"
        )
    names = [get_method(t)[0] for t in split_list(text, "method", "gradcam,smoothgrad")]
    return list(dict.fromkeys(names))


def _options(args, method: str) -> dict:
    """The CLI options the method takes, as keywords for saliency()."""
    from ..attribution import method_options

    given = {
        "samples": args.samples,
        "noise": args.noise,
        "steps": args.steps,
        "baseline": args.baseline,
        "layer": args.layer,
    }
    return {k: v for k, v in given.items() if k in method_options(method)}


def _load(path: str, size: int | None, model):
    """The image, its shorter side resized to ``size`` (default: the model's), held to
    MAX_AREA_FACTOR times that side squared when its aspect ratio is extreme."""
    import math
    import warnings

    from torchvision.transforms.v2.functional import resize

    from ..defaults import MAX_AREA_FACTOR
    from ..errors import DreamvizWarning
    from ..io import read_image

    image = read_image(path)
    side = min(model.input_size) if size is None else size
    h, w = image.shape[-2:]
    if side and min(h, w) != side:
        budget = side * side * MAX_AREA_FACTOR
        if h * w * (side / min(h, w)) ** 2 > budget:
            scale = math.sqrt(budget / (h * w))
            shape = [max(1, int(h * scale)), max(1, int(w * scale))]
            warnings.warn(
                DreamvizWarning(
                    f"{path} is {w}x{h}: resized to {shape[1]}x{shape[0]}, not {side} px on its "
                    f"shorter side, to stay within {MAX_AREA_FACTOR}x {side}x{side} pixels"
                ),
                stacklevel=2,
            )
            return resize(image, shape, antialias=True)
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
    import torch

    from ..attribution import METHODS, reduce, saliency
    from ..errors import DreamvizError, UsageError
    from ..io import save_image, versions
    from ..visualize import overlay, panel

    methods = _methods(args.method)
    if args.output is not None and (len(args.images) > 1 or len(methods) > 1):
        raise UsageError("-o FILE takes one image and one method; use --out DIR for more")
    outs = _out_paths(args, methods)  # before the model loads: fail early
    model = _load_model(args)
    _validate(args, model, methods)
    failed, usage_only = 0, True
    images = list(dict.fromkeys(args.images))  # an image named twice is done once
    for path in images:
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
                if not torch.isfinite(maps).all():
                    raise DreamvizError(
                        f"the {method} map holds NaN or inf: the model's output or its "
                        "gradient is not finite on this image; check --weights"
                    )
                raw, m = maps[0], reduce(maps, METHODS[method].reduce)[0]
                out = outs[path, method]
                display = {
                    "sign": args.sign or SALIENCY["sign"][method],
                    "smooth": SALIENCY["smooth"][method] if args.smooth is None else args.smooth,
                    "clip": args.clip,
                    "alpha": args.alpha,
                    "dim": args.dim,
                }
                style = dict(display, cmap=args.cmap)
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
                    "display": dict(display, cmap=args.cmap),
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
                emit(save_image(out, picture, recipe))
                if args.save_raw:
                    emit(_save_npy(out.with_suffix(".npy"), raw.cpu().numpy()))
        except DreamvizError as e:
            if args.debug:
                raise
            failed += 1
            usage_only = usage_only and isinstance(e, UsageError)
            print(f"dreamviz: error: {path}: {e.for_cli(FLAGS)}", file=sys.stderr)
    if failed == len(images) and usage_only:
        return 2
    return 1 if failed else 0


def _load_model(args):
    from . import load_from_args

    return load_from_args(args)


def _out_paths(args, methods: list[str]) -> dict[tuple[str, str], Path]:
    """(image, method) -> the file written, every one checked before any work; two inputs
    that would write one file (a/x.jpg and b/x.jpg) are refused rather than overwritten."""
    from ..errors import UsageError

    if args.output is not None:
        why = "the format follows the suffix"
        path = output.file(args.output, "-o", SUFFIXES, why, folder_flag="--out")
        if args.save_raw:
            output.inside(path.with_suffix(".npy"), "-o")
        return {(args.images[0], methods[0]): path}
    folder = output.folder(args.out, "--out", file_flag="-o")
    outs: dict[tuple[str, str], Path] = {}
    seen: dict[Path, str] = {}
    for image in dict.fromkeys(args.images):
        for method in methods:
            path = output.inside(folder / f"{Path(image).stem}_{method}.png", "--out")
            if path in seen:
                raise UsageError(
                    f"{seen[path]} and {image} would both write {path}; run them separately "
                    "with their own --out"
                )
            seen[path] = image
            outs[image, method] = path
            if args.save_raw:
                output.inside(path.with_suffix(".npy"), "--out")
    return outs


def _save_npy(path: Path, array) -> str:
    import numpy as np

    from ..io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array.astype("float32"))
    return str(path)
