"""Explain one photo, from pixels to units (Olah et al., "The Building Blocks of
Interpretability", Distill 2018).

>>> ex = dreamviz.explain(model, "assets/chelsea.jpg", top=8, groups=4)
>>> ex.channels[0].channel, ex.channels[0].share      # the unit that drives the class most
>>> ex                                                # a notebook shows the whole explanation

For the target class (default: the top-1) at a hidden ``layer`` (default: Grad-CAM's layer):

* **channel values**, by ``method`` (:data:`MEANING` says what each number means; the page and
  ``explain.json`` say it too):

  - ``ig`` (the default, chosen by ``scripts/eval_explain.py`` on the photo set's choice
    part): Integrated Gradients *at the layer*: the layer's output ``a`` is scaled from 0 to
    its value along a straight path, and ``attr_c = sum_positions a_c * mean_alpha d logit /
    d a_c (alpha * a)``. They satisfy completeness: they sum to ``logit(x) - logit(x with the
    layer's output zeroed)``, which :class:`Explanation` reports with the residual
    (``completeness_error``). A channel's value is its part of the drop when the *whole layer*
    is zeroed, not the drop when this channel alone is;
  - ``ablation``: exactly that drop, ``logit(x) - logit(x with channel c alone zeroed)``, for
    every channel, batched (:func:`channel_ablation`);
  - ``grad_x_act``: one gradient at the photo times the activation, a first-order estimate of
    the single-channel drop (Olah's version);
  - ``ig_blur``: Integrated Gradients from the layer's activation on a blurred copy of the
    photo (``defaults.EXPLAIN["blur"]``);
* each top channel's **spatial map** (its attribution per position, at the photo's size) and
  its **feature visualization**, rendered by :func:`dreamviz.render` with the default recipe,
  or read from a gallery built for the same model (``gallery=DIR``);
* with ``groups=k``, **k factors** of the layer's activations by non-negative matrix
  factorization (positions x channels, multiplicative updates in torch: no extra dependency),
  each with its map, its attribution to the target and a rendering of its direction;
* the top-5 classes, and the target's Grad-CAM and SmoothGrad maps through
  :func:`dreamviz.saliency`.

The model is left exactly as it was (hooks, train/eval flags, ``requires_grad``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import defaults as D
from . import recipes
from .attribution import blur, gradcam_layer, saliency
from .batching import Chunker, is_oom, rows_per_pass
from .engine import render
from .errors import UsageError, arg, integer
from .hooks import LOGITS, Capture, as_nchw, check_layer, num_channels, probe, replace_output
from .io import as_batch, as_image, read_image, to_pil
from .models import VisionModel, as_vision_model, model_guard
from .objectives import channel, direction
from .objectives import parse as parse_target

METHODS = ("ablation", "grad_x_act", "ig", "ig_blur")
#: what a channel's value means, per ranking method: the page and explain.json say it
MEANING = {
    "ablation": "how much the class logit drops when this channel alone is set to zero "
    "(measured: one forward pass per channel)",
    "grad_x_act": "gradient x activation: a first-order estimate of how much the class logit "
    "drops when this channel alone is set to zero",
    "ig": "Integrated Gradients from a zeroed layer: this channel's part of the logit's drop "
    "when the whole layer is set to zero (not the drop when this channel alone is)",
    "ig_blur": "Integrated Gradients from the layer as it is on a blurred copy of the photo: "
    "this channel's part of the logit's drop when the layer sees the blurred photo",
}
EXAMPLES_SHOWN = 4  # dataset examples beside each ranked channel


@dataclass
class Unit:
    """One channel (or one NMF factor) of the explanation."""

    index: int  # the channel, or the factor's number
    value: float  # attribution to the target logit (logit units)
    share: float  # value / (logit - baseline logit)
    activation: float  # mean activation (channels) or mean factor weight (groups)
    map: torch.Tensor  # H x W attribution per position, at the photo's size
    picture: torch.Tensor | None = None  # 3 x h x w feature visualization
    source: str = ""  # "render", or the gallery PNG it came from
    direction: torch.Tensor | None = None  # groups: the factor's direction over channels


@dataclass
class Explanation:
    image: torch.Tensor  # 3 x H x W in [0, 1]
    target: int
    target_name: str
    top5: list[tuple[int, str, float]]  # (class, name, probability)
    layer: str
    method: str
    logit: float  # the target's logit on the photo
    baseline: float  # ... with the layer's output zeroed
    total: float  # sum of every channel's attribution
    channels: list[Unit]  # the top channels, by attribution
    groups: list[Unit] = field(default_factory=list)
    gradcam: torch.Tensor | None = None  # H x W
    smoothgrad: torch.Tensor | None = None  # H x W
    all_values: torch.Tensor | None = None  # C: every channel's attribution

    @property
    def completeness_error(self) -> float | None:
        """|sum of attributions - (logit - baseline)| / |logit - baseline| (IG: small); None
        for the rankings that do not add up to anything (ablation, gradient x activation)."""
        if self.method not in ("ig", "ig_blur"):
            return None
        delta = self.logit - self.baseline
        return abs(self.total - delta) / max(abs(delta), 1e-12)

    @property
    def meaning(self) -> str:
        """What a channel's value means, in words."""
        return MEANING[self.method]

    def _totals(self) -> str:
        what = "on the blurred copy" if self.method == "ig_blur" else f"with {self.layer} zeroed"
        text = f"logit {self.logit:.3f}, {self.baseline:.3f} {what}; values sum to {self.total:.3f}"
        if self.completeness_error is not None:
            text += f" (completeness error {self.completeness_error:.2%})"
        return text

    def summary(self) -> str:
        lines = [
            f"{self.target_name} ({self.target}): {self._totals()}",
            f"  value: {self.meaning}",
        ]
        for u in self.channels:
            lines.append(f"  {self.layer}:{u.index}  {u.value:+.3f}  ({u.share:+.1%})")
        for u in self.groups:
            lines.append(f"  group {u.index}  {u.value:+.3f}  ({u.share:+.1%})")
        return "\n".join(lines)

    def to_json(self) -> dict:
        def unit(u: Unit, kind: str) -> dict:
            d = {"index": u.index, "value": u.value, "share": u.share, "activation": u.activation}
            d["source"] = u.source
            if kind == "group" and u.direction is not None:
                d["top_channels"] = u.direction.topk(min(5, len(u.direction))).indices.tolist()
            return d

        return {
            "target": self.target,
            "target_name": self.target_name,
            "top5": [{"class": c, "name": n, "p": p} for c, n, p in self.top5],
            "layer": self.layer,
            "method": self.method,
            "value_means": self.meaning,
            "logit": self.logit,
            "baseline_logit": self.baseline,
            "attribution_sum": self.total,
            "completeness_error": self.completeness_error,
            "channels": [unit(u, "channel") for u in self.channels],
            "groups": [unit(u, "group") for u in self.groups],
        }

    def _repr_html_(self) -> str:
        return page_html(self, inline=True)


# --------------------------------------------------------------------------- attribution


def _zero_channels(out: torch.Tensor, layout, keep: torch.Tensor) -> torch.Tensor:
    """``out`` (one row) times ``keep`` (B x C, 1 keeps a channel, 0 zeroes it): B rows, on the
    layout's feature axis (dim 1 for NCHW and vectors, the last for channels-last and tokens)."""
    keep = keep.to(device=out.device, dtype=out.dtype)
    if layout is None or layout.kind in ("nchw", "vector"):
        return out * keep.view(*keep.shape, *([1] * (out.dim() - 2)))
    return out * keep.view(keep.shape[0], *([1] * (out.dim() - 2)), keep.shape[1])


def ablate_many(
    model, image, target: int, layer: str, keep: torch.Tensor, rows=D.EXPLAIN["ablation_rows"]
) -> torch.Tensor:
    """The target's logit for each row of ``keep`` (B x C: 1 keeps a channel of ``layer``, 0
    zeroes it), ``rows`` rows per forward pass ("auto": :func:`dreamviz.batching.rows_per_pass`).
    The photo runs once per pass up to the layer, whose output is replaced there by the pass's
    rows (where the network does not broadcast a one-row input, the photo is repeated)."""
    model = as_vision_model(model)
    layout = check_layer(model, layer).layout
    x = as_batch(image, model)
    rows = integer("rows", rows, 1, auto=True)
    if rows == "auto":
        rows = rows_per_pass(model, tuple(x.shape[-2:]), device=x.device)

    def pass_(r0: int, r1: int) -> torch.Tensor:
        chunk = keep[r0:r1]
        with replace_output(model, layer, lambda o: _zero_channels(o, layout, chunk)):
            try:
                logits = model(x)
            except RuntimeError as e:
                if is_oom(e):  # the chunker halves the rows and tries again
                    raise
                logits = None
            if logits is None or logits.shape[0] != len(chunk):
                logits = model(x.expand(len(chunk), -1, -1, -1))
        return logits[:, target].float().cpu()

    with torch.no_grad():
        return torch.cat(list(Chunker(rows, x.device).run(len(keep), pass_)))


def channel_ablation(model, image, target: int, layer: str, rows=D.EXPLAIN["ablation_rows"]):
    """Exact single-channel ablation: for every channel c of ``layer``, ``logit(photo) -
    logit(photo with channel c alone set to zero)`` (C values, batched by :func:`ablate_many`)."""
    model = as_vision_model(model)
    n = num_channels(check_layer(model, layer))
    with model_guard(model), torch.no_grad():
        logit = float(model(as_batch(image, model))[0, target])
    keep = 1 - torch.eye(n)
    return logit - ablate_many(model, image, target, layer, keep, rows)


def layer_attribution(
    model: VisionModel,
    image: torch.Tensor,
    target: int,
    layer: str,
    method: str = "ig",
    steps: int = D.EXPLAIN["steps"],
    internal_batch_size: int = D.EXPLAIN["internal_batch_size"],
):
    """Attribution of ``target``'s logit to every element of ``layer``'s output for one image
    (1 x 3 x H x W): ``(attr, activation, logit, baseline_logit)``, attr and activation in the
    layer's own layout. ``ig``: Integrated Gradients from a zero layer (sums to logit - baseline
    up to the quadrature error, baseline: the layer zeroed); ``ig_blur``: the same from the
    layer's activation on a blurred copy of the photo (baseline: the layer as it is on that
    copy); ``grad_x_act`` and ``ablation``: one gradient at the photo times the activation
    (``ablation`` ranks channels by :func:`channel_ablation`; this is its spatial map)."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    integer("steps", steps, 1)
    with Capture(model, [layer, LOGITS], stop_early=False) as cap, torch.no_grad():
        acts = cap(image)
        a0 = acts[layer].detach()
        logit = float(acts[LOGITS][0, target])
        start = torch.zeros_like(a0)
        if method == "ig_blur":
            start = cap(blur(image, *D.EXPLAIN["blur"]))[layer].detach()
    with replace_output(model, layer, lambda _o: start), torch.no_grad():
        baseline = float(model(image)[0, target])
    # IG: the midpoint rule on [0, 1]; gradient x activation: the gradient at the photo
    one = method in ("grad_x_act", "ablation")
    alphas = [1.0] if one else [(k + 0.5) / steps for k in range(steps)]
    grad = torch.zeros_like(a0)
    leaf: list[torch.Tensor] = []

    def scaled(_out, scale):
        z = start + scale.view(-1, *([1] * (a0.dim() - 1))) * (a0 - start)
        leaf.append(z.requires_grad_(True))
        return z.clone()  # an in-place op after the layer (ReLU(inplace)) must not hit the leaf

    for i in range(0, len(alphas), internal_batch_size):
        chunk = torch.tensor(alphas[i : i + internal_batch_size], device=a0.device, dtype=a0.dtype)
        leaf.clear()
        with replace_output(model, layer, lambda out, s=chunk: scaled(out, s)):
            logits = model(image.expand(len(chunk), -1, -1, -1))
            (g,) = torch.autograd.grad(logits[:, target].sum(), leaf[0])
        grad += g.sum(0, keepdim=True) / len(alphas)
    return grad * (a0 - start), a0, logit, baseline


def _spatial(t: torch.Tensor, layout, size) -> torch.Tensor:
    """N x C x h x w per-position values (from any layout) upsampled to the photo's size."""
    m = as_nchw(t, layout).float()
    return F.interpolate(m, size=size, mode="bilinear", align_corners=False)


def nmf(v: torch.Tensor, k: int, iters: int = 300, seed: int = 0):
    """Non-negative matrix factorization ``v ~ w @ h`` (P x C -> P x k, k x C) by Lee and
    Seung's multiplicative updates for the Frobenius norm, from a seeded start."""
    g = torch.Generator().manual_seed(seed)
    p, c = v.shape
    scale = math.sqrt(float(v.mean().clamp_min(1e-12)) / k)
    w = torch.rand(p, k, generator=g, dtype=v.dtype) * scale + 1e-4
    h = torch.rand(k, c, generator=g, dtype=v.dtype) * scale + 1e-4
    eps = 1e-9
    for _ in range(iters):
        h *= (w.T @ v) / (w.T @ w @ h + eps)
        w *= (v @ h.T) / (w @ h @ h.T + eps)
    return w, h


# --------------------------------------------------------------------------- pictures


def gallery_picture(gallery: str | os.PathLike, model: VisionModel, layer: str, c: int):
    """The feature visualization of ``layer:c`` from a gallery built for the same model and
    weights (its ``manifest.json``), or None."""
    manifest = Path(gallery) / "manifest.json"
    if not manifest.is_file():
        raise UsageError(f"{str(gallery)!r} holds no gallery manifest.json; build one first")
    data = json.loads(manifest.read_text())
    if data.get("model") != model.name or data.get("weights") != model.weights:
        raise UsageError(
            f"the gallery in {str(gallery)!r} was built for {data.get('model')} "
            f"({data.get('weights')}), not {model.name} ({model.weights})"
        )
    for rec in data.get("units", []):
        if rec.get("unit") == f"{layer}:{c}" and rec.get("status") == "ok":
            path = Path(gallery) / rec["file"]
            if path.is_file():
                return read_image(path), str(path)
    return None


ACTIVATIONS = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Hardtanh, torch.nn.SiLU, torch.nn.GELU)


def picture_layer(model: VisionModel, layer: str) -> str:
    """The layer a channel of ``layer`` is rendered at: its pre-activation when ``layer`` ends in
    a ReLU-like module (a channel that starts at zero after a ReLU gets no gradient and renders
    as flat grey, the dead-ReLU pitfall), else ``layer`` itself."""
    module = dict(model.net.named_modules()).get(layer)
    children = list(module.named_children()) if module is not None else []
    if len(children) >= 2 and isinstance(children[-1][1], ACTIVATIONS):
        before = f"{layer}.{children[-2][0]}"
        table = probe(model)
        if before in table and table[before].shape == table[layer].shape:
            return before
    return layer


def _pictures(model, layer, items, gallery, settings: dict, cache: dict) -> None:
    """Fill ``picture`` for channel units and factor directions: from the gallery where it has
    them, the rest rendered in one batch (at :func:`picture_layer`)."""
    todo = []
    for u in items:
        key = ("dir", tuple(u.direction.tolist())) if u.direction is not None else u.index
        if key in cache:
            u.picture, u.source = cache[key]
            continue
        if gallery is not None and u.direction is None:
            found = gallery_picture(gallery, model, layer, u.index)
            if found is not None:
                u.picture, u.source = found
                cache[key] = found
                continue
        todo.append((key, u))
    if not todo:
        return
    layer = picture_layer(model, layer)
    terms = [
        (direction(layer, u.direction, image=i) if u.direction is not None else None)
        or channel(layer, u.index, image=i)
        for i, (_, u) in enumerate(todo)
    ]
    if len(terms) == 1:
        terms = [
            direction(layer, todo[0][1].direction)
            if todo[0][1].direction is not None
            else channel(layer, todo[0][1].index)
        ]
    images = render(model, sum(terms), batch=len(todo), **recipes.render_kwargs(settings, model))
    for i, (key, u) in enumerate(todo):
        u.picture, u.source = images.images[i], "render"
        cache[key] = (u.picture, "render")


# --------------------------------------------------------------------------- the API


def _target_index(model: VisionModel, target, logits: torch.Tensor) -> int:
    if target is None:
        return int(logits.argmax(1)[0])
    obj = parse_target(target, model, kind="class")
    return int(obj.target[1])


def explain(
    model,
    image,
    target=None,
    layer: str | None = None,
    top: int = D.EXPLAIN["top"],
    groups: int = D.EXPLAIN["groups"],
    *,
    method: str = D.EXPLAIN["method"],
    steps: int = D.EXPLAIN["steps"],
    gallery: str | os.PathLike | None = None,
    pictures: bool = True,
    saliency_maps: bool = True,
    render_settings: dict | None = None,
    internal_batch_size: int = D.EXPLAIN["internal_batch_size"],
) -> Explanation | list[Explanation]:
    """Explain why ``model`` gives ``image`` its class (see the module docstring).

    ``image``: a path, a PIL image, a 3 x H x W tensor in [0, 1], or a list of those (one
    :class:`Explanation` each; the ranking of each photo does not depend on the others, and
    a channel shared by several photos is rendered once). ``target``: a class index or name
    (default: each photo's top-1). ``layer``: default :func:`dreamviz.attribution.gradcam_layer`.
    ``render_settings``: overrides of ``defaults.RENDER`` for the pictures (e.g. ``steps``).
    """
    model = as_vision_model(model)
    many = isinstance(image, (list, tuple))
    photos = [as_image(i) for i in (image if many else [image])]
    integer("top", top, 1)
    integer("groups", groups, 0)
    layer = layer or gradcam_layer(model)
    info = check_layer(model, layer)
    n_channels = num_channels(info)
    if n_channels is None:
        raise UsageError(
            f"{layer} has no channel axis ({info.shape}); give {arg('layer', 'NAME')} with one"
        )
    if top > n_channels:
        raise UsageError(f"{arg('top')} is {top} but {layer} has {n_channels} channels")
    settings = recipes.settings(**(render_settings or {}))
    cache: dict = {}
    out = []
    for photo in photos:
        out.append(
            _explain_one(
                model, photo, target, layer, info.layout, top, groups, method, steps,
                gallery, pictures, saliency_maps, settings, cache, internal_batch_size,
            )
        )  # fmt: skip
    return out if many else out[0]


def _factors(attr, act, layout, groups: int, size, share: float) -> list[Unit]:
    """The layer's activations factored into ``groups`` non-negative directions (NMF), each
    with its part of the attribution and its map at the photo's ``size``."""
    a = as_nchw(act, layout)[0].float().clamp_min(0)  # C x h x w
    _, gh, gw = a.shape
    w, h = nmf(a.flatten(1).T.double(), groups)
    grad_density = as_nchw(attr / act.where(act.abs() > 1e-12, torch.ones_like(act)), layout)
    g = grad_density[0].flatten(1).T.double()  # P x C: the path-averaged gradient
    facs = []
    for j in range(groups):
        part = w[:, j : j + 1] @ h[j : j + 1]  # P x C: this factor's activations
        value = float((part * g).sum())
        fmap = w[:, j].view(1, 1, gh, gw).float()
        fmap = F.interpolate(fmap, size=size, mode="bilinear", align_corners=False)[0, 0]
        facs.append(
            Unit(j, value, value / share, float(w[:, j].mean()), fmap, direction=h[j].float())
        )
    return facs


def _explain_one(
    model, photo, target, layer, layout, top, groups, method, steps,
    gallery, pictures, saliency_maps, settings, cache, internal_batch_size,
) -> Explanation:  # fmt: skip
    x = as_batch(photo, model)
    size = tuple(x.shape[-2:])
    with model_guard(model), torch.no_grad():
        logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise UsageError(f"{model.name} does not return N x classes logits; cannot explain")
    t = _target_index(model, target, logits)
    probs = logits.float().softmax(1)[0]
    names = model.classes or [f"class {i}" for i in range(logits.shape[1])]
    top5 = [(int(i), names[int(i)], float(probs[i])) for i in probs.topk(5).indices]
    attr, act, logit, baseline = layer_attribution(
        model, x, t, layer, method, steps, internal_batch_size
    )
    per_channel = as_nchw(attr, layout).flatten(2).sum(2)[0]  # C
    if layout is not None and layout.kind == "tokens" and layout.prefix:
        per_channel = attr[0].sum(0)  # the class token's part counts too (completeness)
    if method == "ablation":
        per_channel = channel_ablation(model, x, t, layer).to(per_channel)
    total = float(per_channel.sum())
    delta = logit - baseline
    share = delta if abs(delta) > 1e-12 else 1.0
    mean_act = as_nchw(act, layout).flatten(2).mean(2)[0]
    maps = _spatial(attr, layout, size)[0]
    order = per_channel.argsort(descending=True)[:top].tolist()
    chans = [
        Unit(c, float(per_channel[c]), float(per_channel[c]) / share, float(mean_act[c]), maps[c])
        for c in order
    ]
    facs = _factors(attr, act, layout, groups, size, share) if groups else []
    if pictures:
        _pictures(model, layer, chans + facs, gallery, settings, cache)
    gc = sg = None
    if saliency_maps:
        gc = saliency(model, x, t, method="gradcam")[0].cpu()
        sg = saliency(model, x, t, method="smoothgrad")[0].cpu()
    return Explanation(
        image=photo,
        target=t,
        target_name=names[t],
        top5=top5,
        layer=layer,
        method=method,
        logit=logit,
        baseline=baseline,
        total=total,
        channels=chans,
        groups=facs,
        gradcam=gc,
        smoothgrad=sg,
        all_values=per_channel.cpu(),
    )


def ablate(model, image, target: int, layer: str, channels: Sequence[int]) -> float:
    """The target's logit with ``channels`` of ``layer`` set to zero (a forward hook): the
    faithfulness check's measurement."""
    model = as_vision_model(model)
    keep = torch.ones(1, num_channels(check_layer(model, layer)))
    keep[0, torch.tensor(list(channels), dtype=torch.long)] = 0
    return float(ablate_many(model, image, target, layer, keep)[0])


def write_page(
    ex: Explanation,
    out: str | os.PathLike,
    command: str | None = None,
    examples: dict[str, list[dict]] | None = None,
) -> Path:
    """A static folder for one explanation: index.html, the images it shows, explain.json.
    ``examples``: per unit name (``LAYER:CHANNEL``), dataset examples shown beside each ranked
    channel (``{"src": path relative to out, "activation", "image"}``, highest first, as
    :func:`dreamviz.dataset.page_examples` gives them)."""
    from .io import save_png, write_json, write_text
    from .visualize import overlay

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"photo": save_png(out / "photo.png", ex.image)}
    if ex.gradcam is not None:
        picture = overlay(ex.image, ex.gradcam, method="gradcam")
        files["gradcam"] = save_png(out / "gradcam.png", picture)
    if ex.smoothgrad is not None:
        picture = overlay(ex.image, ex.smoothgrad, method="smoothgrad")
        files["smoothgrad"] = save_png(out / "smoothgrad.png", picture)
    for kind, units in (("channel", ex.channels), ("group", ex.groups)):
        for u in units:
            save_png(out / f"{kind}_{u.index}_map.png", overlay(ex.image, u.map, sign="signed"))
            if u.picture is not None:
                save_png(out / f"{kind}_{u.index}.png", to_pil(u.picture))
    data = ex.to_json()
    data["command"] = command
    write_json(out / "explain.json", data)
    page = out / "index.html"
    write_text(page, page_html(ex, command=command, examples=examples))
    return page


TEMPLATE = Path(__file__).resolve().parent / "data" / "explain.html"


def _data_url(image) -> str:
    import base64
    import io as _bytes

    buf = _bytes.BytesIO()
    (image if hasattr(image, "save") else to_pil(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _unit_rows(ex: Explanation, kind: str, units: list[Unit], src, examples=None) -> str:
    """The page's rows of channels or groups: picture, map over the photo, value, and a
    channel's dataset examples when ``examples`` has them."""
    import html

    from .visualize import overlay

    esc = html.escape
    out = []
    for u in units:
        label = f"{ex.layer}:{u.index}" if kind == "channel" else f"group {u.index}"
        pic = (
            f'<img src="{src(f"{kind}_{u.index}", lambda u=u: to_pil(u.picture))}" '
            f'alt="{esc(label)}">'
            if u.picture is not None
            else "<div class=none>no picture</div>"
        )
        heat = src(f"{kind}_{u.index}_map", lambda u=u: overlay(ex.image, u.map, sign="signed"))
        bar = max(0.0, min(100.0, abs(u.share) * 100))
        sign = "pos" if u.value >= 0 else "neg"
        extra = ""
        if u.direction is not None:
            chans = ", ".join(
                str(c) for c in u.direction.topk(min(4, len(u.direction))).indices.tolist()
            )
            extra = f"<small>mostly channels {esc(chans)}</small>"
        shown = (examples or {}).get(label, [])[:EXAMPLES_SHOWN] if kind == "channel" else []
        strip = "".join(
            f'<img src="{esc(e["src"])}" alt="{esc(e.get("image", ""))}" '
            f'title="{esc(e.get("image", ""))} activation {e["activation"]:.4g}">'
            for e in shown
        )
        strip = f'<div class="ex">{strip}</div>' if strip else ""
        out.append(
            f'<div class=row><div class=pic>{pic}</div><div class=pic><img src="{heat}" '
            f'alt="where {esc(label)} counts"></div><div class=info><b>{esc(label)}</b>'
            f"{extra}<span>{u.value:+.3f} logit ({u.share:+.1%})</span>"
            f'<div class="bar {sign}" style="width:{bar:.1f}%"></div>'
            f"<small>{esc(u.source)}</small></div>{strip}</div>"
        )
    return "\n".join(out)


def page_html(
    ex: Explanation,
    command: str | None = None,
    inline: bool = False,
    examples: dict[str, list[dict]] | None = None,
) -> str:
    """The explanation as HTML: with ``inline`` every image is embedded (a notebook cell),
    otherwise it names the files :func:`write_page` writes beside it (and ``examples``, see
    :func:`write_page`)."""
    import html
    from string import Template

    from .visualize import overlay

    esc = html.escape

    def src(name: str, make) -> str:
        return _data_url(make()) if inline else f"{name}.png"

    top5 = "".join(
        f"<li{' class=t' if c == ex.target else ''}>{esc(n)} ({c}) <b>{p:.1%}</b></li>"
        for c, n, p in ex.top5
    )
    maps = []
    for name, m in (("Grad-CAM", ex.gradcam), ("SmoothGrad", ex.smoothgrad)):
        if m is not None:
            file = "gradcam" if name == "Grad-CAM" else "smoothgrad"
            img = src(file, lambda m=m, f=file: overlay(ex.image, m, method=f))
            maps.append(
                f'<figure><img src="{img}" alt="{name}"><figcaption>{name}</figcaption></figure>'
            )
    groups = ""
    if ex.groups:
        groups = f"<h2>Groups (NMF of {esc(ex.layer)})</h2>" + _unit_rows(
            ex, "group", ex.groups, src
        )
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        title=esc(f"{ex.target_name}: why"),
        photo=src("photo", lambda: to_pil(ex.image)),
        target=esc(f"{ex.target_name} ({ex.target})"),
        top5=top5,
        maps="".join(maps),
        layer=esc(ex.layer),
        summary=esc(f"{ex._totals()} ({ex.method})"),
        meaning=esc(ex.meaning),
        channels=_unit_rows(ex, "channel", ex.channels, src, examples),
        groups=groups,
        command=f"<pre>{esc(command)}</pre>" if command else "",
    )


__all__ = [
    "METHODS",
    "Explanation",
    "Unit",
    "MEANING",
    "ablate",
    "ablate_many",
    "channel_ablation",
    "explain",
    "gallery_picture",
    "layer_attribution",
    "nmf",
    "write_page",
]
