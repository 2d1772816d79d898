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

import operator
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .errors import UsageError, arg, integer, is_integer

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


def _check_batch(batch) -> int:
    return integer("batch", batch, 1, what="images to make")


def image_seeds(seed: int | Sequence[int], batch: int) -> list[int]:
    """One seed per image: ``seed + i`` for an int, else the list itself (one per image)."""
    batch = _check_batch(batch)
    if is_integer(seed):
        return [int(seed) + i for i in range(batch)]
    try:
        seeds = [operator.index(s) for s in seed]
    except TypeError:
        raise UsageError(
            f"{arg('seed')} must be an int or a list of ints (one per image), not {seed!r}"
        ) from None
    if len(seeds) != batch:
        raise UsageError(
            f"got {len(seeds)} seeds for a batch of {batch}; give one seed per image, "
            "or one int (image i then uses seed + i)"
        )
    return seeds


def _randn(shape: Sequence[int], seeds: list[int], sd: float) -> torch.Tensor:
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        out.append(torch.randn(*shape, generator=g) * sd)
    return torch.stack(out)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if is_integer(size):
        h = w = int(size)
    else:
        try:
            h, w = (operator.index(s) for s in size)
        except (TypeError, ValueError):
            h = w = 0
    if h < 1 or w < 1:
        raise UsageError(f"image size must be N or (H, W), positive ints, not {size!r}")
    return h, w


def _init_images(init, batch: int) -> torch.Tensor:
    """``init`` as N x 3 x H x W floats on the CPU; one image is repeated ``batch`` times."""
    batch = _check_batch(batch)
    if not isinstance(init, torch.Tensor):
        raise UsageError(
            f"{arg('init')} must be an image tensor 3 x H x W or N x 3 x H x W, not "
            f"{type(init).__name__}; read a file with dreamviz.io.read_image"
        )
    shape = tuple(init.shape)
    init = init.detach().float().cpu()
    if init.dim() == 3:
        init = init.unsqueeze(0)
    if init.dim() != 4 or init.shape[1] != 3 or init.shape[0] < 1 or min(init.shape[-2:]) < 1:
        raise UsageError(
            f"{arg('init')} has shape {shape}; give an RGB image 3 x H x W or N x 3 x H x W"
        )
    n = init.shape[0]
    if n == 1 and batch > 1:
        return init.expand(batch, -1, -1, -1)
    if batch not in (1, n):
        raise UsageError(
            f"{arg('init')} has {n} images but the batch is {batch}; give one image or {batch}"
        )
    return init


class ImageParam(nn.Module):
    """Base: colour handling and the squash into [0, 1]."""

    def __init__(self, decorrelate: bool, valid: str):
        super().__init__()
        if valid not in ("sigmoid", "clamp"):
            raise UsageError(
                f"unknown valid={valid!r}; use valid='sigmoid' (squash into [0, 1]) "
                "or valid='clamp' (clamp after each step)"
            )
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
        if init is None:
            h, w = _size(size)
            self.pixels = nn.Parameter(_randn((3, h, w), image_seeds(seed, batch), sd))
            self._grey_start()
        else:
            init = _init_images(init, batch)
            self.pixels = nn.Parameter(torch.empty(init.shape))
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
        if init is not None:
            init = _init_images(init, batch)
        h, w = _size(size) if init is None else tuple(init.shape[-2:])
        self.h, self.w = int(h), int(w)
        scale = 1.0 / _freqs(h, w).clamp_min(1.0 / max(h, w)) ** decay
        self.register_buffer("scale", scale.view(1, 1, h, w // 2 + 1, 1))
        if init is None:
            spec = _randn((3, h, w // 2 + 1, 2), image_seeds(seed, batch), sd)
            self.spectrum = nn.Parameter(spec)
            self._grey_start()
        else:
            self.spectrum = nn.Parameter(torch.empty(init.shape[0], 3, h, w // 2 + 1, 2))
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


SPECTRUM_FILE = Path(__file__).resolve().parent / "data" / "spectrum.npy"
SPECTRUM_SIZE = 224  # the shipped spectrum is (3, 224, 113): rfft2 magnitudes of 224 x 224


def _standardize(t: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit standard deviation per image (over colours and positions)."""
    flat = t.flatten(1)
    mean = flat.mean(1).view(-1, *([1] * (t.dim() - 1)))
    std = flat.std(1).view(-1, *([1] * (t.dim() - 1)))
    return (t - mean) / (std + 1e-4)


def spectrum_law(size: int | Sequence[int], gains, exponents) -> torch.Tensor:
    """The magnitude ``gain_c * f ** -exponent_c`` per colour channel on an rfft2 grid of
    ``size`` (f in cycles per pixel, at least one cycle per image): 3 x H x (W // 2 + 1)."""
    h, w = _size(size)
    f = _freqs(h, w).clamp_min(1.0 / max(h, w))
    g = torch.as_tensor(gains, dtype=torch.float32).view(3, 1, 1)
    a = torch.as_tensor(exponents, dtype=torch.float32).view(3, 1, 1)
    return g * f.unsqueeze(0) ** (-a)


def natural_spectrum(images: Sequence[torch.Tensor], size: int = SPECTRUM_SIZE) -> torch.Tensor:
    """The mean rfft2 magnitude of photos (each 3 x H x W in [0, 1], centre-cropped square and
    resized to ``size``), in decorrelated colour: 3 x size x (size // 2 + 1). This is the
    magnitude MACO keeps fixed (``dreamviz spectrum DIR`` writes it to a .npy file)."""
    import torch.nn.functional as F

    if not images:
        raise UsageError("no photos to compute a spectrum from; give a folder of JPEG/PNG photos")
    total = torch.zeros(3, size, size // 2 + 1)
    for img in images:
        side = min(img.shape[-2:])
        y0, x0 = (img.shape[-2] - side) // 2, (img.shape[-1] - side) // 2
        sq = img[None, :, y0 : y0 + side, x0 : x0 + side].float()
        sq = F.interpolate(sq, size=(size, size), mode="bilinear", antialias=True)
        t = _mix(_standardize(sq), COLOR_CORRELATION_INV)
        total += torch.fft.rfft2(t[0], norm="ortho").abs()
    return total / len(images)


#: The band the law is fitted on, in cycles per pixel: photos lose their high frequencies to
#: depth-of-field blur and JPEG, which steepens the fit (the sample photos give slopes of 1.9
#: to 2.6 over all frequencies, 1.0 to 1.5 below 0.05, as natural images show).
FIT_BAND = (0.0, 0.05)


def fit_spectrum_law(
    magnitude: torch.Tensor, band: tuple[float, float] = FIT_BAND
) -> tuple[list[float], list[float]]:
    """Least-squares fit of ``log m = log gain - exponent * log f`` per colour channel, over
    the frequencies in ``band`` (cycles per pixel; the constant term never): (gains,
    exponents)."""
    h, w2 = magnitude.shape[-2:]
    f = _freqs(h, 2 * (w2 - 1))
    keep = (f > max(band[0], 0.0)) & (f <= band[1])
    x = torch.log(f[keep]).double()
    gains, exps = [], []
    for c in range(3):
        y = torch.log(magnitude[c][keep].clamp_min(1e-8)).double()
        design = torch.stack([torch.ones_like(x), -x], 1)
        sol = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.flatten()
        gains.append(float(torch.exp(sol[0])))
        exps.append(float(sol[1]))
    return gains, exps


def load_spectrum(spectrum=None, size: int | Sequence[int] = SPECTRUM_SIZE) -> torch.Tensor:
    """A magnitude spectrum 3 x H x (W // 2 + 1) for an H x W image: from ``spectrum`` (a
    tensor or array of shape 3 x h x (w // 2 + 1), or a .npy path), else the shipped default;
    resized to the grid like Horama does (bilinear, antialiased)."""
    import numpy as np
    import torch.nn.functional as F

    h, w = _size(size)
    if spectrum is None:
        spectrum = SPECTRUM_FILE
    if isinstance(spectrum, (str, os.PathLike)):
        path = str(spectrum)
        if not os.path.isfile(path):
            what = "is not a regular file" if os.path.exists(path) else "does not exist"
            raise UsageError(
                f"spectrum file {path!r} {what}; make one with "
                "dreamviz.param.natural_spectrum(photos)"
            )
        try:
            spectrum = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read {path!r} as a .npy spectrum ({type(e).__name__})") from e
    mag = torch.as_tensor(np.asarray(spectrum), dtype=torch.float32)
    if mag.dim() != 3 or mag.shape[0] != 3 or mag.shape[1] < 2 or mag.shape[2] < 2:
        raise UsageError(
            f"a spectrum must have shape 3 x H x (W // 2 + 1), got {tuple(mag.shape)}; "
            "make one with dreamviz.param.natural_spectrum(photos)"
        )
    if not bool(torch.isfinite(mag).all()) or bool((mag < 0).any()):
        raise UsageError("a spectrum must hold finite magnitudes >= 0")
    if tuple(mag.shape[-2:]) != (h, w // 2 + 1):
        mag = F.interpolate(mag[None], size=(h, w // 2 + 1), mode="bilinear", antialias=True)[0]
    return mag


class MacoImage(ImageParam):
    """MACO (Fel et al., NeurIPS 2023): only the **phase** of the image's Fourier spectrum is
    optimized; its magnitude stays that of natural images (:func:`load_spectrum`).

    ``forward``: standardize the phase, ``irfft2(magnitude * exp(i * phase))``, standardize
    the image, recorrelate colours, sigmoid. Any size and batch; no ``init`` (a fixed magnitude
    cannot represent a given photo: start from one with the ``fft`` or ``pixel`` kinds).
    """

    def __init__(
        self,
        size: int | Sequence[int],
        batch: int = 1,
        decorrelate: bool = True,
        valid: str = "sigmoid",
        init: torch.Tensor | None = None,
        seed: int | Sequence[int] = 0,
        sd: float = 1.0,
        spectrum=None,
    ):
        super().__init__(decorrelate, valid)
        if init is not None:
            raise UsageError(
                "the maco parameterization keeps a natural magnitude, so it cannot start from "
                f"a photo; use {arg('param_kind', repr('fft'))} or 'pixel' with an init image"
            )
        if valid != "sigmoid":
            raise UsageError("the maco parameterization squashes with a sigmoid only")
        h, w = _size(size)
        self.h, self.w = h, w
        self.register_buffer("magnitude", load_spectrum(spectrum, (h, w)))
        self.phase = nn.Parameter(_randn((3, h, w // 2 + 1), image_seeds(seed, batch), sd))

    def forward(self) -> torch.Tensor:
        spec = torch.polar(self.magnitude.expand_as(self.phase), _standardize(self.phase))
        t = _standardize(torch.fft.irfft2(spec, s=(self.h, self.w), norm="ortho"))
        return self._to_rgb(t)

    def set_image(self, image: torch.Tensor) -> None:
        raise UsageError("the maco parameterization cannot be set to an image; use fft or pixel")


PARAMS = {"pixel": PixelImage, "fft": FourierImage, "maco": MacoImage}


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
    """Build a parameterization by name: ``"fft"`` (default), ``"pixel"`` or ``"maco"``.

    ``init`` (3 x H x W or N x 3 x H x W in [0, 1]) starts from an image instead of noise; it
    sets the size. ``seed`` is one int (image i gets seed + i) or one seed per image.
    """
    if kind not in PARAMS:
        raise UsageError(f"unknown parameterization {kind!r}; use one of {', '.join(PARAMS)}")
    p = PARAMS[kind](size, batch, decorrelate, valid, init, seed, **kwargs)
    return p.to(device) if device is not None else p
