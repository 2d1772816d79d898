"""Pictures of saliency maps: colour-mapped maps, overlays on the photo, and panels.

Drawing only: the maps come from :mod:`dreamviz.attribution` (or anywhere else) as H x W arrays
or tensors, and nothing here changes them.

>>> overlay(photo, maps[0]).save("map.png")
>>> panel(photo, maps[0], model=model, caption="gradient").save("panel.png")
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from . import colormaps
from .defaults import SALIENCY
from .errors import UsageError, arg
from .io import as_batch, load_image
from .models import as_vision_model, model_guard


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
        raise UsageError(f"image must be (1|3|4) x H x W or H x W, got {tuple(image.shape)}")
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


def _normalize(m: np.ndarray, clip: float, signed: bool | None) -> tuple[np.ndarray, bool]:
    """Values in [0, 1] for a colour map (0.5 is zero for signed maps), and whether signed."""
    if not (isinstance(clip, numbers.Real) and 0 < clip <= 100):
        raise UsageError(f"{arg('clip')} must be a percentile in (0, 100], got {clip!r}")
    m = np.nan_to_num(m)
    signed = bool(m.min() < 0) if signed is None else signed
    if signed:
        top = np.percentile(np.abs(m), clip)
        return (0.5 + 0.5 * np.clip(m / top, -1, 1) if top > 0 else np.full_like(m, 0.5)), True
    low, top = m.min(), np.percentile(m, clip)
    return (np.clip((m - low) / (top - low), 0, 1) if top > low else np.zeros_like(m)), False


def _cmap(cmap, signed: bool) -> str:
    """The colour map's name: ``cmap``, or by default diverging for signed maps, else inferno."""
    if cmap is not None and not isinstance(cmap, str):
        raise UsageError(f"{arg('cmap')} must be a colour map name, got {type(cmap).__name__}")
    return cmap or ("diverging" if signed else "inferno")


def colorize(
    saliency_map,
    cmap: str | None = None,
    clip: float = SALIENCY["clip"],
    signed: bool | None = None,
) -> np.ndarray:
    """An H x W map as an H x W x 3 uint8 picture.

    The map is clipped at its ``clip`` percentile (of |map| for signed maps) before scaling, so
    a few extreme pixels do not wash out the rest. Signed maps (``signed=None``: any value < 0)
    use the ``diverging`` map with 0 at white; magnitudes scale from their minimum and use
    ``inferno``.
    """
    m = _map_array(saliency_map, tuple(np.shape(saliency_map)[-2:]))
    v, signed = _normalize(m, clip, signed)
    return colormaps.apply(v, _cmap(cmap, signed))


def overlay(
    image,
    saliency_map,
    *,
    cmap: str | None = None,
    alpha: float = SALIENCY["alpha"],
    clip: float = SALIENCY["clip"],
    signed: bool | None = None,
) -> Image.Image:
    """The map as a heat map blended over the photo: ``(1 - alpha) * photo + alpha * heat``.

    For signed maps the opacity grows with |value| instead (``min(1, 2 * alpha * |v|)``, v the
    clipped value in [-1, 1]), so pixels near zero show the photo rather than a white veil.
    ``image``: a tensor (3, 1 or 4 x H x W, or H x W), a PIL image of any mode (grayscale, RGBA,
    16-bit) or a path; alpha is composited over white. ``saliency_map``: H x W (resized to the
    image if needed). Colours and clipping as in :func:`colorize`.
    """
    if not (isinstance(alpha, numbers.Real) and 0 <= alpha <= 1):
        raise UsageError(f"{arg('alpha')} must be in [0, 1], got {alpha!r}")
    rgb = _rgb_array(image)
    v, signed = _normalize(_map_array(saliency_map, rgb.shape[:2]), clip, signed)
    heat = colormaps.apply(v, _cmap(cmap, signed)) / 255.0
    a = np.minimum(1.0, 2 * alpha * np.abs(2 * v - 1))[..., None] if signed else alpha
    out = (1 - a) * rgb + a * heat
    return Image.fromarray(np.round(out * 255).astype(np.uint8), "RGB")


def predict(model, image) -> tuple[str, float, int]:
    """The top-1 class of one image: (name, softmax probability, index)."""
    model = as_vision_model(model)
    x = as_batch(image, model)[:1]
    with model_guard(model), torch.no_grad():
        logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise UsageError(f"{model.name} does not return N x classes logits; cannot predict")
    probs = logits.float().softmax(1)[0]
    p, i = probs.max(0)
    name = model.classes[int(i)] if model.classes else f"class {int(i)}"
    return name, float(p), int(i)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def panel(
    image,
    saliency_map,
    *,
    model=None,
    caption: str | Sequence[str] | None = None,
    cmap: str | None = None,
    alpha: float = SALIENCY["alpha"],
    clip: float = SALIENCY["clip"],
    signed: bool | None = None,
) -> Image.Image:
    """Side by side: the photo, the map, the overlay; below, the caption lines and, with
    ``model``, the predicted class and its probability."""
    rgb = _rgb_array(image)
    h, w = rgb.shape[:2]
    m = _map_array(saliency_map, (h, w))
    photo = Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")
    heat = Image.fromarray(colorize(m, cmap, clip, signed), "RGB")
    lines = [caption] if isinstance(caption, str) else caption or []
    if not isinstance(lines, Sequence) or not all(isinstance(line, str) for line in lines):
        raise UsageError(f"{arg('caption')} must be a string or a list of strings")
    lines = list(lines)
    if model is not None:
        name, p, i = predict(model, _chw(rgb))
        lines.append(f"predicted: {name} ({i}), p = {p:.1%}")
    font = _font(max(11, h // 16))
    line_h = int(font.getbbox("Ag")[3] * 1.35) + 2 if lines else 0
    pad = 4
    canvas = Image.new("RGB", (3 * w + 4 * pad, h + 2 * pad + line_h * len(lines)), "white")
    blend = overlay(_chw(rgb), m, cmap=cmap, alpha=alpha, clip=clip, signed=signed)
    for k, tile in enumerate((photo, heat, blend)):
        canvas.paste(tile, (pad + k * (w + pad), pad))
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(lines):
        draw.text((pad, h + 2 * pad + j * line_h), text, fill=(0, 0, 0), font=font)
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


__all__ = ["alpha_map", "colorize", "overlay", "panel", "predict", "with_alpha"]
