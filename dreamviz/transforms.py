"""Robustness transforms: pad, jitter, random scale, random rotate, roll.

Functional core, thin classes. Every transform is a differentiable, batched tensor function on
the image's device. Random choices come from one ``torch.Generator`` per image (on the CPU, so
the same seed gives the same draws on any device and in any batch position); a transform is
called as ``t(images, generators)``.

Jitter, scale and rotate are fused into one affine resampling (:class:`RandomAffine`): one
``grid_sample`` per step instead of three.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Generators = Sequence[torch.Generator]


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def _choice(g: torch.Generator, values: Sequence[float]) -> float:
    return float(values[int(torch.randint(len(values), (1,), generator=g))])


# ---------------------------------------------------------------- functional


def pad(images: torch.Tensor, width: int, value: float | None = 0.5) -> torch.Tensor:
    """Pad every side by ``width``: with a constant, or by reflection when ``value`` is None."""
    if width <= 0:
        return images
    if value is None:
        return F.pad(images, [width] * 4, mode="reflect")
    return F.pad(images, [width] * 4, mode="constant", value=value)


def crop(images: torch.Tensor, offsets: Sequence[tuple[int, int]], h: int, w: int) -> torch.Tensor:
    """Crop an h x w window per image at (dy, dx) offsets."""
    if len({tuple(o) for o in offsets}) == 1:
        dy, dx = offsets[0]
        return images[:, :, dy : dy + h, dx : dx + w]
    return torch.stack([im[:, dy : dy + h, dx : dx + w] for im, (dy, dx) in zip(images, offsets)])


def roll(images: torch.Tensor, shifts: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Circularly shift each image by (dy, dx)."""
    if len({tuple(s) for s in shifts}) == 1:
        return torch.roll(images, shifts=tuple(shifts[0]), dims=(2, 3))
    return torch.stack(
        [torch.roll(im, shifts=tuple(s), dims=(1, 2)) for im, s in zip(images, shifts)]
    )


def affine(
    images: torch.Tensor,
    scales: Sequence[float],
    angles: Sequence[float],
    shifts: Sequence[tuple[float, float]],
    out_size: tuple[int, int],
    padding_mode: str = "border",
) -> torch.Tensor:
    """One bilinear resampling per image: scale about the centre, rotate by ``angles`` degrees,
    and move the output window by ``shifts`` (dy, dx) pixels; output ``out_size`` (h, w).

    All geometry is in pixel units, so non-square images rotate without shearing.
    """
    n, _, hi, wi = images.shape
    ho, wo = out_size
    dev = images.device
    s = torch.tensor(scales, dtype=torch.float32)
    a = torch.tensor(angles, dtype=torch.float32) * (math.pi / 180.0)
    sh = torch.tensor(shifts, dtype=torch.float32).view(n, 2)
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    # output normalized coords -> output pixels (centred) -> input pixels -> input normalized
    # x_in_px = cos*x_out_px - sin*y_out_px + dx ;  x_norm = x_px * 2 / size
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * wo / wi
    theta[:, 0, 1] = -sin * ho / wi
    theta[:, 0, 2] = sh[:, 1] * 2.0 / wi
    theta[:, 1, 0] = sin * wo / hi
    theta[:, 1, 1] = cos * ho / hi
    theta[:, 1, 2] = sh[:, 0] * 2.0 / hi
    grid = F.affine_grid(theta.to(dev, images.dtype), [n, 3, ho, wo], align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False
    )


# ---------------------------------------------------------------- classes


class Transform:
    def __call__(self, images: torch.Tensor, gens: Generators) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Pad(Transform):
    def __init__(self, width: int, value: float | None = 0.5):
        self.width, self.value = width, value

    def __call__(self, images, gens):
        return pad(images, self.width, self.value)


class Jitter(Transform):
    """Random crop that removes ``d`` pixels from the height and the width (Lucid's jitter)."""

    def __init__(self, d: int):
        self.d = d

    def __call__(self, images, gens):
        if self.d <= 0:
            return images
        h, w = images.shape[-2] - self.d, images.shape[-1] - self.d
        offsets = [(_randint(g, 0, self.d), _randint(g, 0, self.d)) for g in gens]
        return crop(images, offsets, h, w)


class Roll(Transform):
    """Random circular shift of up to ``max_shift`` pixels (deep dream's jitter)."""

    def __init__(self, max_shift: int):
        self.max_shift = max_shift

    def __call__(self, images, gens):
        m = self.max_shift
        shifts = [(_randint(g, -m, m), _randint(g, -m, m)) for g in gens]
        return roll(images, shifts)


class RandomAffine(Transform):
    """Fused jitter + random scale + random rotate in one resampling.

    Each image draws a scale from ``scales``, an angle (degrees) from ``angles`` and a shift of
    up to ``jitter`` pixels; the output is ``crop`` pixels smaller in each dimension.

    ``pad`` first pads every side by that many pixels of the constant ``fill`` (by reflection
    if ``fill`` is None). A constant pad is fused into the resampling too: it samples
    ``images - fill`` with zeros outside and adds ``fill`` back, which equals padding with
    ``fill`` and sampling with border padding, without building the padded copy.
    """

    def __init__(
        self,
        scales: Sequence[float] = (1.0,),
        angles: Sequence[float] = (0.0,),
        jitter: int = 0,
        crop: int = 0,
        pad: int = 0,
        fill: float | None = 0.5,
    ):
        self.scales, self.angles = list(scales), list(angles)
        self.jitter, self.crop = jitter, crop
        self.pad, self.fill = pad, fill

    def __call__(self, images, gens):
        h, w = images.shape[-2:]
        j = self.jitter
        scales = [_choice(g, self.scales) for g in gens]
        angles = [_choice(g, self.angles) for g in gens]
        shifts = [(_randint(g, -j, j) / 2.0, _randint(g, -j, j) / 2.0) for g in gens]
        out = (h + 2 * self.pad - self.crop, w + 2 * self.pad - self.crop)
        if self.pad > 0 and self.fill is not None:
            moved = affine(images - self.fill, scales, angles, shifts, out, padding_mode="zeros")
            return moved + self.fill
        return affine(pad(images, self.pad, self.fill), scales, angles, shifts, out)


class Compose(Transform):
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, images, gens):
        for t in self.transforms:
            images = t(images, gens)
        return images

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def standard() -> Compose:
    """Lucid's standard set: pad 12 (value 0.5), jitter 8, scale 0.9..1.1 (11 values), rotate
    -10..10 degrees, jitter 4; jitters, scale and rotate fused into one resampling.

    Two jitters of 8 and 4 crop 12 pixels and shift by up to 12 in total, as Lucid's do; the
    pad is fused into the same resampling (see :class:`RandomAffine`)."""
    scales = [1 + (i - 5) / 50 for i in range(11)]
    angles = list(range(-10, 11))
    return Compose([RandomAffine(scales, angles, jitter=12, crop=12, pad=12, fill=0.5)])


def none() -> Compose:
    return Compose([])


PRESETS = {"standard": standard, "none": none}


def get(spec) -> Callable:
    """``"standard"``, ``"none"``, a list of transforms, or any callable ``(images, gens)``."""
    from .errors import UsageError

    if spec is None:
        return none()
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise UsageError(f"unknown transforms {spec!r}; use one of {', '.join(PRESETS)}")
        return PRESETS[spec]()
    if isinstance(spec, (list, tuple)):
        return Compose(spec)
    if callable(spec):
        return spec
    raise UsageError(f"transforms must be a preset name, a list or a callable, not {spec!r}")
