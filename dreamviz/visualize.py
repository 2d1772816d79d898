"""Pictures of saliency maps: colour-mapped maps, overlays on the photo, and panels.

Drawing only: the maps come from :mod:`dreamviz.attribution` (or anywhere else) as H x W arrays
or tensors, and nothing here changes them. Every picture goes through one display
normalization, :func:`display_map` (the sign drawn, percentile clipping, and smoothing for
pixel-sparse maps), with each method's defaults when ``method`` is given.

>>> overlay(photo, maps[0], method="smoothgrad").save("map.png")
>>> panel(photo, maps[0], model=model, caption="gradcam", method="gradcam").save("panel.png")
>>> display_map(maps[0], "integrated_gradients")   # the values drawn, H x W in [0, 1]
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from . import colormaps
from .defaults import SALIENCY
from .display import font, gaussian_blur, top1
from .errors import UsageError, arg, suggest
from .io import as_batch, load_image
from .models import as_vision_model, classify


def _rgb_array(image) -> np.ndarray:
    """Any image (tensor 3/1/4 x H x W or H x W, PIL of any mode, path) -> H x W x 3 in [0, 1]."""
    if isinstance(image, (str, os.PathLike, Image.Image)):
        image = load_image(image)
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.dtype.kind not in "biuf":
            raise UsageError(
                f"an image array must be H x W or H x W x (1|3|4) numbers, got {image.dtype} "
                f"{image.shape}"
            )
        arr = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
        image = torch.from_numpy(arr if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
    if not isinstance(image, torch.Tensor):
        raise UsageError(f"cannot use {type(image).__name__} as an image")
    t = image.detach().float().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dtype == torch.uint8 or image.dtype == torch.uint8:
        t = t / 255.0
    if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
        raise UsageError(
            f"{arg('image')} must be (1|3|4) x H x W or H x W, got {tuple(image.shape)}"
        )
    if t.shape[1] == 0 or t.shape[2] == 0:
        raise UsageError(f"image of shape {tuple(image.shape)} is empty; give one with pixels")
    if t.shape[0] == 4:  # composite over white, as io.pil_to_tensor does
        t = t[:3] * t[3:] + (1 - t[3:])
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t.clamp(0, 1).permute(1, 2, 0).numpy()


def _map_array(saliency_map, size: tuple[int, int]) -> np.ndarray:
    m = saliency_map
    if not isinstance(m, torch.Tensor):
        try:
            m = np.asarray(m)
        except ValueError:  # a ragged nested list
            m = None
        if m is None or m.dtype.kind not in "biuf":
            raise UsageError(
                "map must be an H x W tensor or array of numbers, got "
                + type(saliency_map).__name__
            )
        m = torch.as_tensor(m)
    m = m.detach().float().cpu()
    while m.dim() > 2 and m.shape[0] == 1:
        m = m[0]
    if m.dim() != 2:
        raise UsageError(
            f"map must be H x W, got shape {tuple(m.shape)}; reduce it over channels first "
            "(saliency(..., reduce='auto') or dreamviz.attribution.reduce(raw, 'max_abs'))"
        )
    if m.numel() == 0:
        raise UsageError(f"map of shape {tuple(m.shape)} is empty; give one with values")
    if tuple(m.shape) != size:
        m = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return m.numpy().astype(np.float64)


SIGNS = ("abs", "positive", "negative", "signed")


def _sign_of(m: np.ndarray, method: str | None, sign: str | None) -> str:
    if sign is None:
        sign = SALIENCY["sign"].get(method) if method is not None else None
        sign = sign or ("signed" if m.min() < 0 else "abs")
    if sign not in SIGNS:
        raise UsageError(
            f"unknown {arg('sign')} {sign!r}{suggest(str(sign), SIGNS)}; use one of "
            + ", ".join(SIGNS)
        )
    return sign


def display_map(
    saliency_map,
    method: str | None = None,
    *,
    sign: str | None = None,
    clip: float = SALIENCY["clip"],
    smooth: float | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The map as it is drawn: an H x W float array in [0, 1], or in [-1, 1] for ``"signed"``.

    The one display normalization of every picture (:func:`colorize`, :func:`overlay`,
    :func:`panel`, the CLI). In order:

    1. ``sign``: ``"abs"`` (|map|), ``"positive"`` (the part > 0), ``"negative"`` (the part < 0,
       as magnitudes) or ``"signed"`` (both, 0 stays 0). None: the method's default
       (``defaults.SALIENCY["sign"]``), or without ``method`` ``"signed"`` if the map has a
       value < 0, else ``"abs"``.
    2. ``clip``: divide by the ``clip`` percentile of the magnitudes and clip to 1 (-1 to 1
       when signed), so a few extreme pixels do not wash out the rest (Captum and the SmoothGrad
       paper clip the top 1-2 %). If that percentile is 0 (a map zero almost everywhere), its
       maximum is used instead.
    3. ``smooth``: a Gaussian blur with sigma ``smooth`` x the map's shorter side (0.02 is
       4.5 px at 224 px), so that a pixel-sparse map shows where its pixels are dense, as
       regions rather than specks; then the clipping of step 2 again, on the blurred map. None:
       the method's default (``defaults.SALIENCY["smooth"]``), 0 without ``method``.

    ``size`` (H, W) resizes the map first (bilinear). The input is never changed: this is for
    display only; the raw maps stay as :func:`dreamviz.saliency` returned them.
    """
    m = _map_array(saliency_map, tuple(np.shape(saliency_map)[-2:]) if size is None else size)
    return _display(m, method, sign, clip, smooth)[0]


def _display(m: np.ndarray, method, sign, clip, smooth) -> tuple[np.ndarray, bool]:
    """:func:`display_map` of an H x W float64 array, and whether the result is signed."""
    if not (isinstance(clip, numbers.Real) and 0 < clip <= 100):
        raise UsageError(f"{arg('clip')} must be a percentile in (0, 100], got {clip!r}")
    if smooth is None:
        smooth = SALIENCY["smooth"].get(method, 0.0) if method is not None else 0.0
    if not (isinstance(smooth, numbers.Real) and 0 <= smooth <= 1):
        raise UsageError(
            f"{arg('smooth')} must be a fraction of the map's shorter side in [0, 1], "
            f"got {smooth!r}"
        )
    m = np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0)
    sign = _sign_of(m, method, sign)
    if sign == "abs":
        m = np.abs(m)
    elif sign == "positive":
        m = np.maximum(m, 0.0)
    elif sign == "negative":
        m = np.maximum(-m, 0.0)
    signed = sign == "signed"
    low = -1.0 if signed else 0.0
    sigma = smooth * min(m.shape)
    if sigma >= 0.3:  # below that the kernel is a single tap
        # clipped first, so that a few extreme pixels do not become blobs that hide the rest
        m = np.clip(m / _top(m, clip), low, 1.0)
        m = gaussian_blur(torch.from_numpy(m), sigma, edges="replicate").numpy()
    return np.clip(m / _top(m, clip), low, 1.0), signed


def _top(m: np.ndarray, clip: float) -> float:
    """The ``clip`` percentile of |m|; its maximum if that is 0; 1 for an all-zero map."""
    mag = np.abs(m)
    top = np.percentile(mag, clip)
    top = top if top > 0 else mag.max()
    return float(top) if top > 0 else 1.0


def _cmap(cmap, signed: bool) -> str:
    """The colour map's name: ``cmap``, or by default diverging_dark for signed maps, else
    inferno (both dark at 0 and brightest at the largest |value|)."""
    if cmap is not None and not isinstance(cmap, str):
        raise UsageError(f"{arg('cmap')} must be a colour map name, got {type(cmap).__name__}")
    return cmap or ("diverging_dark" if signed else "inferno")


def colorize(
    saliency_map,
    method: str | None = None,
    *old,
    sign: str | None = None,
    clip: float = SALIENCY["clip"],
    smooth: float | None = None,
    cmap: str | None = None,
) -> np.ndarray:
    """An H x W map as an H x W x 3 uint8 picture of :func:`display_map`'s values: signed maps
    in ``diverging_dark`` (blue - dark - yellow), the others in ``inferno`` (0 is black).

    Its arguments are :func:`display_map`'s (``method`` second), and ``cmap``. The old order,
    ``colorize(map, cmap, clip)``, still works for one release, with a DeprecationWarning."""
    if old or (isinstance(method, str) and method in colormaps.ANCHORS):
        if len(old) > 1:
            raise TypeError(f"colorize() takes 2 positional arguments, {2 + len(old)} given")
        warnings.warn(
            "colorize(map, cmap, clip) is deprecated: its second argument is the method now, "
            "as display_map's is; write colorize(map, cmap=..., clip=...)",
            DeprecationWarning,
            stacklevel=2,
        )
        method, cmap, clip = None, method, old[0] if old else clip
    m = _map_array(saliency_map, tuple(np.shape(saliency_map)[-2:]))
    return _heat(*_display(m, method, sign, clip, smooth), cmap)


def overlay(
    image,
    saliency_map,
    *,
    method: str | None = None,
    sign: str | None = None,
    smooth: float | None = None,
    cmap: str | None = None,
    alpha: float = SALIENCY["alpha"],
    clip: float = SALIENCY["clip"],
    dim: float = SALIENCY["dim"],
) -> Image.Image:
    """The map drawn over the photo, readable where it is high and where it is low.

    With ``w`` = |:func:`display_map`| in [0, 1] at each pixel:

    * the photo fades to grey and darkens by ``dim`` where ``w`` is 0 (``dim=0`` keeps it as
      it is), and keeps its colours where ``w`` is 1;
    * the map's colour is laid on with opacity ``alpha * min(1, 2 w)``: full ``alpha`` from half
      the clipped maximum up.

    Magnitudes use ``inferno``, signed maps ``diverging_dark`` (light blue for negative, light
    yellow for positive, dark at 0): both are brightest where |map| is largest, so strong
    evidence of either sign stands out on the dimmed photo. ``image``: a tensor (3, 1 or 4 x H x
    W, or H x W), a PIL image of any mode (grayscale, RGBA, 16-bit) or a path; alpha is
    composited over white. ``saliency_map``: H x W (resized to the image if needed).
    ``method``, ``sign``, ``smooth`` and ``clip``: as in :func:`display_map`.
    """
    _check_opacity(alpha, dim)
    rgb = _rgb_array(image)
    v, signed = _display(_map_array(saliency_map, rgb.shape[:2]), method, sign, clip, smooth)
    return _blend(rgb, v, _heat(v, signed, cmap), alpha, dim)


def _check_opacity(alpha, dim) -> None:
    for name, value in (("alpha", alpha), ("dim", dim)):
        if not (isinstance(value, numbers.Real) and 0 <= value <= 1):
            raise UsageError(f"{arg(name)} must be in [0, 1], got {value!r}")


def _heat(v: np.ndarray, signed: bool, cmap) -> np.ndarray:
    """Display values (:func:`display_map`) as H x W x 3 uint8 colours."""
    return colormaps.apply(0.5 + 0.5 * v if signed else v, _cmap(cmap, signed))


def _blend(rgb: np.ndarray, v: np.ndarray, heat: np.ndarray, alpha, dim) -> Image.Image:
    """:func:`overlay`'s picture from the photo (H x W x 3 in [0, 1]), the display values and
    their colours."""
    w = np.abs(v)[..., None]
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    base = (w * rgb + (1 - w) * grey[..., None]) * (1 - dim * (1 - w))
    a = alpha * np.minimum(1.0, 2 * w)
    out = (1 - a) * base + a * (heat / 255.0)
    return Image.fromarray(np.round(out * 255).astype(np.uint8), "RGB")


def predict(model, image) -> tuple[str, float, int]:
    """The top-1 class of one image: (name, softmax probability, index), by the one top-1
    predictor (:func:`dreamviz.models.classify`, :func:`dreamviz.display.top1`)."""
    model = as_vision_model(model)
    probs = classify(model, as_batch(image, model)[:1], as_photo=False)
    if probs is None:
        raise UsageError(f"{model.name} does not return N x classes logits; cannot predict")
    (name, p), index = top1(probs, model.classes)[0], int(probs[0].argmax())
    return name, p, index


def panel(
    image,
    saliency_map,
    *,
    model=None,
    caption: str | Sequence[str] | None = None,
    method: str | None = None,
    sign: str | None = None,
    smooth: float | None = None,
    cmap: str | None = None,
    alpha: float = SALIENCY["alpha"],
    clip: float = SALIENCY["clip"],
    dim: float = SALIENCY["dim"],
) -> Image.Image:
    """Side by side: the photo, the map (:func:`colorize`), the overlay (:func:`overlay`, the
    same display values); below, the caption lines and, with ``model``, the predicted class and
    its probability."""
    _check_opacity(alpha, dim)
    rgb = _rgb_array(image)
    h, w = rgb.shape[:2]
    v, signed = _display(_map_array(saliency_map, (h, w)), method, sign, clip, smooth)
    colours = _heat(v, signed, cmap)
    lines = [caption] if isinstance(caption, str) else caption or []
    if not isinstance(lines, Sequence) or not all(isinstance(line, str) for line in lines):
        raise UsageError(f"{arg('caption')} must be a string or a list of strings")
    lines = list(lines)
    if model is not None:
        name, p, i = predict(model, _chw(rgb))
        lines.append(f"predicted: {name} ({i}), p = {p:.1%}")
    f = font(max(11, h // 16))
    line_h = int(f.getbbox("Ag")[3] * 1.35) + 2 if lines else 0
    pad = 4
    canvas = Image.new("RGB", (3 * w + 4 * pad, h + 2 * pad + line_h * len(lines)), "white")
    tiles = (
        Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB"),
        Image.fromarray(colours, "RGB"),
        _blend(rgb, v, colours, alpha, dim),
    )
    for k, tile in enumerate(tiles):
        canvas.paste(tile, (pad + k * (w + pad), pad))
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(lines):
        draw.text((pad, h + 2 * pad + j * line_h), text, fill=(0, 0, 0), font=f)
    return canvas


def _chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())


def alpha_map(evidence, percentile: float = 80.0) -> Image.Image:
    """MACO's transparency: an accumulated |gradient| map (H x W), clipped at its
    ``percentile`` and scaled to [0, 1], as a grayscale picture (white: most evidence)."""
    m = np.asarray(torch.as_tensor(evidence).detach().float().cpu(), dtype=np.float64)
    top = np.percentile(m, percentile)
    a = np.clip(m / top, 0, 1) if top > 0 else np.zeros_like(m)
    return Image.fromarray(np.round(a * 255).astype(np.uint8), "L")


def with_alpha(image, evidence, percentile: float = 80.0) -> Image.Image:
    """The picture as RGBA, opaque where the evidence is (see :func:`alpha_map`)."""
    rgb = Image.fromarray(np.round(_rgb_array(image) * 255).astype(np.uint8), "RGB")
    out = rgb.convert("RGBA")
    out.putalpha(alpha_map(evidence, percentile).resize(rgb.size))
    return out


__all__ = [
    "SIGNS",
    "alpha_map",
    "colorize",
    "display_map",
    "overlay",
    "panel",
    "predict",
    "with_alpha",
]
