"""Optimizer registry and gradient normalization.

Names: ``sgd``, ``momentum`` (heavy ball, v <- beta*v - lr*g; x <- x + v, with beta 0.9),
``rmsprop``, ``adam``, ``adamw``, ``nadam`` (MACO's). Instead of a name, any
``torch.optim.Optimizer`` subclass or any factory ``f(params, lr) -> optimizer`` may be passed.

Learning-rate schedules (``lr_schedule=``): ``"constant"``, or ``"cosine"``: a linear warm-up
then a cosine decay (:data:`dreamviz.defaults.LR_SCHEDULE`); :func:`lr_factor` gives the factor
of the base rate at each step, :func:`set_lr` applies it.

Gradient normalization (``grad_norm=``) rescales each image's gradient before the step:
``"l2"`` to unit L2 norm, ``"mean_abs"`` to unit mean absolute value (deep dream's rule),
``"max"`` to unit max-abs, or any callable ``grad -> grad``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from .defaults import LR_SCHEDULE
from .errors import UsageError, arg

OPTIMIZERS: dict[str, Callable] = {
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    # torch's SGD momentum b <- beta*b + g; x <- x - lr*b is heavy ball with v = -lr*b
    "momentum": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "rmsprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.01),
    "nadam": lambda params, lr: torch.optim.NAdam(params, lr=lr),  # MACO's optimizer
}


def make_optimizer(spec, params: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    params = list(params)
    if isinstance(spec, str):
        if spec.lower() not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {spec!r}; use one of {', '.join(OPTIMIZERS)}")
        return OPTIMIZERS[spec.lower()](params, lr)
    if isinstance(spec, type) and issubclass(spec, torch.optim.Optimizer):
        return spec(params, lr=lr)
    if isinstance(spec, torch.optim.Optimizer):
        raise UsageError("pass the optimizer class or a factory, not an instance")
    if callable(spec):
        opt = spec(params, lr)
        if not isinstance(opt, torch.optim.Optimizer):
            raise UsageError(f"optimizer factory returned {type(opt).__name__}, not an Optimizer")
        return opt
    raise UsageError(f"optimizer must be a name, an Optimizer class or a factory, not {spec!r}")


SCHEDULES = ("constant", "cosine")


def check_schedule(name: str) -> str:
    if name not in SCHEDULES:
        raise UsageError(
            f"unknown {arg('lr_schedule')} {name!r}; use one of {', '.join(SCHEDULES)}"
        )
    return name


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The factor of the base learning rate at ``step`` (1-based) of ``steps``."""
    if schedule == "constant":
        return 1.0
    warm = max(1, round(LR_SCHEDULE["warmup"] * steps))
    if step <= warm:
        return step / warm
    t = (step - warm) / max(1, steps - warm)
    floor = LR_SCHEDULE["floor"]
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def set_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    """Scale every parameter group's rate to ``factor`` times the rate it was made with."""
    for group in opt.param_groups:
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def _per_image(g: torch.Tensor, reduce) -> torch.Tensor:
    scale = reduce(g.flatten(1)).clamp_min(1e-12)
    return g / scale.view(-1, *([1] * (g.dim() - 1)))


GRAD_NORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "l2": lambda g: _per_image(g, lambda f: f.norm(dim=1)),
    "mean_abs": lambda g: _per_image(g, lambda f: f.abs().mean(dim=1)),
    "max": lambda g: _per_image(g, lambda f: f.abs().amax(dim=1)),
}


def grad_normalizer(spec) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if spec is None or spec is False:
        return None
    if isinstance(spec, str):
        if spec not in GRAD_NORMS:
            raise UsageError(f"unknown grad_norm {spec!r}; use one of {', '.join(GRAD_NORMS)}")
        return GRAD_NORMS[spec]
    if callable(spec):
        return spec
    raise UsageError(f"grad_norm must be a name or a callable, not {spec!r}")


@torch.no_grad()
def normalize_grads(params: Iterable[torch.Tensor], fn) -> None:
    """Apply ``fn`` to each parameter's gradient in place (dim 0 is the image index)."""
    if fn is None:
        return
    for p in params:
        if p.grad is not None:
            p.grad.copy_(fn(p.grad))
