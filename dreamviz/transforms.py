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

from . import defaults as D

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


class Crops(Transform):
    """K random crops of each image, resized to the model's input: one batched resampling.

    MACO's robustness (Fel et al. 2023): each step shows the network ``views`` crops per
    image, each a square box whose side is a uniform draw from ``scale`` (as a fraction of the
    image's shorter side), centred at ``0.5 + N(0, spread)`` of each side (clamped so the box
    stays inside), plus Gaussian and uniform noise of amplitude ``noise``. The image can be
    larger than the model's input: a 512 px image is seen through 224 px crops. With
    ``scale_end`` the range moves linearly from ``scale`` at ``progress`` 0 (the first step) to
    ``scale_end`` at ``progress`` 1 (the last step); the engine sets ``progress``.

    The output has ``N * views`` rows, **view-major** (row ``k * N + i`` is view k of image i),
    so the engine can evaluate per-image objectives on each group of N rows. Draws come from
    each image's own generator, so the result is deterministic under the seed and does not
    depend on the batch.
    """

    def __init__(
        self,
        views: int = 4,
        scale: tuple[float, float] = (0.25, 0.5),
        spread: float = 0.15,
        noise: float = 0.05,
        size: tuple[int, int] | None = None,
        scale_end: tuple[float, float] | None = None,
    ):
        self.views, self.scale, self.spread, self.noise = int(views), tuple(scale), spread, noise
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.scale_end = None if scale_end is None else tuple(scale_end)
        self.progress = 0.0

    def current_scale(self) -> tuple[float, float]:
        """The crop-side range at the current ``progress``."""
        if self.scale_end is None:
            return self.scale
        t = min(max(float(self.progress), 0.0), 1.0)
        return tuple(a + (b - a) * t for a, b in zip(self.scale, self.scale_end))

    def boxes(self, gens: Generators) -> torch.Tensor:
        """(N, views, 3): centre y, centre x (fractions of the side) and side (fraction)."""
        lo, hi = self.current_scale()
        out = []
        for g in gens:
            side = lo + (hi - lo) * torch.rand(self.views, generator=g)
            centre = 0.5 + self.spread * torch.randn(self.views, 2, generator=g)
            half = side.unsqueeze(1) / 2
            centre = torch.minimum(torch.maximum(centre, half), 1 - half)
            out.append(torch.cat([centre, side.unsqueeze(1)], 1))
        return torch.stack(out)

    def __call__(self, images, gens):
        n, c, h, w = images.shape
        out_h, out_w = self.size or (h, w)
        boxes = self.boxes(gens).transpose(0, 1).reshape(-1, 3)  # view-major rows
        side = boxes[:, 2] * min(h, w)  # px
        theta = torch.zeros(boxes.shape[0], 2, 3)
        theta[:, 0, 0] = side / w
        theta[:, 1, 1] = side / h
        theta[:, 0, 2] = boxes[:, 1] * 2 - 1
        theta[:, 1, 2] = boxes[:, 0] * 2 - 1
        # sample at twice the output size and average 2x2 when a box is larger than the
        # output: a cheap antialias for large boxes of big images
        k = 2 if float(side.max()) > 1.5 * max(out_h, out_w) else 1
        grid = F.affine_grid(
            theta.to(images.device, images.dtype),
            [boxes.shape[0], c, out_h * k, out_w * k],
            align_corners=False,
        )
        src = images.repeat(self.views, 1, 1, 1)
        x = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if k > 1:
            x = F.avg_pool2d(x, k)
        if self.noise:
            x = x + self.noise * _view_noise(gens, (self.views, c, out_h, out_w), x)
        return x


def _view_noise(gens: Generators, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Gaussian plus uniform noise for each image's views, view-major like the crops. Drawn on
    ``like``'s device by a generator seeded from each image's own generator: on a GPU the
    millions of draws a step needs never pass through the CPU (drawing them there and copying
    them over made a batch-16 step 40x a bare pass), and each image's noise still depends only
    on its own seed."""
    out = []
    for g in gens:
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        dg = torch.Generator(device=like.device).manual_seed(seed)
        n = torch.randn(shape, generator=dg, device=like.device, dtype=like.dtype)
        out.append(n + torch.rand(shape, generator=dg, device=like.device, dtype=like.dtype) - 0.5)
    return torch.stack(out, 1).reshape(-1, *shape[1:])


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


def crops(size: tuple[int, int] | None = None, **options) -> Crops:
    """MACO-style multi-crop views, resized to ``size``; the settings are ``defaults.CROPS``
    updated by ``options`` (``views``, ``scale``, ``spread``, ``noise``)."""
    return Crops(size=size, **{**D.CROPS, **options})


PRESETS = {"standard": standard, "none": none, "crops": crops}


def get(spec, size: tuple[int, int] | None = None) -> Callable:
    """``"standard"``, ``"none"``, ``"crops"`` (views resized to ``size``, the model's input
    size), a list of transforms, or any callable ``(images, gens)``."""
    from .errors import UsageError

    if spec is None:
        return none()
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise UsageError(f"unknown transforms {spec!r}; use one of {', '.join(PRESETS)}")
        return crops(size) if spec == "crops" else PRESETS[spec]()
    if isinstance(spec, (list, tuple)):
        return Compose(spec)
    if callable(spec):
        return spec
    raise UsageError(f"transforms must be a preset name, a list or a callable, not {spec!r}")
