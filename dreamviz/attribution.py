"""Saliency maps: which pixels drive a class score, or any unit of any layer.

>>> maps = saliency(model, images)                            # N x H x W, each image's top-1
>>> maps = saliency(model, "cat.jpg", "tabby", method="integrated_gradients", steps=64)
>>> maps = saliency(model, images, "blocks.10:5", method="smoothgrad")  # a unit, not a class
>>> overlay(image, maps[0]).save("map.png")   # drawing: dreamviz.visualize

The pipeline, in the order of this file: the targets (one score per image: a class logit, a
unit or any objective); the guided-ReLU mode (guided backprop); the shared helper :class:`_Run`,
whose :meth:`_Run.gradients` runs the forward and backward passes in chunks of
``internal_batch_size`` rows (a row is one image, one noisy copy or one point on an integration
path) and sums the weighted input gradients per image; the methods, each a short function on
that helper (Integrated Gradients' quadrature lives in :mod:`dreamviz._quadrature`); the method
registry and reductions; and :func:`saliency`, which checks the call, hooks the model and runs
one method.

Contract: images are N x 3 x H x W in [0, 1] (or a PIL image, a path, or a list of those); the
model is a :class:`~dreamviz.models.VisionModel` or any classifier ``nn.Module``. The model is
run in eval mode with frozen parameters and left exactly as it was: train/eval flags,
``requires_grad`` and hooks are restored, even after an error. ``images.grad`` is never touched.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import defaults as D
from . import display
from ._quadrature import QUADRATURES, path_integral, quadrature
from .batching import AUTO, Chunker, rows_per_pass
from .defaults import DISPLAY, SALIENCY
from .display import gaussian_blur, top1
from .errors import UsageError, arg, integer, shown, suggest
from .hooks import LOGITS, Capture, as_nchw, check_layer, probe
from .io import as_batch
from .models import VisionModel, as_vision_model, classify, model_guard
from .objectives import Objective
from .objectives import parse as parse_target
from .results import SaliencyInfo, SaliencyResult

# --------------------------------------------------------------------------- targets


def _check_logits(logits) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UsageError(
            f"the model returned {got}, not N x classes logits; give a unit "
            f"{arg('target', 'LAYER:CHANNEL')}, or wrap the model so forward returns logits"
        )
    return logits


def resolve_target(model: VisionModel, t) -> int | Objective:
    """One image's target: a class index (-1 = its own top-1) or a bound objective. Strings
    go through :func:`dreamviz.objectives.parse`, the one target parser."""
    if t is None:
        return -1
    if isinstance(t, Objective):
        return t.bind(model)
    if isinstance(t, torch.Tensor) and t.numel() == 1 and not t.is_floating_point():
        t = int(t)
    if isinstance(t, np.integer):
        t = int(t)
    if isinstance(t, (int, str)) and not isinstance(t, bool):
        obj = parse_target(t, model)
        if obj.target is not None and obj.target[0] == "class":
            return int(obj.target[1])
        return obj
    raise UsageError(
        f"{arg('target')} {shown(t)} is not a class index, a class name, a unit LAYER:CHANNEL or "
        "an objective"
    )


class _Target:
    """Per-image targets. ``values(acts, owner)`` gives one score per row, where ``owner[r]`` is
    the image that row ``r`` belongs to. Top-1 classes are resolved on the first clean pass."""

    def __init__(self, model: VisionModel, target, n: int):
        if isinstance(target, torch.Tensor) and target.dim() == 1 and target.numel() > 1:
            target = target.tolist()
        if isinstance(target, (list, tuple)):
            if len(target) != n:
                raise UsageError(
                    f"{arg('target')} has {len(target)} entries for {n} images; "
                    "give one entry per image, or a single target for all"
                )
            entries = [resolve_target(model, t) for t in target]
        else:
            entries = [resolve_target(model, target)] * n
        self.model = model
        self.objectives = list({id(e): e for e in entries if isinstance(e, Objective)}.values())
        slot = {id(o): j for j, o in enumerate(self.objectives)}
        self.classes = torch.tensor([e if isinstance(e, int) else -2 for e in entries])
        self.slots = torch.tensor(
            [slot[id(e)] if isinstance(e, Objective) else -1 for e in entries]
        )
        layers = [LOGITS] if (self.classes != -2).any() else []
        self.layers = layers + [name for o in self.objectives for name in o.layers]

    @property
    def unresolved(self) -> bool:
        return bool((self.classes == -1).any())

    def values(self, acts: dict, owner: torch.Tensor) -> torch.Tensor:
        out = None
        if LOGITS in self.layers:
            logits = _check_logits(acts[LOGITS])
            cls = self.classes.to(owner.device)[owner]
            todo = cls == -1
            if todo.any():  # each image's own top-1, recorded for the next passes
                cls = torch.where(todo, logits.detach().argmax(1), cls)
                self.classes[owner[todo].cpu()] = cls[todo].cpu()
            if int(cls.max()) >= logits.shape[1]:
                k = logits.shape[1]
                raise UsageError(
                    f"class {int(cls.max())} is out of range; the model has {k}: give a "
                    f"{arg('target')} in 0..{k - 1}"
                )
            out = logits.gather(1, cls.clamp_min(0).unsqueeze(1)).squeeze(1)
        slots = self.slots.to(owner.device)[owner]
        for j, obj in enumerate(self.objectives):
            v = obj(acts)
            out = v if out is None else torch.where(slots == j, v, out)
        return out

    def labels(self) -> list[str]:
        names = self.model.classes
        out = []
        for c, s in zip(self.classes.tolist(), self.slots.tolist()):
            if s >= 0:
                out.append(str(self.objectives[s]))
            elif c < 0:
                out.append("top-1")
            else:
                out.append(f"{names[c]} ({c})" if names and c < len(names) else f"class {c}")
        return out


# --------------------------------------------------------------------------- guided ReLUs


def _clamp_negative(grad: torch.Tensor) -> torch.Tensor:
    return grad.clamp_min(0)


class _GuidedReLU(TorchFunctionMode):
    """Guided backprop for every ReLU that runs: ``nn.ReLU``/``nn.ReLU6`` modules (they call
    ``F.relu``/``F.hardtanh(0, 6)``) and functional ``F.relu``, ``torch.relu``, ``x.relu()``.

    A tensor hook on each ReLU output clamps the incoming gradient at 0; ReLU's own backward then
    masks the negative inputs. Tensor hooks follow in-place ops correctly, and nothing is left on
    any module: the hooks belong to this forward pass's graph.
    """

    RELUS = {"relu", "relu_", "relu6"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in ("hardtanh", "hardtanh_"):  # nn.ReLU6 is hardtanh(0, 6)
            low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
            name = "relu6" if low == 0 else name
        if name in self.RELUS and isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(_clamp_negative)
            self.count += 1
        return out


# --------------------------------------------------------------------------- the shared helper


class _Run:
    """One saliency call: the images, the targets, the capture, and the passes over rows.

    Rows go through the network ``chunker.size`` at a time; a chunk that runs out of memory is
    halved and retried (:class:`dreamviz.batching.Chunker`), which never changes the maps.
    ``bar``, when given, counts the rows of the gradient passes."""

    def __init__(
        self, model: VisionModel, images: torch.Tensor, target: _Target, chunker: Chunker, bar=None
    ):
        self.model = model
        self.images = images
        self.target = target
        self.chunker = chunker
        self.bar = bar
        self.capture: Capture | None = None
        self.info: dict = {}
        self._clean: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.images.shape[0]

    def each(self, work: Callable, samples: int = 1, ids: torch.Tensor | None = None):
        """Yield ``work(local, owner, sample)`` over the rows in chunks, image-major: index
        tensors where ``owner = ids[local]`` is the image of the row (``ids``: all images by
        default). ``work`` may be called again for the same rows after out-of-memory."""
        dev = self.images.device
        ids = torch.arange(self.n, device=dev) if ids is None else ids

        def rows(r0: int, r1: int):
            r = torch.arange(r0, r1, device=dev)
            return work(r // samples, ids[r // samples], r % samples)

        yield from self.chunker.run(len(ids) * samples, rows)

    def scores(self, make: Callable, samples: int = 1) -> torch.Tensor:
        """Target values (no gradients) at inputs ``make(owner, s)``: N x samples."""
        out = self.images.new_empty(self.n * samples)

        def work(_, owner, s):
            with torch.no_grad():
                out[owner * samples + s] = self.target.values(self.capture(make(owner, s)), owner)

        for _ in self.each(work, samples):
            pass
        return out.view(self.n, samples)

    def counted(self, rows: int) -> None:
        """``rows`` rows of gradient passes are done (the progress bar)."""
        if self.bar is not None:
            self.bar.update(rows)

    def clean_scores(self) -> torch.Tensor:
        """f(x) for the images themselves (this also resolves top-1 targets); computed once."""
        if self._clean is None:
            self._clean = self.scores(lambda owner, s: self.images[owner])[:, 0]
        return self._clean

    def backward(self, x: torch.Tensor, owner: torch.Tensor, *, guided=False, layer=None):
        """(d(score)/d(x), score) for one chunk of rows; with ``layer`` (which the capture must
        hook), (that layer's output, d(score)/d(output)) instead."""
        x = x.detach().requires_grad_(True)
        mode = _GuidedReLU() if guided else contextlib.nullcontext()
        with mode:
            acts = self.capture(x)
            values = self.target.values(acts, owner)
        if guided:
            self.info["guided_relus"] = mode.count
        if layer is None:
            return torch.autograd.grad(values.sum(), x)[0], values.detach()
        act = acts[layer]
        grad = torch.autograd.grad(values.sum(), act, allow_unused=True)[0]
        if grad is None:
            raise UsageError(
                f"{arg('layer', repr(layer))} does not run before the target's layer "
                f"({', '.join(self.target.layers)}); give an earlier {arg('layer')}, or "
                f"{arg('method', 'smoothgrad')}, which needs no layer"
            )
        return act.detach(), grad

    def passes(self, make: Callable, samples=1, ids=None, guided=False):
        """Forward+backward passes over rows ``make(owner, s)``, in chunks: yields
        ``(local, owner, s, d(score)/d(input), score)``."""

        def work(local, owner, s):
            with torch.no_grad():
                x = make(owner, s)
            return (local, owner, s, *self.backward(x, owner, guided=guided))

        for out in self.each(work, samples, ids):
            self.counted(len(out[0]))
            yield out

    def gradients(self, make: Callable, samples=1, weights=None, guided=False):
        """Sum over samples s of ``weights[i, s] * d(score)/d(input)`` at inputs
        ``make(owner, s)``, per image i (mean over samples when ``weights`` is None):
        N x 3 x H x W."""
        out = torch.zeros_like(self.images)
        for _, owner, s, g, _ in self.passes(make, samples, guided=guided):
            w = 1.0 / samples if weights is None else weights[owner, s].view(-1, 1, 1, 1)
            out.index_add_(0, owner, g * w)
        return out


# --------------------------------------------------------------------------- methods


def gradient(run: _Run) -> torch.Tensor:
    """Vanilla gradient (Simonyan et al. 2014). Reduced by max |g| over colour channels."""
    return run.gradients(lambda owner, s: run.images[owner])


def gradient_x_input(run: _Run) -> torch.Tensor:
    """Gradient times input. Reduced by the signed sum over colour channels."""
    return gradient(run) * run.images


def _normal(shape, seed: int, sample: int) -> torch.Tensor:
    state = np.random.SeedSequence([seed, sample]).generate_state(1)[0]
    return torch.randn(shape, generator=torch.Generator().manual_seed(int(state)))


def smoothgrad(
    run: _Run,
    samples: int = SALIENCY["samples"],
    noise: float = SALIENCY["noise"],
    seed: int = SALIENCY["seed"],
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the mean gradient over ``samples`` noisy copies.

    ``noise`` is the standard deviation as a fraction of the input range [0, 1] (0.15 adds
    Gaussian noise with sigma 0.15 in pixel units; Smilkov et al. suggest 10-20 %). The noisy
    images are not clipped. Noise sample ``s`` is the same for every image (seeded by ``seed``
    and ``s``, drawn on the CPU, so every device gives the same maps), and a batch gives the
    same maps as single images. Holds ``samples`` noise images in memory. Reduced like
    ``gradient``.
    """
    integer("samples", samples, 1)
    integer("seed", seed, 0)
    if not (isinstance(noise, (int, float)) and 0 <= noise):
        raise UsageError(
            f"{arg('noise')} must be a number >= 0 (a fraction of [0, 1]), got {shown(noise)}"
        )
    bank: dict[int, torch.Tensor] = {}

    def make(owner, s):
        for k in s.unique().tolist():
            if k not in bank:
                bank[k] = _normal(run.images.shape[1:], seed, k).to(run.images) * noise
        return run.images[owner] + torch.stack([bank[k] for k in s.tolist()])

    return run.gradients(make, samples)


def blur(images: torch.Tensor, kernel: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian blur of a batch (reflect padding): the insertion metric's kernel 11, sigma 5.
    The kernel shrinks to fit images smaller than it (reflect padding needs pad < size)."""
    if integer("kernel", kernel, 1) % 2 == 0:
        raise UsageError(f"blur {arg('kernel')} must be odd, got {kernel}")
    if not (isinstance(sigma, (int, float)) and sigma > 0):
        raise UsageError(f"blur {arg('sigma')} must be a number > 0, got {shown(sigma)}")
    return gaussian_blur(images, sigma, kernel)  # the one blur (reflect: shrinks to fit)


def make_baseline(images: torch.Tensor, baseline) -> torch.Tensor:
    """``"black"`` (0), ``"white"`` (1), ``"blurred"`` (Gaussian, kernel 31, sigma 10), a grey
    level in [0, 1], or a tensor broadcastable to the images."""
    if isinstance(baseline, torch.Tensor):
        try:
            return torch.broadcast_to(baseline.to(images), images.shape).clone()
        except RuntimeError:
            raise UsageError(
                f"{arg('baseline')} shape {tuple(baseline.shape)} does not fit images "
                f"{tuple(images.shape)}; give 3 x H x W or N x 3 x H x W"
            ) from None
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(images, float(baseline))
    named = {"black": 0.0, "white": 1.0}
    if isinstance(baseline, str) and baseline in named:
        return torch.full_like(images, named[baseline])
    if isinstance(baseline, str) and baseline == "blurred":
        return blur(images, 31, 10.0)
    raise UsageError(
        f"unknown baseline {shown(baseline)}; give {arg('baseline')} black, white, blurred, "
        "a grey level in [0, 1] or a tensor"
    )


def integrated_gradients(
    run: _Run,
    steps: int = SALIENCY["steps"],
    baseline=SALIENCY["baseline"],
    quadrature_rule: str = SALIENCY["quadrature_rule"],
) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) from ``baseline`` to the image.

    ``attr = (x - b) * sum_k w_k grad f(b + a_k (x - b))``. Reduced by the signed sum over colour
    channels, so a map sums to about f(x) - f(b); the completeness error
    ``|sum(attr) - (f(x) - f(b))|`` is reported in ``info.completeness_error``.

    ``quadrature_rule``: ``"adaptive"`` (default, for ``steps >= 8``) is a trapezoid rule whose
    points go where its error is largest, and that error is known exactly: each gradient pass
    also gives f at its point, and between two points the gradient integrates to
    f(right) - f(left) (see :mod:`dreamviz._quadrature`). It needs no extra passes but keeps
    ``steps`` gradient images per image (in groups of at most ``IG_MEMORY`` bytes). On ReLU
    networks f rises within a few percent of the path, where the gradient is rough, so the fixed
    rules (``"gausslegendre"``, ``"riemann_left"``, ``"trapezoid"``, ...) need several times more
    steps for the same error; docs/QUALITY.md has the measurements.
    """
    integer("steps", steps, 1)
    if quadrature_rule not in QUADRATURES:
        quadrature(quadrature_rule, steps)  # raises the usage error
    base = make_baseline(run.images, baseline)
    diff = run.images - base
    f_x = run.clean_scores()
    grads, f_b = path_integral(run, base, diff, steps, quadrature_rule)
    attr = diff * grads
    delta = f_x - f_b
    run.info["delta"] = delta.detach()
    run.info["completeness_error"] = (attr.flatten(1).sum(1) - delta).abs().detach()
    return attr


def guided_backprop(run: _Run) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015): at every ReLU, only positive
    gradients pass back. Works for ReLU modules and functional ReLUs; warns if no ReLU ran.
    Reduced by max |g| over colour channels."""
    out = run.gradients(lambda owner, s: run.images[owner], guided=True)
    if not run.info.get("guided_relus"):
        warnings.warn(
            f"guided_backprop: no ReLU ran in {run.model.name}'s forward pass (its activations "
            "are not ReLU/ReLU6), so the result equals the plain gradient",
            stacklevel=3,
        )
    return out


def gradcam_layer(model, size: tuple[int, int] | None = None) -> str:
    """The default Grad-CAM layer: the family's (``defaults.GRADCAM_FAMILY_LAYERS``: for ViT and
    Swin, the first norm of the last block, as pytorch-grad-cam documents), else the last
    module (outermost of those with the same output) with a spatial output larger than 1 x 1,
    adaptive pooling excluded. Channels-last and token layers count (see ``Layout``)."""
    model = as_vision_model(model)
    table = probe(model, size)
    for prefix, pattern in D.GRADCAM_FAMILY_LAYERS.items():
        if model.name.startswith(prefix):
            name = _last_block(table, pattern)
            if name is not None:
                return name
    best = None
    for name, info in table.items():
        grid = info.layout.grid if info.layout is not None else None
        spatial = grid is not None and info.layout.kind != "vector" and grid[0] * grid[1] > 1
        if name != LOGITS and info.calls == 1 and spatial and not info.type.startswith("Adaptive"):
            best = name
    if best is None:
        raise UsageError(
            f"{model.name} has no layer with a spatial feature map at this image size; "
            f"give {arg('layer', 'NAME')} explicitly or use larger images"
        )
    while "." in best:
        parent = best.rsplit(".", 1)[0]
        info = table.get(parent)
        if info is None or info.calls != 1 or info.shape != table[best].shape:
            break
        best = parent
    return best


def _last_block(table: dict, pattern: str) -> str | None:
    """``pattern`` with ``{last}`` replaced by the last index that names a layer in ``table``
    (``encoder.layers.encoder_layer_{last}.ln_1``, ``features.7.{last}.norm1``)."""
    last = None
    for i in range(256):
        if pattern.format(last=i) in table:
            last = i
    return None if last is None else pattern.format(last=last)


def gradcam(run: _Run, layer: str | None = None, relu: bool = True) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at ``layer`` (default: :func:`gradcam_layer`).

    ``cam = ReLU(sum_k mean_hw(dy/dA_k) A_k)``, upsampled bilinearly to the image size. Returns
    N x 1 x H x W (it has no colour channels; ``relu=False`` keeps the signed map).
    """
    size = tuple(run.images.shape[-2:])
    name = layer or gradcam_layer(run.model, size)
    info = check_layer(run.model, name)
    lay = info.layout
    if lay is None or lay.kind == "vector" or lay.grid is None:
        what = lay.describe() if lay is not None else f"shape {info.shape}"
        raise UsageError(
            f"{arg('layer', repr(name))} has no spatial map ({what}); give a {arg('layer')} "
            f"with one, e.g. {gradcam_layer(run.model, size)}"
        )
    run.info["layer"] = name

    def work(_, owner, __):
        act, grad = run.backward(run.images[owner], owner, layer=name)
        # channels-last maps are permuted, token layers put on their patch grid (class token
        # left out): the user writes no reshape_transform
        act, grad = as_nchw(act, lay), as_nchw(grad, lay)
        cam = (grad.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True)
        run.counted(len(owner))
        return cam.clamp_min(0) if relu else cam

    cams = list(run.each(work))
    return F.interpolate(torch.cat(cams), size=size, mode="bilinear", align_corners=False)


def guided_gradcam(run: _Run, layer: str | None = None) -> torch.Tensor:
    """Guided Grad-CAM: guided backprop times the Grad-CAM map. Reduced by max |.| over colour
    channels."""
    return guided_backprop(run) * gradcam(run, layer=layer)


# --------------------------------------------------------------------------- registry


def _one(options: dict) -> int:
    return 1


@dataclass(frozen=True)
class Method:
    fn: Callable
    reduce: str  # the documented reduction over colour channels
    clean: bool = True  # the rows are the images themselves (top-1 found in the same pass)
    layer: bool = False  # takes ``layer=``, a feature map the capture must also hook
    passes: Callable[[dict], int] = _one  # gradient passes per image, given the options


METHODS: dict[str, Method] = {
    "gradient": Method(gradient, "max_abs"),
    "gradient_x_input": Method(gradient_x_input, "sum"),
    "smoothgrad": Method(
        smoothgrad, "max_abs", clean=False, passes=lambda o: o.get("samples", SALIENCY["samples"])
    ),
    "integrated_gradients": Method(
        integrated_gradients, "sum", clean=False, passes=lambda o: o.get("steps", SALIENCY["steps"])
    ),
    "guided_backprop": Method(guided_backprop, "max_abs"),
    "gradcam": Method(gradcam, "sum", layer=True),
    "guided_gradcam": Method(guided_gradcam, "max_abs", layer=True, passes=lambda o: 2),
}
ALIASES = {"ig": "integrated_gradients", "grad": "gradient", "vanilla": "gradient"}

REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max_abs": lambda a: a.abs().amax(1),
    "sum": lambda a: a.sum(1),
    "abs_sum": lambda a: a.abs().sum(1),
    "l2": lambda a: a.norm(dim=1),
}


def get_method(name: str) -> tuple[str, Method]:
    key = ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in METHODS:
        raise UsageError(
            f"unknown method {shown(name)}{suggest(str(name), METHODS)}; give "
            f"{arg('method')} one of " + ", ".join(METHODS)
        )
    return key, METHODS[key]


def method_options(name: str) -> list[str]:
    """The keyword options a method takes."""
    return list(inspect.signature(get_method(name)[1].fn).parameters)[1:]


def _check_options(name: str, options: dict) -> None:
    allowed = method_options(name)
    for key in options:
        if key not in allowed:
            takes = ", ".join(allowed) or "no options"
            raise UsageError(
                f"{name} has no option {key!r}{suggest(key, allowed)}; it takes {takes}"
            )


def _check_rule(rule) -> None:
    if not isinstance(rule, str) or rule not in REDUCTIONS:
        raise UsageError(
            f"unknown reduction {shown(rule)}{suggest(str(rule), REDUCTIONS)}; give "
            f"{arg('reduce')} auto, None or " + ", ".join(REDUCTIONS)
        )


def reduce(raw: torch.Tensor, rule: str) -> torch.Tensor:
    """Reduce N x C x H x W attributions over channels: max_abs, sum, abs_sum or l2."""
    _check_rule(rule)
    if not isinstance(raw, torch.Tensor) or raw.dim() != 4:
        got = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
        raise UsageError(
            f"reduce takes N x C x H x W attributions, got {got}; add the batch dimension "
            "(raw[None]) or pass saliency's output with reduce=None"
        )
    return REDUCTIONS[rule](raw)


# --------------------------------------------------------------------------- checks


# --------------------------------------------------------------------------- API


def saliency(
    model,
    images,
    target=None,
    method: str = SALIENCY["method"],
    *,
    reduce: str | None = "auto",
    internal_batch_size: int | str = SALIENCY["internal_batch_size"],
    return_info: bool = False,
    result: bool = False,
    progress: bool | None = DISPLAY["progress"],
    **options,
):
    """Saliency maps of ``images`` for ``target`` under ``model``.

    * ``images``: N x 3 x H x W in [0, 1], a PIL image, a path, or a list of those.
    * ``target``: None (each image's top-1 class), a class index or name, a unit
      ``"LAYER:CHANNEL"`` (mean activation of that channel), a layer name (mean square of the
      layer), any per-image :class:`~dreamviz.objectives.Objective`, or a list with one of those
      per image. Class targets score the logit (pre-softmax).
    * ``method``: one of :data:`METHODS`; its options are keywords (``samples``, ``noise``,
      ``seed``, ``steps``, ``baseline``, ``quadrature_rule``, ``layer``, ``relu``).
    * ``reduce``: ``"auto"`` reduces over colour channels by the method's rule (see each method);
      ``None`` returns the raw signed attribution N x 3 x H x W with respect to the [0, 1]
      pixels (N x 1 x H x W for Grad-CAM); or a rule from :data:`REDUCTIONS`.
    * ``internal_batch_size``: rows per forward/backward pass (noise samples and IG steps are
      batched across images): ``"auto"`` (the default) asks :func:`dreamviz.batching.rows_per_pass`
      for the device, image size and target layer; an integer fixes it. A pass that runs out of
      memory is halved and retried. Bounds memory and speed, never changes the result.
    * ``return_info``: also return a :class:`SaliencyInfo` (resolved targets, Grad-CAM layer, IG
      completeness error, rows per pass).
    * ``result``: return a :class:`SaliencyResult` instead (maps, images, info, and each
      target class's probability), which shows itself in a notebook as photo | map | overlay
      panels; ``result[i]`` and ``result.shape`` read the maps.
    * ``progress``: a progress bar over the gradient passes (None: where a person is watching).

    Returns an N x H x W tensor on the images' device (the model's for PIL images and paths).
    """
    name, meth = get_method(method)
    _check_options(name, options)
    internal_batch_size = integer("internal_batch_size", internal_batch_size, 1, auto=True)
    if reduce not in (None, "auto"):
        _check_rule(reduce)
    model = as_vision_model(model)
    back = images.device if isinstance(images, torch.Tensor) else None
    x = as_batch(images, model)
    with model_guard(model):
        target_ = _Target(model, target, x.shape[0])
        layers = list(target_.layers)
        if meth.layer:  # Grad-CAM's layer is captured in the same pass as the target
            own = [name for name in target_.layers if name != LOGITS]
            options = {**options, "layer": _feature_layer(model, x, options.get("layer"), own)}
            layers.append(options["layer"])
        chunker = _chunker(model, x, layers, internal_batch_size)
        bar = display.progress_bar(progress, x.shape[0] * meth.passes(options), name, "row")
        run = _Run(model, x, target_, chunker, bar)
        try:
            with Capture(model, layers, stop_early=True, guard=False) as cap:
                run.capture = cap
                if not meth.clean and run.target.unresolved:
                    run.clean_scores()
                raw = meth.fn(run, **options).detach()
        finally:
            if bar is not None:
                bar.close()
    rule = meth.reduce if reduce == "auto" else reduce
    out = raw if rule is None else REDUCTIONS[rule](raw)
    out = out.to(back) if back is not None else out
    if not (return_info or result):
        return out
    t = run.target
    classes = [c if s < 0 else None for c, s in zip(t.classes.tolist(), t.slots.tolist())]
    known = {k: v for k, v in run.info.items() if k in SaliencyInfo.__dataclass_fields__}
    info = SaliencyInfo(
        name, run.target.labels(), classes, internal_batch_size=chunker.largest, **known
    )
    if result:
        return _result(model, out, x.detach().float().cpu(), info, REDUCTIONS[meth.reduce])
    return out, info


def _result(model, maps, images, info: SaliencyInfo, reduce) -> SaliencyResult:
    """The result with what the model sees in each image: the probability of its target
    class and its top-1 class (the model runs here, not in the result)."""
    probs = classify(model, images, as_photo=False)
    if probs is None:
        return SaliencyResult(maps, images, info, reduce)
    probabilities = [
        float(probs[i, c]) if c is not None and 0 <= c < probs.shape[1] else None
        for i, c in enumerate(info.classes)
    ]
    return SaliencyResult(maps, images, info, reduce, probabilities, top1(probs, model.classes))


def _chunker(model: VisionModel, x: torch.Tensor, layers: list[str], size) -> Chunker:
    """Rows per pass: ``size``, or for ``"auto"`` the policy's, balanced over the rows."""
    if size != AUTO:
        return Chunker(size, x.device)
    most = rows_per_pass(model, tuple(x.shape[-2:]), layers, device=x.device)
    return Chunker(most, x.device, balance=True)


def _feature_layer(model: VisionModel, images: torch.Tensor, layer, own=()) -> str:
    """Grad-CAM's ``layer`` option; by default, for unit targets the target's own layer when
    it has a spatial map (a later layer would not see the unit's gradient), otherwise
    :func:`gradcam_layer` at the images' size."""
    if layer is not None and not isinstance(layer, str):
        raise UsageError(
            f"{arg('layer')} must be a layer name such as 'blocks.10', got {shown(layer)}"
        )
    if layer:
        return layer
    table = probe(model, tuple(images.shape[-2:]))
    for name in own:
        lay = table[name].layout if name in table else None
        if lay is not None and lay.kind != "vector" and lay.grid and lay.grid[0] * lay.grid[1] > 1:
            return name
    return gradcam_layer(model, images.shape[-2:])


__all__ = [
    "METHODS",
    "QUADRATURES",
    "REDUCTIONS",
    "SaliencyInfo",
    "SaliencyResult",
    "blur",
    "get_method",
    "gradcam_layer",
    "make_baseline",
    "method_options",
    "quadrature",
    "reduce",
    "resolve_target",
    "saliency",
]
