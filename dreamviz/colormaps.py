"""Colour maps without matplotlib: 256-entry lookup tables interpolated from anchor colours.

* ``viridis`` and ``inferno`` (perceptually uniform, for magnitudes) use the eleven colours that
  matplotlib's tables take at 0, 0.1, ..., 1;
* ``diverging`` (blue - white - red, for signed maps) uses ColorBrewer's 11-class RdBu, reversed so
  negative is blue; ``gray`` is a plain ramp;
* ``diverging_dark`` (light blue - near black - light yellow) is for signed maps drawn over a
  photo: like ``inferno``, it is dark at 0 and brightest at the largest magnitudes, so strong
  values of either sign stand out where the dimmed photo is dark (dreamviz's own anchors: a
  blue ramp mirrored against a red-orange-yellow one, lightness rising with |value|).

>>> rgb = apply(values, "inferno")   # values in [0, 1], any shape -> shape + (3,) uint8
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError, suggest

ANCHORS = {
    "viridis": "440154 482475 414487 355f8d 2a788e 21918c 22a884 44bf70 7ad151 bddf26 fde725",
    "inferno": "000004 160b39 420a68 6a176e 932667 bc3754 dd513a f37819 fca50a f6d746 fcffa4",
    "diverging": "053061 2166ac 4393c3 92c5de d1e5f0 f7f7f7 fddbc7 f4a582 d6604d b2182b 67001f",
    "diverging_dark": (
        "9fdcff 7fc6f2 4aa3e8 2766c2 18336e 111111 6e1a18 c2331f ec6a2b f9ab4a fdd870"
    ),
    "gray": "000000 ffffff",
}

_TABLES: dict[str, np.ndarray] = {}


def _anchor_rgb(name: str) -> np.ndarray:
    return np.array(
        [[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in ANCHORS[name].split()], np.float64
    )


def table(name: str) -> np.ndarray:
    """The 256 x 3 uint8 lookup table of a colour map, interpolated linearly between anchors."""
    if name not in ANCHORS:
        raise UsageError(
            f"unknown colour map {name!r}{suggest(name, ANCHORS)}; use one of {', '.join(ANCHORS)}"
        )
    if name not in _TABLES:
        anchors = _anchor_rgb(name)
        at = np.linspace(0.0, 1.0, len(anchors))
        x = np.linspace(0.0, 1.0, 256)
        lut = np.stack([np.interp(x, at, anchors[:, c]) for c in range(3)], axis=1)
        _TABLES[name] = np.round(lut).astype(np.uint8)
    return _TABLES[name]


def apply(values, name: str = "inferno") -> np.ndarray:
    """Values in [0, 1] (clipped; NaN counts as 0) -> uint8 RGB of shape ``values.shape + (3,)``."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    idx = np.clip(np.round(v * 255.0), 0, 255).astype(np.intp)
    return table(name)[idx]


__all__ = ["ANCHORS", "apply", "table"]
