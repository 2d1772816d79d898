"""The one optimization loop that render, dream and gallery share.

``render(model, objective, ...)`` runs gradient ascent on an image parameterization and returns
a :class:`RenderResult` with the images (N x 3 x H x W in [0, 1], on the CPU), the objective
value of every image at every step, and any threshold frames. The result shows itself in a
notebook (a grid with captions; :mod:`dreamviz.display`) and has ``to_pil``, ``save`` and
``show``. Progress: ``progress=True`` draws a bar (the default where a person is watching),
``preview=k`` redraws the images inline every k steps in a notebook, and
``callback(step, steps, values)`` is called after every step.

Each step costs one forward pass, truncated after the deepest layer the objective needs, and
one backward pass; images larger than ``tile`` are processed as tiles whose gradients are
accumulated, so memory stays bounded for any image size. Transforms that show each image
through several views (``"crops"``) put ``N * views`` rows through the network; when that is
more than :func:`dreamviz.batching.rows_per_pass` allows, the views go in several passes whose
gradients are accumulated (and on out-of-memory the views per pass are halved and the step
redone with the same random draws).
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace

import torch

from . import batching, display
from . import defaults as D
from . import optim as optim_mod
from . import transforms as tf_mod
from .errors import DreamvizWarning, NonFiniteError, UsageError, arg, integer
from .hooks import LOGITS, Capture, check_input_size
from .models import VisionModel, as_vision_model, classify, resolve_device
from .objectives import Objective, closeness
from .objectives import parse as parse_objective
from .param import ImageParam, image_param, image_seeds
from .regularizers import Blur, total_penalty
from .results import RenderResult

_TRANSFORM_SEED_OFFSET = 0x5EED


def seen_as(model) -> Callable[[torch.Tensor], list[tuple[str, float]] | None]:
    """A result's top-1 predictor (:attr:`RenderResult.predictions`): the model call lives
    here, in the module that makes the result, and runs once, when the result is first shown.
    It holds the model by a weak reference (a result keeps no model alive) and gives None once
    the model is gone or fails (a caption is never worth an error)."""
    ref = weakref.ref(model)

    def predict(images: torch.Tensor) -> list[tuple[str, float]] | None:
        m = ref()
        if m is None:
            return None
        try:
            return display.top1(classify(m, images), m.classes)
        except Exception:  # noqa: BLE001 - a caption is never worth an error
            return None

    return predict


def _describe(result: RenderResult, objective: Objective, model) -> None:
    """What the result shows beside its images: each image's own label, from the objective
    (:meth:`Objective.labels`), and the model's top-1 class (:func:`seen_as`)."""
    result.labels = objective.labels(result.images.shape[0])
    result.seen_as = seen_as(model)


TILE_ALIGN = 32  # the total stride of typical classifiers: tiles start on their grid


def _round_up(x: int, a: int) -> int:
    return -(-x // a) * a


def _tile_align(tile: int) -> int:
    return TILE_ALIGN if TILE_ALIGN <= tile // 2 else 8


def tile_boxes(h: int, w: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Split h x w into tiles of at most ``tile`` px: (y0, y1, x0, x1) boxes.

    Sizes are near-equal (ceil(h / n), rounded up to the alignment) so no thin remainder tile
    is left for the model, and tiles start on multiples of 32 px where the tile size allows,
    so a strided network samples each tile on the same grid as the whole image.
    """
    align = _tile_align(tile)

    def cuts(n_px: int) -> list[tuple[int, int]]:
        n = max(1, -(-n_px // tile))
        size = min(tile, _round_up(-(-n_px // n), align))
        starts = range(0, n_px, size)
        return [(a, min(n_px, a + size)) for a in starts]

    return [(y0, y1, x0, x1) for y0, y1 in cuts(h) for x0, x1 in cuts(w)]


def _generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s + _TRANSFORM_SEED_OFFSET) for s in seeds]


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _penalty(regs: list[Callable], images: torch.Tensor) -> torch.Tensor:
    per_image, scalar = total_penalty(regs, images)
    return per_image.sum() + scalar


def evaluate(objective: Objective, acts: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """The objective per image, (N,). Transforms that show several views of each image
    (:class:`~dreamviz.transforms.Crops`) give N * K rows, view-major; the objective is
    evaluated on each group of N rows (so ``image=i`` still means image i) and averaged."""
    rows = next(iter(acts.values())).shape[0]
    if rows == n:
        return objective(acts)
    if rows % n:
        raise UsageError(f"the transforms made {rows} rows from {n} images; give K * {n}")
    views = [{k: t[v * n : (v + 1) * n] for k, t in acts.items()} for v in range(rows // n)]
    return torch.stack([objective(a) for a in views]).mean(0)


def objective_and_grad(
    images: torch.Tensor,
    transform: Callable,
    gens: list[torch.Generator],
    cap: Capture,
    objective: Objective,
    regs: list[Callable],
    autocast,
) -> torch.Tensor:
    """One step's forward and backward pass; returns the objective values (N,)."""
    return _one_pass(transform(images, gens), images, cap, objective, regs, autocast)


def _one_pass(x, images, cap, objective, regs, autocast) -> torch.Tensor:
    with autocast():
        values = evaluate(objective, cap(x), images.shape[0]).float()
    (_penalty(regs, images) - values.sum()).backward()
    return values.detach()


class _Views:
    """Views per pass for a transform that shows each image K times (``Crops``, which has a
    ``views`` attribute): when the N * K rows of a step exceed :func:`batching.rows_per_pass`
    (decided before the loop, at the transform's output size), the views go in groups of
    whole views (an objective couples the N images of one view). An out-of-memory error halves
    the group and the step is redone with the same random draws. Other transforms: one pass."""

    def __init__(self, model, layers, transform, size: tuple[int, int], n: int):
        k = getattr(transform, "views", 1)
        self.multi = isinstance(k, int) and k > 1
        self.per_pass = k if self.multi else 1  # views per pass
        if self.multi:
            out = getattr(transform, "size", None) or size
            most = batching.rows_per_pass(model, tuple(out), layers, device=model.device)
            self.per_pass = batching.balanced(k, max(1, most // n))

    def save(self, gens: list[torch.Generator]) -> list | None:
        """The generators' states before a step that could be redone (multi-view steps)."""
        return [g.get_state() for g in gens] if self.multi else None

    def redo(self, error: BaseException, gens, states) -> bool:
        """After ``error`` in a step: halve the views per pass and rewind the generators if
        it was out of memory and the views can be split; else False."""
        if states is None or self.per_pass <= 1 or not batching.is_oom(error):
            return False
        self.per_pass //= 2
        for g, state in zip(gens, states):
            g.set_state(state)
        return True


def _backward_from(x: torch.Tensor, grad: torch.Tensor, regs, images: torch.Tensor) -> None:
    """The backward pass from the transformed batch ``x`` (its gradient ``grad``, gathered
    piece by piece) and the penalty, through the transforms and the parameterization."""
    penalty = _penalty(regs, images)
    outputs, grads = [x], [grad]
    if penalty.requires_grad:
        outputs.append(penalty)
        grads.append(None)
    torch.autograd.backward(outputs, grads)


def objective_and_grad_views(
    images: torch.Tensor,
    transform: Callable,
    gens: list[torch.Generator],
    cap: Capture,
    objective: Objective,
    regs: list[Callable],
    autocast,
    per_pass: int,
) -> torch.Tensor:
    """:func:`objective_and_grad` for multi-view transforms: one pass when the views fit in
    ``per_pass`` (the same operations, so the same images), else groups of ``per_pass``
    views, each group's gradient kept on the transformed batch, then one backward pass through
    the transforms and the parameterization (as the tiled step does)."""
    x = transform(images, gens)
    n = images.shape[0]
    k = max(1, x.shape[0] // n)
    if k <= per_pass or x.shape[0] % n:
        return _one_pass(x, images, cap, objective, regs, autocast)
    x_det = x.detach()
    grad = torch.zeros_like(x_det)
    total = x_det.new_zeros(n, dtype=torch.float32)
    for v0 in range(0, k, per_pass):
        v1 = min(k, v0 + per_pass)
        piece = x_det[v0 * n : v1 * n].detach().requires_grad_(True)
        with autocast():
            values = evaluate(objective, cap(piece), n).float() * ((v1 - v0) / k)
        (-values.sum()).backward()
        grad[v0 * n : v1 * n] = piece.grad
        total = total + values.detach()
    _backward_from(x, grad, regs, images)
    return total


def objective_and_grad_tiled(
    images: torch.Tensor,
    transform: Callable,
    gens: list[torch.Generator],
    cap: Capture,
    objective: Objective,
    regs: list[Callable],
    autocast,
    tile: int,
    overlap: int | None,
) -> torch.Tensor:
    """The same for images larger than ``tile``: each tile, grown by a margin of context, is
    its own small leaf; only the gradient of its core is kept, so only one tile's graph is
    alive at a time and the gradient near a core's edge still sees the pixels beyond it. Then
    one backward pass through the transforms and the parameterization."""
    x = transform(images, gens)
    x_det = x.detach()
    grad = torch.zeros_like(x_det)
    total = x.new_zeros(x.shape[0])
    hh, ww = x.shape[-2:]
    area = float(hh * ww)
    margin = _round_up(max(tile // 16, 1), _tile_align(tile)) if overlap is None else int(overlap)
    for y0, y1, x0, x1 in tile_boxes(hh, ww, tile):
        ey0, ey1 = max(0, y0 - margin), min(hh, y1 + margin)
        ex0, ex1 = max(0, x0 - margin), min(ww, x1 + margin)
        piece = x_det[:, :, ey0:ey1, ex0:ex1].clone().requires_grad_(True)
        with autocast():
            values = evaluate(objective, cap(piece), images.shape[0]).float()
        weight = (y1 - y0) * (x1 - x0) / area
        (-(values.sum()) * weight).backward()
        grad[:, :, y0:y1, x0:x1] += piece.grad[:, :, y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]
        total = total + values.detach() * weight
    _backward_from(x, grad, regs, images)
    return total


def _check_args(steps: int, settle: float) -> None:
    integer("steps", steps, 0)
    if not 0.0 <= settle <= 1.0:
        raise UsageError(f"{arg('settle')} must be in [0, 1], got {settle}")


def _device(model, device) -> torch.device:
    dev = resolve_device(device) if device is not None else model.device
    if dev != model.device:
        raise UsageError(
            f"the model is on {model.device} but {arg('device', str(dev))} was asked for; "
            "move the model or leave device unset"
        )
    return dev


def _accentuated(model, objective: Objective, init, weight: float, layer, param) -> Objective:
    """``objective + weight * closeness(layer, the photo's output there)`` (see render)."""
    if init is None:
        raise UsageError(
            f"{arg('accentuate')} keeps the picture close to a photo: give the photo as "
            f"{arg('init', 'PHOTO')}"
        )
    if not weight > 0:
        raise UsageError(f"{arg('accentuate')} must be > 0, got {weight}")
    layers = [name for name in objective.layers if name != LOGITS]
    name = layer or (layers[-1] if layers else None)
    if name is None:
        raise UsageError(
            f"a class objective has no layer of its own; name the layer to keep close with "
            f"{arg('accentuate_layer', 'LAYER')}"
        )
    with torch.no_grad(), Capture(model, [name]) as cap:
        reference = cap(param().detach().to(model.device))[name]
    return (objective + weight * closeness(name, reference)).bind(model)


def saturation(images: torch.Tensor) -> float:
    """The fraction of pixel values at 0 or 1 (within half a grey level of 8-bit output)."""
    x = images.detach().float()
    return float(((x <= 0.5 / 255) | (x >= 1 - 0.5 / 255)).float().mean()) if x.numel() else 0.0


def _non_finite(step: int, last_good: torch.Tensor) -> NonFiniteError:
    if step == 1:  # nothing was optimized yet: the model or the objective is at fault
        return NonFiniteError(
            "the objective is NaN or inf on the start image, before any step: the model "
            f"gives non-finite values there (check its {arg('weights')} and the objective's "
            "layer), so no image was made",
            last_good=None,
            step=step,
        )
    return NonFiniteError(
        f"the objective became NaN or inf at step {step}; lower {arg('lr')} or "
        "add regularization (the last good image is kept)",
        last_good=last_good.cpu(),
        step=step,
    )


def _accumulate(evidence: torch.Tensor, grad: torch.Tensor) -> None:
    """A gradient hook that adds |grad| (mean over colours) to ``evidence``; returns None so
    the gradient itself is left as it is."""
    evidence.add_(grad.detach().abs().mean(1))


def _blur_steps(param: ImageParam, step: int, blurs: list[Blur]) -> None:
    """Regularizers that act every k steps (``Blur(every=k)``) blend the image directly."""
    for b in blurs:
        if step % b.every == 0:
            with torch.no_grad():
                param.set_image(b.apply(param()).clamp(0, 1))


def render(
    model,
    objective: Objective | str,
    *,
    param: ImageParam | None = None,
    size: int | Sequence[int] | None = None,
    batch: int = D.RENDER["batch"],
    param_kind: str = D.RENDER["param"],
    decorrelate: bool = D.RENDER["decorrelate"],
    init: torch.Tensor | None = None,
    transforms=D.RENDER["transforms"],
    settle: float = D.RENDER["settle"],
    regularizers: Sequence[Callable] = (),
    optimizer=D.RENDER["optimizer"],
    lr: float = D.RENDER["lr"],
    steps: int = D.RENDER["steps"],
    lr_schedule: str = D.RENDER["lr_schedule"],
    grad_norm=None,
    thresholds: Sequence[int] = (),
    seed: int | Sequence[int] = D.RENDER["seed"],
    device: str | torch.device | None = None,
    amp: bool = D.RENDER["amp"],
    tile: int | None = None,
    tile_overlap: int | None = None,
    alpha: bool = False,
    accentuate: float = D.RENDER["accentuate"],
    accentuate_layer: str | None = D.RENDER["accentuate_layer"],
    spectrum=D.RENDER["spectrum"],
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    progress: bool | None = D.DISPLAY["progress"],
    preview: int | None = D.DISPLAY["preview"],
) -> RenderResult:
    """Maximize ``objective`` over an image; see the module docstring.

    ``param`` overrides ``size``/``batch``/``param_kind``/``decorrelate``/``init``.
    ``seed`` is one int (image i uses seed + i) or a list with one seed per image; each image's
    start and random transforms depend only on its own seed. ``device`` defaults to the
    model's. ``thresholds`` are step counts after which the images are kept in ``frames``.
    Ctrl-C stops the loop and returns what it has, with ``interrupted=True``.

    ``tile``: images larger than this (after transforms) are processed in equal tiles of at
    most ``tile`` px, each seen with ``tile_overlap`` px of context on every side (default
    ``tile // 16`` rounded up to the 32 px grid) whose gradient is discarded; memory is
    bounded by one tile's graph.

    ``accentuate``: feature accentuation (Hamblin et al. 2024). With ``init`` a photo, add
    ``accentuate * closeness(layer, photo's output)`` to the objective, so the picture stays
    near the photo at ``accentuate_layer`` (default: the objective's own layer) and shows what
    in *this* photo drives the unit. ``spectrum``: the fixed magnitude of ``param_kind="maco"``
    images (a .npy path or an array; default: the shipped natural spectrum).

    ``alpha``: also accumulate the transparency map (MACO's): the sum over steps of
    |d objective / d image|, averaged over colours, in ``RenderResult.alpha`` (N x H x W). It
    is zero where no gradient ever reached (outside every crop) and large where the evidence
    for the objective is; :func:`dreamviz.visualize.with_alpha` turns it into an RGBA image.

    ``progress``: a progress bar over the steps (``tqdm.auto``: a widget in notebooks); None,
    the default, shows one where a person is watching (a notebook, IPython, the REPL), not in
    scripts. ``preview=k``: in a notebook, one inline image of the batch, redrawn every k
    steps as it forms. Neither changes the images, and when off they cost nothing.
    """
    run = _prepare(model, objective, SimpleNamespace(**locals()))
    with Capture(run.model, run.objective.layers) as cap:
        try:
            for step in range(1, steps + 1):
                _step(run, cap, step)
        except KeyboardInterrupt:
            run.interrupted = True
        finally:
            if run.bar is not None:
                run.bar.close()
    return _finish(run, preview)


@dataclass
class _Run:
    """One render's step context: what :func:`_prepare` sets up, :func:`_step` advances and
    :func:`_finish` turns into a :class:`RenderResult`."""

    model: VisionModel
    dev: torch.device
    objective: Objective
    param: ImageParam
    opt: torch.optim.Optimizer
    robust: Callable  # the transforms, until the settle phase
    gens: list[torch.Generator]
    views: _Views
    o: SimpleNamespace  # render()'s arguments, as given
    first: torch.Tensor  # the start image
    params: list[torch.Tensor]  # the image parameters the optimizer moves
    regs: list[Callable]  # the regularizers
    blurs: list[Blur]  # the regularizers that blend the image every k steps
    norm: Callable | None  # the gradient normalizer
    thresholds: list[int]  # steps after which the images are kept
    plain: Callable = field(default_factory=tf_mod.none)  # the settle phase's transforms
    settle_from: int = 0
    history: list[torch.Tensor] = field(default_factory=list)
    frames: dict[int, torch.Tensor] = field(default_factory=dict)
    evidence: torch.Tensor | None = None
    bar: object = None
    live: object = None
    interrupted: bool = False
    start: float = field(default_factory=time.perf_counter)
    last_good: torch.Tensor | None = None

    def autocast(self):
        return _autocast(self.dev, self.o.amp)


def _prepare(model, objective, o: SimpleNamespace) -> _Run:
    """Check the arguments and set up the image, its transforms, the optimizer and the
    displays."""
    model = as_vision_model(model)
    dev = _device(model, o.device)
    _check_args(o.steps, o.settle)
    optim_mod.check_schedule(o.lr_schedule)
    if not isinstance(objective, Objective):
        objective = parse_objective(objective, model)
    objective = objective.bind(model)
    param = o.param if o.param is not None else _image(model, o)
    if o.accentuate:
        objective = _accentuated(model, objective, o.init, o.accentuate, o.accentuate_layer, param)
    param = param.to(dev)
    first = param()
    n, hw = first.shape[0], tuple(first.shape[-2:])
    if o.tile is None or max(hw) <= o.tile:
        check_input_size(model, hw)
    robust = _robust(o.transforms, hw, model.input_size)
    params = [p for p in param.parameters() if p.requires_grad]
    regs = list(o.regularizers)
    return _Run(
        model=model,
        dev=dev,
        objective=objective,
        param=param,
        opt=optim_mod.make_optimizer(o.optimizer, params, o.lr),
        robust=robust,
        gens=_generators(image_seeds(o.seed, n)),
        views=_Views(model, objective.layers, robust, hw, n),
        o=o,
        first=first,
        params=params,
        regs=regs,
        blurs=[r for r in regs if isinstance(r, Blur) and r.every],
        norm=optim_mod.grad_normalizer(o.grad_norm),
        thresholds=sorted({int(t) for t in o.thresholds if 0 < int(t) <= o.steps}),
        settle_from=o.steps - int(round(o.settle * o.steps)),  # later steps are plain
        evidence=torch.zeros(n, *hw, device=dev) if o.alpha else None,
        bar=display.progress_bar(o.progress, o.steps, "render"),
        live=display.make_preview(o.preview, "render"),
        last_good=param().detach(),
    )


def _image(model, o: SimpleNamespace) -> ImageParam:
    extra = {"spectrum": o.spectrum} if o.param_kind == "maco" else {}
    return image_param(
        o.param_kind,
        o.size if o.size is not None else model.input_size,
        batch=o.batch,
        decorrelate=o.decorrelate,
        init=o.init,
        seed=o.seed,
        **extra,
    )


def _robust(transforms, hw: tuple[int, int], input_size) -> Callable:
    """The transforms. Crops are shown to the model at its input size, or at the image's own
    size when the image is smaller (a 128 px gallery image is not upsampled to 224 px views);
    the engine works on a copy of a caller's ``Crops`` and never changes theirs."""
    small = all(a < b for a, b in zip(hw, input_size))
    view = hw if small else tuple(input_size)
    robust = tf_mod.get(transforms, view)
    if isinstance(robust, tf_mod.Crops):
        robust = copy.copy(robust)
        robust.size = robust.size or view
    return robust


def _gradient(run: _Run, images: torch.Tensor, transform, cap: Capture) -> torch.Tensor:
    """The objective per image, its gradient left on the image parameters: one pass, views in
    groups, or tiles."""
    o = run.o
    args = (images, transform, run.gens, cap, run.objective, run.regs, run.autocast)
    h, w = images.shape[-2:]
    if o.tile is not None and (h > o.tile or w > o.tile):
        return objective_and_grad_tiled(*args, o.tile, o.tile_overlap)
    if run.views.multi:
        return objective_and_grad_views(*args, run.views.per_pass)
    return objective_and_grad(*args)


def _step(run: _Run, cap: Capture, step: int) -> None:
    """One optimization step: schedules, the gradient (redone with the same draws if a
    multi-view pass runs out of memory), the finite check, the update, and the records."""
    o = run.o
    states = run.views.save(run.gens)
    optim_mod.set_lr(run.opt, optim_mod.lr_factor(o.lr_schedule, step, o.steps))
    if isinstance(run.robust, tf_mod.Crops):
        run.robust.progress = (step - 1) / max(1, o.steps - 1)
    transform = run.robust if step <= run.settle_from else run.plain
    while True:  # once, unless a multi-view step runs out of memory
        run.opt.zero_grad(set_to_none=True)
        images = run.param()
        if run.evidence is not None:
            images.register_hook(partial(_accumulate, run.evidence))
        try:
            values = _gradient(run, images, transform, cap)
            break
        except Exception as e:  # noqa: BLE001 - re-raised unless out of memory
            if not run.views.redo(e, run.gens, states):
                raise
        batching.release(run.dev)
    # one check of N values per step: a NaN gradient makes the next step's image, hence its
    # objective, non-finite, and last_good is still the image before it
    if not bool(torch.isfinite(values).all()):
        raise _non_finite(step, run.last_good)
    run.last_good = images.detach()
    run.history.append(values.cpu())
    optim_mod.normalize_grads(run.params, run.norm)
    run.opt.step()
    run.param.post_step()
    _blur_steps(run.param, step, run.blurs)
    _record(run, step, values)


def _record(run: _Run, step: int, values: torch.Tensor) -> None:
    """After a step: the frames kept, the callback, the progress bar and the preview."""
    o = run.o
    if step in run.thresholds:
        run.frames[step] = run.param().detach().float().cpu().clamp(0, 1)
    if o.callback is not None:
        o.callback(step, o.steps, values)
    if run.bar is not None:
        run.bar.update(1, float(run.history[-1].mean()))
    if run.live is not None and run.live.due(step):
        with torch.no_grad():
            run.live.update(run.param(), f"step {step}/{o.steps}")


def _finish(run: _Run, preview) -> RenderResult:
    """The result: the final images (the last good ones after Ctrl-C), the history, frames
    and alpha; a warning when the image saturated."""
    with torch.no_grad():
        final = run.param().detach().float().clamp(0, 1)
    if run.interrupted and run.history:
        final = run.last_good.float().clamp(0, 1)
    if run.history:
        _warn_saturated(final, run.first, run.o.lr)
    result = RenderResult(
        images=final.cpu(),
        history=torch.stack(run.history) if run.history else torch.zeros(0, final.shape[0]),
        frames=run.frames,
        interrupted=run.interrupted,
        objective=str(run.objective),
        seconds=time.perf_counter() - run.start,
        alpha=run.evidence.float().cpu() if run.evidence is not None else None,
    )
    _describe(result, run.objective, run.model)  # labels and top-1 classes (display only)
    if run.live is not None and isinstance(preview, display.Preview):  # a dream's octave
        run.live.update(final, f"step {len(run.history)}/{run.o.steps}")
    elif run.live is not None:  # the preview becomes the result, captions and all
        run.live.finish(result)
    return result


def _warn_saturated(final: torch.Tensor, first: torch.Tensor, lr: float) -> None:
    flat = saturation(final)
    if flat > D.SATURATION and flat > saturation(first) + 0.25:
        warnings.warn(
            DreamvizWarning(
                f"the image saturated: {flat:.0%} of its pixel values are 0 or 1 (a flat, "
                f"few-colour picture); lower {arg('lr')} (now {lr:g})"
            ),
            stacklevel=4,
        )
