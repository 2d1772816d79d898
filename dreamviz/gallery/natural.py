"""How strongly natural photos drive each unit: the denominator of the activation ratio.

A unit's activation ratio is its rendered objective over the largest spatial-mean activation
of its channel on crops of some photos, by default the CC0 samples inside the package
(:func:`dreamviz.io.sample_photos`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from ..errors import DreamvizError, UsageError, arg
from ..hooks import LOGITS, Capture
from ..io import IMAGE_SUFFIXES, read_image, resize, sample_photos
from ..models import VisionModel
from .units import Unit


def photos(natural) -> list[Path]:
    """The photos ``natural`` names: ``"auto"``, the bundled samples; a folder, its photos; a
    file or a list of files; None (or False), none. A folder that does not exist or holds no
    photos is an error, so the activation ratio never disappears silently."""
    if natural is None or natural is False:
        return []
    if isinstance(natural, str) and natural == "auto":
        found = sample_photos()
        if not found:
            raise DreamvizError(
                "dreamviz's sample photos (dreamviz/data/photos) are missing from this "
                f"installation; reinstall dreamviz, or give {arg('natural', 'DIR')} or none"
            )
        return found
    if isinstance(natural, (str, os.PathLike)):
        p = Path(natural)
        if not p.exists():
            raise UsageError(
                f"{arg('natural')} {str(p)!r} does not exist; give a folder of photos, or none"
            )
        if not p.is_dir():
            return [p]
        found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            suffixes = ", ".join(IMAGE_SUFFIXES)
            raise UsageError(
                f"{arg('natural')} {str(p)!r} holds no photos ({suffixes}); add some, or give none"
            )
        return found
    found = [Path(p) for p in natural]
    if not found:
        raise UsageError(f"{arg('natural')} is an empty list; give photos, or none")
    return found


def natural_crops(paths: Sequence[Path], size: Sequence[int]) -> torch.Tensor:
    """Crops of photos at the gallery size: per photo, the centre square whole and a 3x3 grid
    of half-size crops, each resized to ``size`` -> N x 3 x H x W in [0, 1]."""
    h, w = size
    crops = []
    for path in paths:
        img = read_image(path)
        side = min(img.shape[-2:])
        y0, x0 = (img.shape[-2] - side) // 2, (img.shape[-1] - side) // 2
        square = img[:, y0 : y0 + side, x0 : x0 + side]
        pieces = [square]
        half = side // 2
        for i in range(3):
            for j in range(3):
                y, x = i * half // 2, j * half // 2
                pieces.append(square[:, y : y + half, x : x + half])
        crops += [resize(p, (h, w)).clamp(0, 1) for p in pieces]
    return torch.stack(crops) if crops else torch.zeros(0, 3, h, w)


@torch.no_grad()
def natural_maxima(
    model: VisionModel, layers: Sequence[str], size: Sequence[int], paths: Sequence[Path]
) -> dict[str, torch.Tensor]:
    """Per layer, the largest spatial-mean activation of each channel over natural crops (one
    batched forward pass for all layers)."""
    layers = [layer for layer in dict.fromkeys(layers) if layer != LOGITS]
    if not layers or not paths:
        return {}
    x = natural_crops(paths, size).to(model.device)
    with Capture(model, layers) as cap:
        acts = cap(x)
    out = {}
    for layer in layers:
        a = acts[layer].float()
        a = a.flatten(2).mean(2) if a.dim() > 2 else a
        out[layer] = a.amax(0).cpu()
    return out


class Maxima:
    """The natural maxima a build needs, computed once per layer, when a batch first needs it."""

    def __init__(self, model: VisionModel, size: Sequence[int], paths: Sequence[Path]):
        self.model, self.size, self.paths = model, size, list(paths)
        self.layers: dict[str, torch.Tensor] = {}

    def need(self, units: Iterable[Unit]) -> None:
        """Compute, in one pass, the maxima of the layers of ``units`` not computed yet."""
        missing = [u.layer for u in units if u.layer not in self.layers]
        if missing and self.paths:
            self.layers.update(natural_maxima(self.model, missing, self.size, self.paths))

    def of(self, unit: Unit) -> float | None:
        """The natural maximum of a unit's channel (None for classes and without photos)."""
        if unit.is_class or unit.layer not in self.layers:
            return None
        return float(self.layers[unit.layer][unit.index])


__all__ = ["Maxima", "natural_crops", "natural_maxima", "photos"]
