"""``dreamviz render``: the image that maximizes a unit or a class (feature visualization).

Several ``--unit`` / ``--class`` targets render as one batch, one image each, in one pass per
step. Every PNG carries its full recipe in its text metadata, and ``--from OLD.png`` renders that
recipe again (bit for bit on the CPU); flags given beside ``--from`` override the recipe.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from pathlib import Path

from .. import defaults, recipes
from ..errors import UsageError
from ..settings import RenderSettings
from . import (
    add_image_args,
    add_model_args,
    emit,
    float_range,
    image_size,
    int_range,
    output,
    parent,
    scale_range,
    warn,
)

SETTINGS = defaults.RENDER  # every setting that shapes the image (CLI dest -> default)

#: the type of each numeric setting, shared by its flag and by the check of a --from recipe
#: (a PNG's metadata is input like any other: it may be damaged, or edited to hold NaN)
TYPES = {
    "batch": int_range(1, 256),
    "steps": int_range(1, 1_000_000),
    "lr": float_range(0.0, lo_open=True),
    "settle": float_range(0.0, 1.0),
    "seed": int_range(0, 2**62),
    "accentuate": float_range(0.0),
    **{name: float_range(0.0) for name in ("l1", "l2", "tv", "blur", "diversity")},
}


def _thresholds(text: str) -> list[int]:
    """argparse type: ``64,128,256`` -> sorted unique step counts >= 1 (an empty entry, as in
    ``64,,128``, is refused: a typo, not a default)."""
    if not all(v.strip() for v in str(text).split(",")):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty entry; write e.g. 64,128,256")
    try:
        values = sorted({int(v) for v in str(text).split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of step counts; write e.g. 64,128,256"
        ) from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: step counts must be 1 or more")
    return values


def _target(kind: str):
    def parse(text: str) -> list[str]:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"empty --{kind}")
        return [kind, text.strip()]

    return parse


def add_parser(sub) -> None:
    from ..optim import OPTIMIZERS, SCHEDULES
    from ..param import PARAMS
    from ..transforms import PRESETS

    p = sub.add_parser(
        "render",
        parents=[parent()],
        help="render the image that maximizes a unit or a class",
        description="Optimize an image so that a unit (LAYER:CHANNEL) or a class fires as "
        "strongly as possible. With no arguments it renders a default unit of the bundled "
        f"model ({defaults.RENDER_UNIT}) to {defaults.RENDER_OUT}. Several --unit/--class "
        "render as one batch. "
        "Each PNG stores its recipe; --from PNG renders it again.",
    )
    add_model_args(p, device=False)
    p.set_defaults(model=None)
    t = p.add_argument_group("what to render")
    t.add_argument(
        "--unit",
        dest="targets",
        action="append",
        type=_target("unit"),
        metavar="LAYER:CHANNEL",
        help="a channel to maximize, e.g. blocks.8:20 (a bare LAYER maximizes the whole layer); "
        "repeat for a batch",
    )
    t.add_argument(
        "--class",
        dest="targets",
        action="append",
        type=_target("class"),
        metavar="NAME_OR_INDEX",
        help="a class to maximize, by ImageNet name (case-insensitive) or index; repeatable",
    )
    t.add_argument(
        "--batch",
        type=TYPES["batch"],
        help=f"images per unit/class (default {defaults.RENDER['batch']}); use with --diversity "
        "to get different ones",
    )
    t.add_argument("--from", dest="recipe", metavar="PNG", help="render the recipe of a PNG again")
    o = p.add_argument_group("optimization")
    o.add_argument("--size", type=image_size, metavar="N|WxH", help="image size (default: model's)")
    o.add_argument("--steps", type=TYPES["steps"], help=f"default {defaults.RENDER['steps']}")
    o.add_argument("--lr", type=TYPES["lr"], help=f"default {defaults.RENDER['lr']}")
    o.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        help="constant, or cosine: a warm-up then a cosine decay "
        f"(default {defaults.RENDER['lr_schedule']})",
    )
    o.add_argument(
        "--optimizer", choices=sorted(OPTIMIZERS), help=f"default {defaults.RENDER['optimizer']}"
    )
    o.add_argument(
        "--param",
        choices=sorted(PARAMS),
        help=f"image parameterization (default {defaults.RENDER['param']})",
    )
    o.add_argument(
        "--no-decorrelate",
        dest="decorrelate",
        action="store_const",
        const=False,
        help="optimize RGB directly instead of ImageNet-decorrelated colour",
    )
    o.add_argument(
        "--transforms",
        choices=sorted(PRESETS),
        help=f"robustness transforms (default {defaults.RENDER['transforms']})",
    )
    o.add_argument(
        "--settle",
        type=TYPES["settle"],
        help=f"final fraction of steps without transforms (default {defaults.RENDER['settle']})",
    )
    o.add_argument(
        "--seed",
        type=TYPES["seed"],
        help=f"default {defaults.RENDER['seed']}; image i uses seed + i",
    )
    o.add_argument(
        "--crops",
        type=int_range(1, 64),
        help=f"--transforms crops: views per image and step (default {defaults.RENDER['crops']})",
    )
    o.add_argument(
        "--crop-scale",
        type=scale_range,
        metavar="LO,HI",
        help="--transforms crops: crop side as a fraction of the image's shorter side "
        f"(default {','.join(str(x) for x in defaults.RENDER['crop_scale'])})",
    )
    o.add_argument(
        "--crop-scale-end",
        type=scale_range,
        metavar="LO,HI",
        help="--transforms crops: the crop scale at the last step, reached linearly from "
        "--crop-scale (default: --crop-scale throughout)",
    )
    o.add_argument(
        "--spectrum",
        metavar="NPY",
        help="--param maco: the fixed magnitude spectrum (default: the shipped natural one; "
        "make one with `dreamviz spectrum DIR`)",
    )
    a = p.add_argument_group("start from a photo")
    a.add_argument("--init", metavar="PHOTO", help="start from this photo instead of noise")
    add_image_args(a)
    a.add_argument(
        "--accentuate",
        type=float_range(0.0, lo_open=True),
        metavar="W",
        help="feature accentuation: keep the photo's activations at a layer close (weight W; "
        "needs --init). Shows what in this photo drives the unit",
    )
    a.add_argument(
        "--accentuate-layer",
        metavar="LAYER",
        help="the layer kept close to the photo (default: the unit's own layer)",
    )
    r = p.add_argument_group("regularizers (weights, default 0)")
    for name, what in [
        ("l1", "mean |pixel - 0.5|"),
        ("l2", "mean (pixel - 0.5)^2"),
        ("tv", "total variation"),
        ("blur", "difference from a blurred copy"),
        ("diversity", "Gram dissimilarity across the batch (units on one layer)"),
    ]:
        r.add_argument(f"--{name}", type=TYPES[name], metavar="W", help=what)
    d = p.add_argument_group("device and output")
    d.add_argument("--device", help="auto (default), cpu, cuda or mps")
    d.add_argument(
        "--amp",
        action="store_const",
        const=True,
        help="bf16 autocast on CUDA (ignored elsewhere)",
    )
    d.add_argument(
        "--alpha",
        action="store_true",
        help="also write FILE_alpha.png (where the evidence is: accumulated |gradient|) and "
        "FILE_rgba.png (the picture shown only there)",
    )
    d.add_argument(
        "--thresholds",
        type=_thresholds,
        metavar="64,128,256",
        help="also write the image after these steps (FILE_0064.png, ...)",
    )
    d.add_argument(
        "-o", "--output", metavar="FILE", help=f"one image (default {defaults.RENDER_OUT})"
    )
    d.add_argument(
        "--out",
        metavar="DIR",
        help=f"folder for several images (default {defaults.RENDER_OUT_DIR}/)",
    )
    p.set_defaults(func=run, memory_hint=memory_hint)


def memory_hint(args) -> str:
    return "lower --size, or render fewer images at once (--batch, fewer --unit/--class)"


# ---------------------------------------------------------------- the recipe


def _from_recipe(path: str, key: str, value):
    """A setting read from a --from PNG, checked as its flag would be."""
    from ..optim import OPTIMIZERS, SCHEDULES
    from ..param import PARAMS
    from ..transforms import PRESETS

    def bad(why: str) -> UsageError:
        return UsageError(
            f"the recipe in {path} has {key} = {value!r} ({why}); the PNG is damaged or was "
            f"edited: give --{key.replace('_', '-')} yourself, or render it anew"
        )

    if key in TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("not a number")
        try:
            return TYPES[key](repr(value) if isinstance(value, float) else str(value))
        except argparse.ArgumentTypeError as e:
            raise bad(str(e)) from None
    choices = {
        "optimizer": OPTIMIZERS,
        "param": PARAMS,
        "transforms": PRESETS,
        "lr_schedule": SCHEDULES,
    }.get(key)
    if choices is not None and value not in choices:
        raise bad(f"not one of {', '.join(sorted(choices))}")
    if key in ("decorrelate", "amp") and not isinstance(value, bool):
        raise bad("not true or false")
    if key == "size" and value is not None:
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            raise bad("not [height, width]")
        try:
            image_size(f"{value[1]}x{value[0]}")
        except argparse.ArgumentTypeError as e:
            raise bad(str(e)) from None
    if key in ("crop_scale", "crop_scale_end") and value is not None:
        if not (isinstance(value, list) and len(value) == 2):
            raise bad("not [low, high]")
        try:
            scale_range(",".join(map(str, value)))
        except argparse.ArgumentTypeError as e:
            raise bad(str(e)) from None
    if key in ("init", "spectrum", "accentuate_layer", "device") and not (
        value is None or isinstance(value, str)
    ):
        raise bad("not a name")
    return value


def _merge_recipe(args) -> dict | None:
    """Fill unset options from ``--from PNG`` (if any), then from the defaults."""
    from ..models import check_name

    recipe = recipes.read(args.recipe) if args.recipe else None
    if args.accentuate and args.transforms is None and recipe is None:
        # closeness is measured against the photo as it is: no random geometry by default
        args.transforms = "none"
    if recipe is not None:
        were = recipes.version_changes(recipe)
        if were:
            print(
                f"dreamviz: note: {args.recipe} was made with other versions ({were}); "
                "the image may differ slightly",
                file=sys.stderr,
            )
    settings = (recipe or {}).get("settings", {})
    for key, default in SETTINGS.items():
        if getattr(args, key, None) is None:
            if key in settings:
                setattr(args, key, _from_recipe(args.recipe, key, settings[key]))
            else:
                setattr(args, key, default)
    if args.init is not None:
        args.init = os.path.abspath(args.init)  # the recipe must find it from anywhere
    if args.accentuate and args.init is None:
        raise UsageError("--accentuate keeps the picture close to a photo: add --init PHOTO")
    if args.accentuate and args.param == "maco":
        raise UsageError("--param maco cannot start from a photo; use --param fft or pixel")
    if args.model is None:
        args.model = (recipe or {}).get("model", defaults.MODEL)
        if recipe is not None and args.weights is None:
            args.weights = recipe.get("weights")
    check_name(args.model)  # an unknown model is named as such, before anything else
    if args.thresholds is None:  # --from a frame renders up to that frame only
        frame = (recipe or {}).get("frame")
        if frame is not None:
            if isinstance(frame, bool) or not isinstance(frame, int) or frame < 1:
                raise UsageError(
                    f"the recipe in {args.recipe} has frame = {frame!r}, not a step count; "
                    "the PNG is damaged or was edited"
                )
        args.thresholds = [int(frame)] if frame else []
    if not args.targets:
        if recipe is not None:
            args.targets = recipes.targets_of(recipe["targets"])
        elif args.model == defaults.MODEL:
            args.targets = [["unit", defaults.RENDER_UNIT]]
        else:
            raise UsageError(
                f"say what to render for {args.model}: --unit LAYER:CHANNEL or --class NAME "
                f"(`dreamviz layers {args.model}` lists the layers)"
            )
    return recipe


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace(":", "_")).strip("_") or "image"


def _output_paths(args, labels: list[str], recipe: dict | None) -> dict[int, Path]:
    """Image index -> output path, checked (dreamviz.commands.output) before any rendering."""
    n = len(labels)
    if args.output is not None and args.out is not None:
        raise UsageError("give -o FILE (one image) or --out DIR (several), not both")
    if recipe is not None and args.out is None:  # --from: the one image it names
        args.output = defaults.RENDER_OUT if args.output is None else args.output
    if args.output is not None:
        why = "the recipe that --from reads lives in the PNG"
        path = output.file(args.output, "-o", [".png"], why, folder_flag="--out")
        if recipe is not None:
            index = recipe.get("index", 0)
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise UsageError(
                    f"the recipe in {args.recipe} has index = {index!r}, not an image number; "
                    "the PNG is damaged or was edited"
                )
            return {min(index, n - 1): path}
        if n > 1:
            raise UsageError(f"-o names one file but {n} images are rendered; use --out DIR")
        return {0: path}
    if args.out is not None or n > 1:
        shown = defaults.RENDER_OUT_DIR if args.out is None else args.out
        folder = output.folder(shown, "--out", file_flag="-o")
        width = len(str(n - 1))
        return {
            i: output.inside(folder / f"{i:0{width}d}_{_slug(label)}.png", "--out")
            for i, label in enumerate(labels)
        }
    return {0: output.file(defaults.RENDER_OUT, "-o", [".png"])}


def _suffixed(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.stem}_{tag}{path.suffix}")


def _frame_path(path: Path, step: int) -> Path:
    return path.with_name(f"{path.stem}_{step:04d}{path.suffix}")


def _settings(args, model) -> RenderSettings:
    given = {key: getattr(args, key) for key in SETTINGS}
    given.update(device=model.device.type, size=args.size or model.input_size)
    return recipes.settings(**given)


def _progress(steps: int):
    from ..display import Bar

    bar = Bar(steps, "render", delay=0, terminal_only=True)

    def callback(step, total, values):
        bar.update(1, float(values.mean()) if step == total or step % 8 == 0 else None)

    return bar, callback


def _recipe(args, objective, labels, index: int, settings: dict) -> dict:
    """The recipe image ``index`` carries (:func:`dreamviz.recipes.make`)."""
    return recipes.make(
        model=args.model,
        weights=args.weights,
        objective=objective,
        targets=args.targets,
        labels=labels,
        index=index,
        settings=settings,
        thresholds=args.thresholds,
    )


def _stopped(rec: dict, result, error, frame_only) -> dict:
    """An image's recipe, with the frame it is and why the render stopped early, if it did."""
    if frame_only and error is None:
        rec["frame"] = frame_only
    if error is not None:
        rec["stopped"] = f"non-finite objective at step {error.step}"
    elif result.interrupted:
        rec["stopped"] = f"interrupted after {len(result.history)} steps"
    return rec


def _save(path, i: int, images, frames: dict, rec: dict, result) -> None:
    """Write image ``i`` to ``path``, its threshold frames, and (``--alpha``) its alpha map
    and RGBA picture; print each path. ``result`` is None after a non-finite objective."""
    from ..io import save_png

    for step, frame in sorted(frames.items()):
        emit(save_png(_frame_path(path, step), frame[i], {**rec, "frame": step}))
    emit(save_png(path, images[i], rec))
    if result is not None and result.alpha is not None:
        from ..visualize import alpha_map, with_alpha

        emit(save_png(_suffixed(path, "alpha"), alpha_map(result.alpha[i]), rec))
        emit(save_png(_suffixed(path, "rgba"), with_alpha(images[i], result.alpha[i]), rec))


def run(args) -> int:
    from ..engine import render
    from ..errors import NonFiniteError
    from ..models import load_model

    recipe = _merge_recipe(args)
    if args.thresholds and args.thresholds[-1] > args.steps:
        raise UsageError(
            f"--thresholds {args.thresholds[-1]} is beyond --steps {args.steps}; "
            "use step counts up to --steps"
        )
    planned = [text for _, text in recipes.targets_of(args.targets) for _ in range(args.batch)]
    paths = _output_paths(args, planned, recipe)  # before the model loads: fail early
    model = load_model(args.model, weights=args.weights, device=args.device)
    objective, labels = recipes.objective(model, args.targets, args.batch, args.diversity)
    settings = _settings(args, model)
    frame_only = (recipe or {}).get("frame") if args.recipe else None
    made = {i: _recipe(args, objective, labels, i, settings) for i in paths}

    bar, callback = _progress(args.steps)
    error = None
    with warnings.catch_warnings(record=True) as noted:
        warnings.simplefilter("always")
        try:
            result = render(
                model,
                objective,
                batch=len(labels),
                thresholds=args.thresholds,
                callback=callback,
                alpha=args.alpha,
                **recipes.render_kwargs(settings, model),
            )
            images, frames = result.images, result.frames
        except NonFiniteError as e:
            if e.last_good is None:  # nothing was made: nothing to save
                raise
            error = e
            images, frames = e.last_good.float().clamp(0, 1), {}
        finally:
            bar.close()
    warn(noted)

    if frame_only and frame_only in frames and error is None:
        images = frames[frame_only]
        frames = {}
    for i, path in paths.items():
        rec = _stopped(dict(made[i]), result if error is None else None, error, frame_only)
        _save(path, i, images, frames, rec, result if error is None else None)
    if error is not None:
        raise error
    if result.interrupted:
        print(
            f"dreamviz: interrupted after {len(result.history)} of {args.steps} steps; "
            "saved the image so far",
            file=sys.stderr,
        )
        return 130
    return 0
