"""Regularizers: L1, L2, total variation, blur. Each is weighted; any callable works too.

A regularizer maps images N x 3 x H x W in [0, 1] to a penalty per image, shape ``(N,)``
(or one scalar for the whole batch). The render loop subtracts ``weight * penalty`` from the
objective. A plain callable ``image -> scalar`` is used with weight 1.

:class:`Blur` with ``every=k`` is not a penalty: every k steps it blurs the image itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .display import gaussian_blur


class Regularizer:
    name = "regularizer"

    def __init__(self, weight: float = 1.0):
        self.weight = float(weight)

    def penalty(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.weight * self.penalty(images)

    def __repr__(self) -> str:
        return f"{self.name}({self.weight:g})"


class L1(Regularizer):
    """Mean absolute distance from ``constant`` (grey by default)."""

    name = "l1"

    def __init__(self, weight: float = 1.0, constant: float = 0.5):
        super().__init__(weight)
        self.constant = constant

    def penalty(self, images):
        return (images - self.constant).abs().flatten(1).mean(1)


class L2(Regularizer):
    """Mean squared distance from ``constant``."""

    name = "l2"

    def __init__(self, weight: float = 1.0, constant: float = 0.5):
        super().__init__(weight)
        self.constant = constant

    def penalty(self, images):
        return (images - self.constant).pow(2).flatten(1).mean(1)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, per image."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    return dx + dy


class TV(Regularizer):
    name = "tv"

    def penalty(self, images):
        return total_variation(images)


def blur(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """The Gaussian blur of the ``blur`` regularizer (:func:`dreamviz.display.gaussian_blur`,
    at least 3 taps)."""
    return gaussian_blur(images, sigma, max(3, 2 * round(3 * sigma) + 1))


class Blur(Regularizer):
    """As a penalty: mean squared difference between the image and its Gaussian blur.
    With ``every=k``: blur the image itself every k steps (applied by the render loop)."""

    name = "blur"

    def __init__(self, weight: float = 1.0, sigma: float = 0.5, every: int | None = None):
        super().__init__(weight)
        self.sigma, self.every = sigma, every

    def penalty(self, images):
        if self.every:
            return images.new_zeros(images.shape[0])
        return (images - blur(images, self.sigma)).pow(2).flatten(1).mean(1)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """The every-k-steps operation: a blend towards the blurred image by ``weight``."""
        w = min(max(self.weight, 0.0), 1.0)
        return (1 - w) * images + w * blur(images, self.sigma)


def total_penalty(
    regularizers: list[Callable], images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of all penalties: (per image (N,), extra scalar for batch-level callables)."""
    per_image = images.new_zeros(images.shape[0])
    scalar = images.new_zeros(())
    for reg in regularizers:
        value = reg(images)
        value = torch.as_tensor(value, device=images.device, dtype=images.dtype)
        if value.dim() == 1 and value.shape[0] == images.shape[0]:
            per_image = per_image + value
        else:
            scalar = scalar + value.sum()
    return per_image, scalar


__all__ = ["L1", "L2", "TV", "Blur", "Regularizer", "blur", "total_penalty", "total_variation"]
