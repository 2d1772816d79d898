"""Deep dream: amplify what a layer sees in a photo, octave by octave, for any image size.

``dream(model, image)`` runs the classic recipe (google/deepdream):

* the photo is shrunk into ``octaves`` levels, each ``octave_scale`` times smaller (torch's
  antialiased bilinear resize); the smallest is dreamed first, then the detail the dream added
  (dreamed - base) is upsampled and added to the next level's base, up to the full size;
* each octave is ONE call of :func:`dreamviz.engine.render` (the one optimization loop) on raw
  pixels kept in [0, 1] (``valid="clamp"``), with a random roll of up to ``jitter`` px per
  step, plain SGD and the gradient normalized by its mean absolute value;
* images larger than ``tile`` are processed as equal tiles whose gradients are accumulated; the
  roll moves the content under the tiles every step, so no seam stays in one place.

**Step-size units.** ``lr`` is in the classic 0-255 pixel units: after normalization the mean
absolute change per step is ``lr / 255`` in our [0, 1] pixel units (``lr=1.5`` is DeepDream's
default: a mean change of 1.5 grey levels per step).

**Objectives.** ``None`` picks a per-model default layer (:data:`DEFAULT_LAYERS`); a layer name
dreams that layer (mean of squares, ``objectives.layer``); ``"LAYER:CHANNEL"`` a unit; a class
name or index its logit; ``{"blocks.6": 1, "blocks.10": 0.5}`` a weighted sum of layers; any
:class:`~dreamviz.objectives.Objective` as it is.

**Guided dream** (``guide=IMAGE``): Google's guide objective. Each position i of the dreamed
layer is pushed toward the guide feature g_j* that matches it best: the objective is the mean
over positions of ``<x_i, g_j*>`` (x: the image's features, g: the guide's, same layer), whose
gradient at i is exactly g_j*, as in the notebook. We pick j* by cosine similarity
(``guide_mode="match"``); Google's raw dot product (``"dot"``) favours the guide's largest
features whatever their direction, and on EfficientNet-Lite0 it moved the features AWAY from
the guide's. ``"mean"`` uses the simpler dot product with the guide's mean feature
(``objectives.direction``). The guide's features are computed once, with its longer side
scaled down to at most twice the model's input size.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from . import defaults as D
from . import display
from . import objectives as obj_mod
from . import transforms as tf_mod
from .engine import render, seen_as, tile_boxes
from .errors import DreamvizWarning, UsageError, arg
from .hooks import LOGITS, Capture, as_nchw, check_input_size, check_layer, num_channels, probe
from .io import as_image, resize
from .models import as_vision_model
from .objectives import Objective
from .param import image_param
from .results import DreamResult

DEFAULT_LAYERS = D.DREAM_LAYERS  # a layer per model that gives the classic look

MIN_SIDE = 32  # no octave is dreamed below this many pixels on its shorter side
MIN_TILE = 64
PIXEL_UNITS = 255.0  # lr is given in 0-255 grey levels
_OCTAVE_SEED = 1_000_003  # octave k of seed s uses render seed s * _OCTAVE_SEED + k


# ------------------------------------------------------------------------- objectives


def default_layer(model) -> str:
    """The default dream layer: from :data:`DEFAULT_LAYERS`, else the family's (a middle block
    for transformers, ``defaults.DREAM_FAMILY_LAYERS``), else the last top-level-most layer
    whose output still has 1/16 of the input resolution (stride 16), like inception4c."""
    model = as_vision_model(model)
    if model.name in DEFAULT_LAYERS:
        return DEFAULT_LAYERS[model.name]
    table = probe(model)
    for prefix, pattern in D.DREAM_FAMILY_LAYERS.items():
        if model.name.startswith(prefix):
            blocks = [n for n in table if n.startswith("encoder.layers.") and n.count(".") == 2]
            name = pattern.format(middle=max(0, len(blocks) // 2 - 1))
            if name in table:
                return name
    h = model.input_size[0]
    cands = [
        info.name
        for info in table.values()
        if info.calls == 1
        and info.layout is not None
        and info.layout.grid is not None
        and info.layout.grid[0] >= h / 16
    ]
    if not cands:
        raise UsageError(
            f"no default dream layer for {model.name}; pass a layer, e.g. "
            f"{arg('objective', 'NAME')} "
            f"(see dreamviz.layers({model.name!r}))"
        )
    depth = min(c.count(".") for c in cands)
    return [c for c in cands if c.count(".") == depth][-1]


def _guide_features(model, guide, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """The guide image's activations at ``layers`` (C x H x W each), computed once."""
    image = as_image(guide)
    limit = 2 * max(model.input_size)
    h, w = image.shape[-2:]
    if max(h, w) > limit:
        s = limit / max(h, w)
        image = resize(image, (max(1, round(h * s)), max(1, round(w * s))))
    _check_workable(model, list(layers), [tuple(image.shape[-2:])], what="the guide image")
    with Capture(model, layers) as cap, torch.no_grad():
        acts = cap(image.unsqueeze(0).to(model.device))
    table = probe(model)
    return {k: as_nchw(v, table[k].layout)[0].detach().float() for k, v in acts.items()}


def guide_objective(layer: str, features: torch.Tensor, mode: str = "match") -> Objective:
    """Guided-dream objective at ``layer`` given the guide's features there (C x H x W).

    ``"match"``: for each position, the guide feature closest in direction (cosine); the
    value is the mean over positions of the dot product with it, so the gradient at each
    position is that guide feature (Google's objective_guide, with cosine matching).
    ``"dot"``: Google's exact rule, matching by raw dot product (it favours the guide's largest
    features whatever their direction). ``"mean"``: dot product with the guide's mean feature.
    """
    feats = features.flatten(1) if features.dim() > 1 else features.view(-1, 1)  # C x Q
    if mode == "mean":
        o = obj_mod.direction(layer, feats.mean(1))
        o.name = f"guide({layer}, mean)"
        return o
    if mode not in ("match", "dot"):
        raise UsageError(f"unknown guide mode {mode!r}; use match, dot or mean")
    keys = F.normalize(feats, dim=0) if mode == "match" else feats

    def compute(f, raw, layout):
        x = f.flatten(2)  # N x C x P
        g = feats.to(x.device, x.dtype)
        with torch.no_grad():
            q = F.normalize(x, dim=1) if mode == "match" else x
            best = torch.einsum("ncp,cq->npq", q, keys.to(x.device, x.dtype)).argmax(-1)
        target = g[:, best].permute(1, 0, 2)  # N x C x P: the matched guide feature
        return (x * target).sum(1).mean(-1)

    def check(model):
        info = check_layer(model, layer)
        n = num_channels(info)
        if n is not None and n != feats.shape[0]:
            raise UsageError(f"the guide has {feats.shape[0]} channels at {layer}, not {n}")
        return info

    name = f"guide({layer}{'' if mode == 'match' else ', ' + mode})"
    return obj_mod.on_layer(name, layer, ("guide", layer), compute, check, None)


def _layer_weights(spec) -> dict[str, float] | None:
    """A layer name, a list of names, or {name: weight} -> {name: weight}; None otherwise."""
    if isinstance(spec, str):
        return {spec: 1.0}
    if isinstance(spec, Mapping):
        return {str(k): float(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)) and all(isinstance(s, str) for s in spec):
        return {s: 1.0 for s in spec}
    return None


def make_objective(
    model, objective=None, guide=None, guide_mode: str = D.DREAM["guide_mode"]
) -> Objective:
    """Build and bind the dream objective (see the module docstring for what ``objective``
    may be); with ``guide``, the guide objective at each of the objective's layers."""
    model = as_vision_model(model)
    if objective is None:
        objective = default_layer(model)
    if guide is not None:
        weights = _layer_weights(objective)
        if weights is None or any(":" in k for k in weights):
            raise UsageError(
                "a guided dream works on layers; give the objective as layer names "
                f"(e.g. {arg('objective', 'blocks.8')}), not units, classes or an Objective"
            )
        for name in weights:
            check_layer(model, name)
        feats = _guide_features(model, guide, list(weights))
        terms = [_weighted(guide_objective(k, feats[k], guide_mode), w) for k, w in weights.items()]
        return sum(terms).bind(model)
    if isinstance(objective, Objective):
        return objective.bind(model)
    if isinstance(objective, int):
        return obj_mod.class_logit(objective).bind(model)
    weights = _layer_weights(objective)
    if weights is None:
        raise UsageError(
            f"{arg('objective')} must be a layer, unit, class, dict or Objective: {objective!r}"
        )
    terms = [_weighted(obj_mod.parse(name, model), w) for name, w in weights.items()]
    return sum(terms).bind(model)


def _weighted(term: Objective, weight: float) -> Objective:
    return term if weight == 1.0 else weight * term


# ------------------------------------------------------------------------- images


def octave_sizes(h: int, w: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Sizes of the octaves, smallest first, the last being (h, w)."""
    return [
        (max(1, round(h / scale**k)), max(1, round(w / scale**k))) for k in reversed(range(octaves))
    ]


def zoom_image(
    image: torch.Tensor, zoom: float = D.DREAM["zoom"], rotate: float = D.DREAM["rotate"]
) -> torch.Tensor:
    """Zoom into the centre by ``zoom`` and rotate by ``rotate`` degrees, keeping the size: one
    bilinear resampling (edges reflected where a rotation uncovers them)."""
    x = image if image.dim() == 4 else image.unsqueeze(0)
    n, _, h, w = x.shape
    out = tf_mod.affine(
        x, [zoom] * n, [rotate] * n, [(0.0, 0.0)] * n, (h, w), padding_mode="reflection"
    ).clamp(0, 1)
    return out if image.dim() == 4 else out[0]


# ------------------------------------------------------------------------- gradient norms


def lap_normalizer(levels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Laplacian-pyramid gradient normalization (the TensorFlow DeepDream tutorial's
    lap_normalize): split each image's gradient into ``levels`` frequency bands, scale each band
    to unit standard deviation, merge; then scale to unit mean |g| so ``lr`` keeps its meaning.
    Low frequencies get as much weight as high ones, which gives smoother dreams."""
    if levels < 1:
        raise UsageError(f"{arg('lap_levels')} must be >= 1, got {levels}")

    def std(t):
        return t.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-10).view(-1, 1, 1, 1)

    def normalize(g: torch.Tensor) -> torch.Tensor:
        highs, cur = [], g
        for _ in range(levels - 1):
            h, w = cur.shape[-2:]
            if min(h, w) < 4:
                break
            low = F.interpolate(cur, size=(-(-h // 2), -(-w // 2)), mode="bilinear", antialias=True)
            highs.append(cur - F.interpolate(low, size=(h, w), mode="bilinear"))
            cur = low
        out = cur / std(cur)
        for hi in reversed(highs):
            out = F.interpolate(out, size=hi.shape[-2:], mode="bilinear") + hi / std(hi)
        return out / out.flatten(1).abs().mean(1).clamp_min(1e-12).view(-1, 1, 1, 1)

    return normalize


# ------------------------------------------------------------------------- size checks


def _fed_shapes(sizes: Sequence[tuple[int, int]], tile: int | None) -> list[tuple[int, int]]:
    """The input shapes the model will see: each octave, or its tiles when it is tiled."""
    shapes = set()
    for h, w in sizes:
        if tile is None or (h <= tile and w <= tile):
            shapes.add((h, w))
        else:
            shapes.update((y1 - y0, x1 - x0) for y0, y1, x0, x1 in tile_boxes(h, w, tile))
    return sorted(shapes)


def _workable(model, layers: list[str], shape: tuple[int, int]) -> str | None:
    """None if the model can dream ``layers`` at ``shape``; else why not."""
    if min(shape) < MIN_SIDE:
        return f"{shape[1]}x{shape[0]} px is below the {MIN_SIDE} px minimum"
    if min(shape) >= min(model.input_size) or model.fixed_size:
        return None  # the model's own input size always works (fixed-size models resize)
    try:  # render() refuses a size at which the whole network cannot run: so must we
        check_input_size(model, shape)
    except UsageError as e:
        why = type(e.__cause__).__name__ if e.__cause__ else "a layer has no pixels left"
        return f"the model fails at {shape[1]}x{shape[0]} px ({why})"
    hooked = [name for name in layers if name != LOGITS]
    try:
        with Capture(model, layers) as cap, torch.no_grad():
            acts = cap(torch.full((1, 3, *shape), 0.5, device=model.device))
    except Exception as e:  # noqa: BLE001 - any failure inside the model means "too small"
        return f"the model fails at {shape[1]}x{shape[0]} px ({type(e).__name__})"
    for name in hooked:
        a = acts[name]
        if a.dim() == 4 and min(a.shape[-2:]) < 1:
            return f"{name} has no pixels left at {shape[1]}x{shape[0]} px"
    return None


def _check_workable(model, layers, shapes, what: str) -> None:
    for shape in shapes:
        why = _workable(model, layers, shape)
        if why:
            raise UsageError(
                f"{what} is too small for {as_vision_model(model).name}: {why}; give a larger image"
            )


def plan_octaves(model, layers, h: int, w: int, octaves: int, scale: float, tile):
    """Octave sizes (smallest first), with fewer octaves (and a warning) if the deepest would
    be too small for the model; a UsageError if even the full-size image is."""
    if min(h, w) < MIN_SIDE:  # said of the image itself, not of a tile or octave of it
        raise UsageError(
            f"the {w}x{h} image is too small for {as_vision_model(model).name}: its shorter side "
            f"is below the {MIN_SIDE} px minimum; give a larger image"
        )
    asked = octaves
    while True:
        sizes = octave_sizes(h, w, octaves, scale)
        shapes = _fed_shapes(sizes, tile)
        if octaves == 1:
            _check_workable(model, layers, _fed_shapes(sizes, tile), f"the {w}x{h} image")
            break
        if all(_workable(model, layers, s) is None for s in shapes):
            break
        octaves -= 1
    if octaves < asked:
        warnings.warn(
            DreamvizWarning(
                f"the {w}x{h} image is too small for {asked} octaves at scale {scale:g}; "
                f"using {octaves} (give a larger image or a smaller {arg('octave_scale')})"
            ),
            stacklevel=3,
        )
    return sizes


# ------------------------------------------------------------------------- the dream


def _check_args(octaves, octave_scale, steps, lr, jitter, tile, lap_levels):
    if octaves < 1:
        raise UsageError(f"{arg('octaves')} must be >= 1, got {octaves}")
    if not octave_scale >= 1.0:
        raise UsageError(f"{arg('octave_scale')} must be >= 1, got {octave_scale}")
    if steps < 0:
        raise UsageError(f"{arg('steps')} must be >= 0, got {steps}")
    if not lr > 0:
        raise UsageError(f"{arg('lr')} must be > 0, got {lr}")
    if jitter < 0:
        raise UsageError(f"{arg('jitter')} must be >= 0, got {jitter}")
    if tile is not None and tile < MIN_TILE:
        raise UsageError(
            f"{arg('tile')} must be >= {MIN_TILE} px (or None for no tiling), got {tile}"
        )
    if lap_levels is not None and lap_levels < 1:
        raise UsageError(f"{arg('lap_levels')} must be >= 1, got {lap_levels}")


def _octave_callback(callback, bar, done: int, total: int) -> Callable:
    """render()'s per-step callback for one octave: the dream's callback counts steps over
    all octaves, and the dream's bar advances."""

    def step_cb(step, _steps, values):
        if callback is not None:
            callback(done + step, total, float(values[0]))
        if bar is not None:
            bar.update(1, float(values[0]))

    return step_cb


def _octave(model, objective, start: torch.Tensor, k: int, o: SimpleNamespace, step_cb, live):
    """Dream one octave: ``o.steps`` steps of normalized gradient ascent on the pixels of
    ``start`` under a random roll, through :func:`render` (which tiles big images)."""
    return render(
        model,
        objective,
        param=image_param("pixel", init=start, decorrelate=False, valid="clamp"),
        transforms=[tf_mod.Roll(o.jitter)],
        settle=0.0,
        optimizer="sgd",
        lr=o.lr / PIXEL_UNITS,
        lr_schedule="constant",  # the classic dream: the same step size throughout
        steps=o.steps,
        grad_norm=o.grad_norm,
        seed=o.seed * _OCTAVE_SEED + k,
        device=o.device,
        tile=o.tile,
        callback=step_cb,
        progress=False,
        preview=live,
    )


def _dream_bound(
    model,
    image: torch.Tensor,
    objective: Objective,
    *,
    octaves: int,
    octave_scale: float,
    steps: int,
    lr: float,
    jitter: int,
    tile: int | None,
    lap_levels: int | None,
    seed: int,
    device,
    callback,
    progress=False,
    preview=None,
) -> DreamResult:
    start = time.perf_counter()
    h, w = image.shape[-2:]
    sizes = plan_octaves(model, list(objective.layers), h, w, octaves, octave_scale, tile)
    grad_norm = lap_normalizer(lap_levels) if lap_levels else "mean_abs"
    bases = [resize(image, s) for s in sizes]
    total = len(sizes) * steps
    result = DreamResult(image=image, sizes=list(sizes), objective=str(objective))
    result.seen_as = seen_as(model)  # the caption's top-1 class, when first shown
    detail = torch.zeros_like(bases[0])
    dreamed = bases[0]
    bar = display.progress_bar(progress, total, "dream")
    live = display.make_preview(preview, "dream")
    octave = SimpleNamespace(
        jitter=jitter, lr=lr, steps=steps, grad_norm=grad_norm, seed=seed, device=device, tile=tile
    )
    for k, base in enumerate(bases):
        detail = resize(detail, tuple(base.shape[-2:]))
        if live is not None:
            live.title = f"dream, octave {k + 1} of {len(bases)},"
        step_cb = _octave_callback(callback, bar, k * steps, total)
        out = _octave(model, objective, (base + detail).clamp(0, 1), k, octave, step_cb, live)
        dreamed = out.images[0]
        detail = dreamed - base
        result.history.append(out.history[:, 0])
        result.octaves = k + 1
        if out.interrupted:  # keep what was dreamed: its detail over the full-size photo
            result.interrupted = True
            dreamed = (image + resize(detail, (h, w))).clamp(0, 1)
            break
    if bar is not None:
        bar.close()
    result.image = dreamed
    result.seconds = time.perf_counter() - start
    if live is not None and not isinstance(preview, display.Preview):
        live.finish(result)  # the preview becomes the result (frames share one: not finished)
    return result


class _Values(torch.Tensor):
    """A dream's objective values as a callback gets them: a tensor with one value per image
    (one image), as :func:`render`'s callback gets them. Formatting it like the float it was
    (``f"{value:.3g}"``) still works for one release, with a DeprecationWarning."""

    def __format__(self, spec: str) -> str:
        if not spec or self.numel() != 1:
            return super().__format__(spec)
        warnings.warn(
            "a dream's callback(step, steps, values) gets values, a tensor of one value per "
            "image, not a float: write float(values[0])",
            DeprecationWarning,
            stacklevel=2,
        )
        return format(float(self), spec)


def _per_image(callback):
    """``callback(step, steps, values)``, the one callback signature (render's), for a loop
    that reports one float per step."""
    if callback is None:
        return None

    def report(step: int, steps: int, value: float) -> None:
        callback(step, steps, torch.tensor([value]).as_subclass(_Values))

    return report


def dream(
    model,
    image,
    objective=None,
    *,
    octaves: int = D.DREAM["octaves"],
    octave_scale: float = D.DREAM["octave_scale"],
    steps: int = D.DREAM["steps"],
    lr: float = D.DREAM["lr"],
    jitter: int = D.DREAM["jitter"],
    tile: int | None = D.DREAM["tile"],
    lap_levels: int | None = D.DREAM["lap_levels"],
    guide=None,
    guide_mode: str = D.DREAM["guide_mode"],
    seed: int = D.DREAM["seed"],
    device=None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    progress: bool | None = D.DISPLAY["progress"],
    preview: int | None = D.DISPLAY["preview"],
) -> DreamResult:
    """Deep-dream ``image`` (a path, PIL image or 3 x H x W tensor in [0, 1]).

    Returns a :class:`DreamResult` whose ``image`` has the input's size (3 x H x W, CPU); in a
    notebook it shows itself. ``lr`` is in 0-255 pixel units (see the module docstring);
    ``tile=None`` never tiles; ``callback(step, steps, values)``, as :func:`render`'s, is
    called after every step of every octave (``steps``: of all octaves; ``values``: the
    objective per image, a tensor of one value). ``progress``: a bar over all octaves' steps
    (None: where a person is watching); ``preview=k``: in a notebook, the image redrawn in
    place every k steps. The same seed gives the same image (bit for bit on the CPU),
    whatever the display.
    """
    _check_args(octaves, octave_scale, steps, lr, jitter, tile, lap_levels)
    model = as_vision_model(model)
    img = as_image(image)
    bound = make_objective(model, objective, guide, guide_mode)
    callback = _per_image(callback)
    result = _dream_bound(
        model,
        img,
        bound,
        octaves=octaves,
        octave_scale=octave_scale,
        steps=steps,
        lr=lr,
        jitter=jitter,
        tile=tile,
        lap_levels=lap_levels,
        seed=seed,
        device=device,
        callback=callback,
        progress=progress,
        preview=preview,
    )
    result.seen_as = seen_as(model)  # its caption's top-1 class, when first shown
    return result


def dream_frames(
    model,
    image,
    frames: int,
    objective=None,
    *,
    zoom: float = D.DREAM["zoom"],
    rotate: float = D.DREAM["rotate"],
    guide=None,
    guide_mode: str = D.DREAM["guide_mode"],
    seed: int = D.DREAM["seed"],
    **kwargs,
) -> Iterator[DreamResult]:
    """A zoom animation: frame 0 is the dream of ``image``; frame i is the dream of frame
    i - 1 zoomed by ``zoom`` (and rotated by ``rotate`` degrees). Yields each frame's
    :class:`DreamResult` as soon as it is ready; ``kwargs`` are :func:`dream`'s options."""
    if frames < 1:
        raise UsageError(f"{arg('frames')} must be >= 1, got {frames}")
    if not zoom > 0:
        raise UsageError(f"{arg('zoom')} must be > 0, got {zoom}")
    keys = ("octaves", "octave_scale", "steps", "lr", "jitter", "tile", "lap_levels")
    opts = {k: D.DREAM[k] for k in keys}
    opts.update(device=None, callback=None, progress=False, preview=None)
    unknown = set(kwargs) - set(opts)
    if unknown:
        raise UsageError(f"unknown options: {', '.join(sorted(unknown))}; use {', '.join(opts)}")
    opts.update(kwargs)
    opts["callback"] = _per_image(opts["callback"])
    _check_args(
        *(opts[k] for k in ("octaves", "octave_scale", "steps", "lr", "jitter")),
        opts["tile"],
        opts["lap_levels"],
    )
    model = as_vision_model(model)
    current = as_image(image)
    bound = make_objective(model, objective, guide, guide_mode)
    opts["preview"] = display.make_preview(opts["preview"], "dream")  # one image for all frames
    for i in range(frames):
        if i:
            current = zoom_image(current, zoom, rotate)
        res = _dream_bound(model, current, bound, seed=seed + i * 7919, **opts)
        res.seen_as = seen_as(model)
        current = res.image
        yield res
        if res.interrupted:
            return


__all__ = [
    "DEFAULT_LAYERS",
    "DreamResult",  # from dreamviz.results, re-exported where it was
    "default_layer",
    "dream",
    "dream_frames",
    "guide_objective",
    "lap_normalizer",
    "make_objective",
    "octave_sizes",
    "zoom_image",
]
