"""The recipe a rendered PNG carries, and everything that reads or writes one.

A recipe is a JSON dict stored in the PNG's text metadata (:func:`dreamviz.io.save_png`):

* ``command``: ``"render"``; ``model`` and ``weights`` (None: the model's default weights);
* ``targets``: ``[["unit", "blocks.8:20"], ["class", "tabby"], ...]``, one per target; with
  ``settings["batch"] = k`` each target has k images; ``index`` is this PNG's image, ``images``
  how many were rendered together, ``target`` its label and ``objective`` the full objective;
* ``settings``: every key of :data:`dreamviz.defaults.RENDER`, so a recipe is complete on its own;
* ``thresholds``, ``versions``; optionally ``frame``, ``stopped`` and ``gallery``.

:func:`make` writes one, :func:`read` reads one back, :func:`objective` turns targets into one
batched objective, :func:`render_kwargs` turns settings into :func:`dreamviz.render` arguments
and :func:`render_again` does all of it: ``render_again("old.png")`` is ``dreamviz render --from
old.png`` in Python. The command line that reproduces a PNG is derived from its recipe by
``dreamviz.commands.recipe.command_line`` (the CLI layer, which alone knows its flags).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from . import defaults
from .errors import UsageError, arg, suggest
from .hooks import LOGITS
from .io import read_image, read_recipe, resize, versions
from .objectives import Objective, diversity
from .objectives import parse as parse_target
from .regularizers import L1, L2, TV, Blur

COMMAND = "render"
KINDS = ("unit", "class")


def settings(**given) -> dict:
    """All render settings: :data:`dreamviz.defaults.RENDER` updated by ``given`` (an unknown
    key is an error, so a typo is never silently ignored)."""
    unknown = [k for k in given if k not in defaults.RENDER]
    if unknown:
        k = unknown[0]
        raise UsageError(
            f"unknown render setting {k!r}{suggest(k, defaults.RENDER)}; "
            f"use {', '.join(defaults.RENDER)}"
        )
    out = dict(defaults.RENDER)
    out.update(given)
    for key in ("crop_scale", "crop_scale_end"):  # as JSON stores them: a recipe reads back equal
        if out.get(key) is not None:
            out[key] = [float(x) for x in out[key]]
    return out


def targets_of(items: Sequence) -> list[list[str]]:
    """Normalize targets: ``"blocks.8:20"`` and ``("unit", "blocks.8:20")`` -> ``["unit", ...]``;
    ints and ``("class", x)`` -> ``["class", str(x)]``."""
    out = []
    for item in items:
        if isinstance(item, Objective):
            raise UsageError("a recipe's targets are strings; render an Objective directly")
        if isinstance(item, int) and not isinstance(item, bool):
            out.append(["class", str(item)])
        elif isinstance(item, str):
            out.append(["unit" if ":" in item else "class", item.strip()])
        elif isinstance(item, (list, tuple)) and len(item) == 2 and item[0] in KINDS:
            out.append([str(item[0]), str(item[1]).strip()])
        else:
            raise UsageError(
                f"target {item!r}: give 'LAYER:CHANNEL', a class, or ('unit'|'class', text)"
            )
    if not out:
        raise UsageError("no targets: give at least one unit LAYER:CHANNEL or class")
    return out


def objective(model, targets: Sequence, per_target: int = 1, diversity_weight: float = 0.0):
    """One batched objective for ``targets`` (each repeated ``per_target`` times, image i
    aimed by ``batch=i``), bound to ``model``, and the label of each image.

    ``diversity_weight`` subtracts Lucid's diversity term, which compares the images'
    activations, so it needs every target on one layer.
    """
    targets = targets_of(targets)
    if per_target < 1:
        raise UsageError(f"per_target must be >= 1, got {per_target}")
    per_image = [t for t in targets for _ in range(per_target)]
    n = len(per_image)
    terms = [
        parse_target(text, model, batch=i if n > 1 else None, kind=kind)
        for i, (kind, text) in enumerate(per_image)
    ]
    total = sum(terms)
    if diversity_weight:
        layers = {t.layers[0] for t in terms}
        if len(layers) != 1 or LOGITS in layers:
            raise UsageError(
                f"diversity compares activations, so it needs every unit on one layer; set "
                f"{arg('diversity')} to 0 or use units of one layer"
            )
        if n > 1:
            total = total - diversity_weight * diversity(layers.pop())
    return total.bind(model), [text for _, text in per_image]


def regularizers(s: dict) -> list:
    """The regularizers a recipe's settings ask for (weights l1, l2, tv, blur; 0 is off)."""
    out = []
    for cls, key in ((L1, "l1"), (L2, "l2"), (TV, "tv"), (Blur, "blur")):
        if s.get(key):
            out.append(cls(float(s[key])))
    return out


def init_image(path, size) -> torch.Tensor:
    """The photo to start from, centre-cropped to the aspect ratio of ``size`` (H, W) and
    resized to it: 3 x H x W in [0, 1]."""
    img = read_image(path)
    h, w = size
    ih, iw = img.shape[-2:]
    scale = max(h / ih, w / iw)
    ch, cw = min(ih, round(h / scale)), min(iw, round(w / scale))
    y0, x0 = (ih - ch) // 2, (iw - cw) // 2
    return resize(img[:, y0 : y0 + ch, x0 : x0 + cw], (h, w))


def _transforms(s: dict):
    """The transforms a recipe names; ``crops`` with the recipe's views and scale."""
    if s["transforms"] != "crops":
        return s["transforms"]
    from .transforms import crops

    end = s.get("crop_scale_end")
    return crops(
        None,
        views=int(s["crops"]),
        scale=tuple(float(x) for x in s["crop_scale"]),
        scale_end=None if end is None else tuple(float(x) for x in end),
    )


def render_kwargs(s: dict, model=None) -> dict:
    """Keyword arguments of :func:`dreamviz.render` from a recipe's settings (size: the
    model's input size when the settings say None; ``init``: the photo, read and fitted)."""
    size = s.get("size")
    if size is None and model is not None:
        size = tuple(model.input_size)
    init = init_image(s["init"], tuple(size)) if s.get("init") else None
    return dict(
        init=init,
        accentuate=float(s.get("accentuate") or 0.0),
        accentuate_layer=s.get("accentuate_layer"),
        spectrum=s.get("spectrum"),
        size=tuple(size) if isinstance(size, (list, tuple)) else size,
        param_kind=s["param"],
        decorrelate=bool(s["decorrelate"]),
        transforms=_transforms(s),
        settle=float(s["settle"]),
        regularizers=regularizers(s),
        optimizer=s["optimizer"],
        lr=float(s["lr"]),
        lr_schedule=s["lr_schedule"],
        steps=int(s["steps"]),
        seed=int(s["seed"]),
        amp=bool(s["amp"]),
    )


def make(
    *,
    model: str,
    weights: str | None,
    objective: Objective | str,
    targets: Sequence,
    labels: Sequence[str],
    index: int,
    settings: dict,
    thresholds: Sequence[int] = (),
    **extra,
) -> dict:
    """The recipe of image ``index`` of a render (see the module docstring)."""
    return {
        "command": COMMAND,
        "model": model,
        "weights": weights,
        "objective": str(objective),
        "target": labels[index],
        "targets": targets_of(targets),
        "index": int(index),
        "images": len(labels),
        "settings": dict(settings),
        "thresholds": [int(t) for t in thresholds],
        "versions": versions(),
        **extra,
    }


def read(path: str | os.PathLike) -> dict:
    """The render recipe of a PNG, completed with today's defaults for any setting it lacks."""
    recipe = read_recipe(path)
    if recipe.get("command") != COMMAND:
        raise UsageError(
            f"{str(path)!r} was written by `dreamviz {recipe.get('command', '?')}`, not render"
        )
    if not isinstance(recipe.get("targets"), list) or not recipe["targets"]:
        raise UsageError(f"the recipe in {str(path)!r} has no targets; it is damaged")
    known = {k: v for k, v in recipe.get("settings", {}).items() if k in defaults.RENDER}
    recipe["settings"] = settings(**known)
    return recipe


def version_changes(recipe: dict) -> str | None:
    """``"torch 2.1 -> 2.4, ..."`` when the recipe was made with other versions, else None."""
    old, new = recipe.get("versions", {}), versions()
    changed = [k for k in new if old.get(k) != new[k]]
    return ", ".join(f"{k} {old.get(k)} -> {new[k]}" for k in changed) or None


def render_again(path: str | os.PathLike, model=None, **overrides):
    """Render a PNG's recipe again: ``dreamviz render --from PNG`` from Python. ``overrides``
    change settings (``steps=512``); returns the :class:`~dreamviz.engine.RenderResult` of
    the whole batch the PNG was part of."""
    from .engine import render
    from .models import load_model

    recipe = read(path)
    s = settings(**{**recipe["settings"], **overrides})
    if model is None:
        model = load_model(recipe["model"], weights=recipe.get("weights"), device=s["device"])
    obj, labels = objective(model, recipe["targets"], int(s["batch"]), float(s["diversity"]))
    return render(model, obj, batch=len(labels), **render_kwargs(s, model))


__all__ = [
    "COMMAND",
    "make",
    "objective",
    "read",
    "regularizers",
    "render_again",
    "render_kwargs",
    "settings",
    "targets_of",
    "version_changes",
]
