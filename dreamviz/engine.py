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
from functools import partial

import torch

from . import batching, display
from . import defaults as D
from . import optim as optim_mod
from . import transforms as tf_mod
from .errors import DreamvizWarning, NonFiniteError, UsageError, arg, integer
from .hooks import LOGITS, Capture, check_input_size
from .models import as_vision_model, classify, resolve_device
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
    evaluated on each group of N rows (so ``batch=i`` still means image i) and averaged."""
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
    model = as_vision_model(model)
    dev = _device(model, device)
    _check_args(steps, settle)
    if not isinstance(objective, Objective):
        objective = parse_objective(objective, model)
    objective = objective.bind(model)
    if param is None:
        extra = {"spectrum": spectrum} if param_kind == "maco" else {}
        param = image_param(
            param_kind,
            size if size is not None else model.input_size,
            batch=batch,
            decorrelate=decorrelate,
            init=init,
            seed=seed,
            **extra,
        )
    if accentuate:
        objective = _accentuated(model, objective, init, accentuate, accentuate_layer, param)
    param = param.to(dev)
    first = param()
    n = first.shape[0]
    if tile is None or max(first.shape[-2:]) <= tile:
        check_input_size(model, tuple(first.shape[-2:]))
    gens = _generators(image_seeds(seed, n))
    # crops are shown to the model at its input size, or at the image's own size when the
    # image is smaller (a 128 px gallery image is not upsampled to 224 px views)
    small = all(a < b for a, b in zip(first.shape[-2:], model.input_size))
    view = tuple(first.shape[-2:]) if small else model.input_size
    robust, plain = tf_mod.get(transforms, view), tf_mod.none()
    if isinstance(robust, tf_mod.Crops):  # a copy: the caller's object is never changed
        robust = copy.copy(robust)
        robust.size = robust.size or view
    settle_from = steps - int(round(settle * steps))  # steps after this one are plain
    regs = list(regularizers)
    blurs = [r for r in regs if isinstance(r, Blur) and r.every]
    norm = optim_mod.grad_normalizer(grad_norm)
    params = [p for p in param.parameters() if p.requires_grad]
    opt = optim_mod.make_optimizer(optimizer, params, lr)
    optim_mod.check_schedule(lr_schedule)
    thresholds = sorted({int(t) for t in thresholds if 0 < int(t) <= steps})

    def autocast():
        return _autocast(dev, amp)

    views = _Views(model, objective.layers, robust, tuple(first.shape[-2:]), n)

    def step_fn(images, transform, cap):
        h, w = images.shape[-2:]
        if tile is None or (h <= tile and w <= tile):
            if not views.multi:
                return objective_and_grad(images, transform, gens, cap, objective, regs, autocast)
            return objective_and_grad_views(
                images, transform, gens, cap, objective, regs, autocast, views.per_pass
            )
        return objective_and_grad_tiled(
            images, transform, gens, cap, objective, regs, autocast, tile, tile_overlap
        )

    history: list[torch.Tensor] = []
    frames: dict[int, torch.Tensor] = {}
    evidence = torch.zeros(n, *first.shape[-2:], device=dev) if alpha else None
    interrupted = False
    bar = display.progress_bar(progress, steps, "render")
    live = display.make_preview(preview, "render")
    start = time.perf_counter()
    last_good = param().detach()
    with Capture(model, objective.layers) as cap:
        try:
            for step in range(1, steps + 1):
                states = views.save(gens)
                optim_mod.set_lr(opt, optim_mod.lr_factor(lr_schedule, step, steps))
                if isinstance(robust, tf_mod.Crops):
                    robust.progress = (step - 1) / max(1, steps - 1)
                while True:  # once, unless a multi-view step runs out of memory
                    opt.zero_grad(set_to_none=True)
                    images = param()
                    if evidence is not None:
                        images.register_hook(partial(_accumulate, evidence))
                    try:
                        values = step_fn(images, robust if step <= settle_from else plain, cap)
                        break
                    except Exception as e:  # noqa: BLE001 - re-raised unless out of memory
                        if not views.redo(e, gens, states):
                            raise
                    batching.release(dev)
                # one check of N values per step: a NaN gradient makes the next step's image,
                # hence its objective, non-finite, and last_good is still the image before it
                if not bool(torch.isfinite(values).all()):
                    raise _non_finite(step, last_good)
                last_good = images.detach()
                history.append(values.cpu())
                optim_mod.normalize_grads(params, norm)
                opt.step()
                param.post_step()
                _blur_steps(param, step, blurs)
                if step in thresholds:
                    frames[step] = param().detach().float().cpu().clamp(0, 1)
                if callback is not None:
                    callback(step, steps, values)
                if bar is not None:
                    bar.update(1, float(history[-1].mean()))
                if live is not None and live.due(step):
                    with torch.no_grad():
                        live.update(param(), f"step {step}/{steps}")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if bar is not None:
                bar.close()

    with torch.no_grad():
        final = param().detach().float().clamp(0, 1)
    if interrupted and history:
        final = last_good.float().clamp(0, 1)
    if history:
        flat = saturation(final)
        if flat > D.SATURATION and flat > saturation(first) + 0.25:
            warnings.warn(
                DreamvizWarning(
                    f"the image saturated: {flat:.0%} of its pixel values are 0 or 1 (a flat, "
                    f"few-colour picture); lower {arg('lr')} (now {lr:g})"
                ),
                stacklevel=2,
            )
    result = RenderResult(
        images=final.cpu(),
        history=torch.stack(history) if history else torch.zeros(0, n),
        frames=frames,
        interrupted=interrupted,
        objective=str(objective),
        seconds=time.perf_counter() - start,
        alpha=evidence.float().cpu() if evidence is not None else None,
    )
    _describe(result, objective, model)  # per-image labels and top-1 classes (display only)
    if live is not None and isinstance(preview, display.Preview):  # a dream's octave
        live.update(final, f"step {len(history)}/{steps}")
    elif live is not None:  # the preview becomes the result, captions and all
        live.finish(result)
    return result
