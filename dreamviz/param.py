"""Image parameterizations: pixel, Fourier, decorrelated colour, or initialized from an image.

A parameterization is an ``nn.Module`` whose parameters the optimizer changes and whose
``forward()`` returns images N x 3 x H x W in [0, 1]:

* ``PixelImage``: one value per pixel and colour;
* ``FourierImage``: an rfft2 spectrum scaled by ``1 / frequency**decay`` (Lucid's fft_image), so
  that plain gradient steps favour low frequencies;
* either one can pass through the ImageNet colour-correlation matrix (``decorrelate=True``);
* ``valid="sigmoid"`` (default) squashes into [0, 1]; ``valid="clamp"`` keeps raw pixel values
  and clamps them after every step (deep dream's classic pixel space).

Random initial values are drawn on the CPU from one generator per image, seeded by that image's
seed, so the same seed gives the same start on any device and in any batch position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Square root of the colour correlation of ImageNet pixels (Lucid's constant), columns scaled
# so the largest has unit norm.
_COLOR_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64
)
COLOR_CORRELATION = (_COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()).float()
COLOR_CORRELATION_INV = torch.linalg.inv(COLOR_CORRELATION.double()).float()

_EPS = 1e-4


def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 colour matrix to N x 3 x H x W."""
    return torch.einsum("ij,njhw->nihw", matrix.to(x.device, x.dtype), x)


def _seeds(seed: int | Sequence[int], batch: int) -> list[int]:
    if isinstance(seed, int):
        return [seed + i for i in range(batch)]
    seeds = [int(s) for s in seed]
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}")
    return seeds


def _randn(shape: Sequence[int], seeds: list[int], sd: float) -> torch.Tensor:
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        out.append(torch.randn(*shape, generator=g) * sd)
    return torch.stack(out)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class ImageParam(nn.Module):
    """Base: colour handling and the squash into [0, 1]."""

    def __init__(self, decorrelate: bool, valid: str):
        super().__init__()
        if valid not in ("sigmoid", "clamp"):
            raise ValueError(f"valid must be 'sigmoid' or 'clamp', not {valid!r}")
        self.decorrelate = decorrelate
        self.valid = valid

    def _to_rgb(self, t: torch.Tensor) -> torch.Tensor:
        if self.decorrelate:
            t = _mix(t, COLOR_CORRELATION)
        return torch.sigmoid(t) if self.valid == "sigmoid" else t

    def _from_rgb(self, image: torch.Tensor) -> torch.Tensor:
        t = image.float()
        if self.valid == "sigmoid":
            t = torch.logit(t.clamp(_EPS, 1 - _EPS))
        if self.decorrelate:
            t = _mix(t, COLOR_CORRELATION_INV)
        return t

    @torch.no_grad()
    def _grey_start(self) -> None:
        """In clamp mode the raw values are the image: move the noise start to grey (0.5)."""
        if self.valid == "clamp":
            self.set_image((self.forward() + 0.5).clamp(0, 1))

    def post_step(self) -> None:
        """Called after every optimizer step (clamps in ``valid='clamp'`` mode)."""

    def set_image(self, image: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def batch(self) -> int:
        return self.forward().shape[0]


class PixelImage(ImageParam):
    def __init__(
        self,
        size: int | Sequence[int],
        batch: int = 1,
        decorrelate: bool = True,
        valid: str = "sigmoid",
        init: torch.Tensor | None = None,
        seed: int | Sequence[int] = 0,
        sd: float = 0.01,
    ):
        super().__init__(decorrelate, valid)
        h, w = _size(size) if init is None else init.shape[-2:]
        if init is None:
            self.pixels = nn.Parameter(_randn((3, h, w), _seeds(seed, batch), sd))
            self._grey_start()
        else:
            self.pixels = nn.Parameter(
                torch.empty(init.shape[0] if init.dim() == 4 else 1, 3, h, w)
            )
            self.set_image(init)

    def forward(self) -> torch.Tensor:
        if self.valid == "clamp" and not self.decorrelate:
            return self.pixels
        return self._to_rgb(self.pixels)

    @torch.no_grad()
    def set_image(self, image: torch.Tensor) -> None:
        image = image.unsqueeze(0) if image.dim() == 3 else image
        self.pixels.data = self._from_rgb(image.to(self.pixels.device)).contiguous()

    @torch.no_grad()
    def post_step(self) -> None:
        if self.valid == "clamp":
            if self.decorrelate:
                self.set_image(self.forward().clamp(0, 1))
            else:
                self.pixels.clamp_(0, 1)


def _freqs(h: int, w: int) -> torch.Tensor:
    fy = torch.fft.fftfreq(h).view(-1, 1)
    fx = torch.fft.rfftfreq(w).view(1, -1)
    return torch.sqrt(fx * fx + fy * fy)


class FourierImage(ImageParam):
    """Lucid's fft_image: ``irfft2(spectrum * scale) / 4`` with ``scale = 1 / max(f, 1/max(h, w))
    ** decay``, orthonormal FFT, any H x W (odd widths included).

    Lucid multiplies the scale by sqrt(h*w) but its ``irfft2d`` divides by h*w; Lucent's
    orthonormal ``irfft`` without the factor is the same transform, and so is this one. (With
    both the factor and an orthonormal FFT the start is saturated noise and every step is
    sqrt(h*w) times too large.)"""

    def __init__(
        self,
        size: int | Sequence[int],
        batch: int = 1,
        decorrelate: bool = True,
        valid: str = "sigmoid",
        init: torch.Tensor | None = None,
        seed: int | Sequence[int] = 0,
        sd: float = 0.01,
        decay: float = 1.0,
    ):
        super().__init__(decorrelate, valid)
        h, w = _size(size) if init is None else tuple(init.shape[-2:])
        self.h, self.w = int(h), int(w)
        scale = 1.0 / _freqs(h, w).clamp_min(1.0 / max(h, w)) ** decay
        self.register_buffer("scale", scale.view(1, 1, h, w // 2 + 1, 1))
        if init is None:
            spec = _randn((3, h, w // 2 + 1, 2), _seeds(seed, batch), sd)
            self.spectrum = nn.Parameter(spec)
            self._grey_start()
        else:
            n = init.shape[0] if init.dim() == 4 else 1
            self.spectrum = nn.Parameter(torch.empty(n, 3, h, w // 2 + 1, 2))
            self.set_image(init)

    def forward(self) -> torch.Tensor:
        spec = torch.view_as_complex((self.spectrum * self.scale).contiguous())
        t = torch.fft.irfft2(spec, s=(self.h, self.w), norm="ortho") / 4.0
        return self._to_rgb(t)

    @torch.no_grad()
    def set_image(self, image: torch.Tensor) -> None:
        image = image.unsqueeze(0) if image.dim() == 3 else image
        t = self._from_rgb(image.to(self.scale.device)) * 4.0
        spec = torch.view_as_real(torch.fft.rfft2(t, norm="ortho"))
        self.spectrum.data = (spec / self.scale).contiguous()

    @torch.no_grad()
    def post_step(self) -> None:
        if self.valid == "clamp":
            self.set_image(self.forward().clamp(0, 1))


PARAMS = {"pixel": PixelImage, "fft": FourierImage}


def image_param(
    kind: str = "fft",
    size: int | Sequence[int] = 224,
    batch: int = 1,
    decorrelate: bool = True,
    valid: str = "sigmoid",
    init: torch.Tensor | None = None,
    seed: int | Sequence[int] = 0,
    device: torch.device | str | None = None,
    **kwargs,
) -> ImageParam:
    """Build a parameterization by name: ``"fft"`` (default) or ``"pixel"``.

    ``init`` (3 x H x W or N x 3 x H x W in [0, 1]) starts from an image instead of noise; it
    sets the size. ``seed`` is one int (image i gets seed + i) or one seed per image.
    """
    from .errors import UsageError

    if kind not in PARAMS:
        raise UsageError(f"unknown parameterization {kind!r}; use one of {', '.join(PARAMS)}")
    if init is not None:
        init = init.detach().float().cpu()
        if init.dim() == 3:
            init = init.unsqueeze(0)
        if init.shape[0] == 1 and batch > 1:
            init = init.expand(batch, -1, -1, -1)
    p = PARAMS[kind](size, batch, decorrelate, valid, init, seed, **kwargs)
    return p.to(device) if device is not None else p
