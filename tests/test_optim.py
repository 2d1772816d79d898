"""Optimizers: every registry entry, a torch.optim class and a factory raise a real objective;
each name builds its optimizer and is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dreamviz import optim
from dreamviz.engine import render
from dreamviz.errors import UsageError
from dreamviz.objectives import channel
from dreamviz.optim import OPTIMIZERS, grad_normalizer, make_optimizer, normalize_grads

ROOT = Path(__file__).resolve().parent.parent

# (optimizer, lr): plain SGD steps are proportional to the gradient, which is small for a
# Fourier image; momentum and the adaptive optimizers use the usual rates
CASES = [
    ("sgd", 20.0),
    ("momentum", 2.0),
    ("rmsprop", 0.01),
    ("adam", 0.05),
    ("adamw", 0.05),
    ("nadam", 0.05),
    (torch.optim.Adamax, 0.05),
    (lambda params, lr: torch.optim.RAdam(params, lr=lr), 0.05),
]


def test_every_registry_name_is_tested_and_documented():
    # a new registry entry must be raced against a real objective below, and listed where
    # users read the names: the README's --optimizer list and this module's docstring
    assert {o for o, _ in CASES if isinstance(o, str)} == set(OPTIMIZERS)
    listed = re.search(r"`--optimizer\s+([a-z|]+)`", (ROOT / "README.md").read_text())
    assert listed, "the README lists the optimizer names as `--optimizer a|b|c`"
    assert listed.group(1).split("|") == list(OPTIMIZERS)
    for name in OPTIMIZERS:
        assert f"``{name}``" in optim.__doc__, name


@pytest.mark.parametrize(
    "name, cls, settings",
    [
        ("sgd", torch.optim.SGD, {"momentum": 0, "weight_decay": 0}),
        ("momentum", torch.optim.SGD, {"momentum": 0.9, "nesterov": False, "dampening": 0}),
        ("rmsprop", torch.optim.RMSprop, {"momentum": 0, "weight_decay": 0}),
        ("adam", torch.optim.Adam, {"weight_decay": 0}),
        ("adamw", torch.optim.AdamW, {"weight_decay": 0.01}),
        ("nadam", torch.optim.NAdam, {"weight_decay": 0}),
    ],
)
def test_each_name_builds_its_optimizer_with_the_given_lr(name, cls, settings):
    x = [torch.zeros(2, requires_grad=True)]
    for spelled in (name, name.upper()):  # names are case-insensitive
        opt = make_optimizer(spelled, x, 0.37)
        assert type(opt) is cls
        group = opt.param_groups[0]
        assert group["lr"] == 0.37 and group["params"] == x
        assert {k: group[k] for k in settings} == settings


@pytest.mark.parametrize("optimizer, lr", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_each_optimizer_raises_a_real_objective(lite0, optimizer, lr):
    obj = channel("blocks.3", 7)
    r = render(lite0, obj, size=48, steps=12, optimizer=optimizer, lr=lr, transforms="none", seed=1)
    start, end = r.history[0].item(), r.history[-1].item()
    assert end > start + 3.0, f"{optimizer}: {start:.3f} -> {end:.3f}"


def test_momentum_is_the_heavy_ball():
    # v <- beta*v - lr*g ; x <- x + v   on f(x) = x^2 / 2 (gradient x), maximizing -f
    x = torch.tensor([1.0], requires_grad=True)
    opt = make_optimizer("momentum", [x], 0.1)
    ref_x, v = 1.0, 0.0
    for _ in range(5):
        opt.zero_grad()
        (x.pow(2) / 2).sum().backward()
        opt.step()
        v = 0.9 * v - 0.1 * ref_x
        ref_x = ref_x + v
        assert x.item() == pytest.approx(ref_x, rel=1e-6)


def test_grad_norms_are_per_image():
    g = torch.randn(3, 3, 5, 5) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1)
    p = torch.zeros_like(g, requires_grad=True)
    for name, reduce in [
        ("l2", lambda t: t.flatten(1).norm(dim=1)),
        ("mean_abs", lambda t: t.flatten(1).abs().mean(1)),
        ("max", lambda t: t.flatten(1).abs().amax(1)),
    ]:
        p.grad = g.clone()
        normalize_grads([p], grad_normalizer(name))
        torch.testing.assert_close(reduce(p.grad), torch.ones(3))
        torch.testing.assert_close(
            p.grad / p.grad.flatten(1).norm(dim=1).view(3, 1, 1, 1),
            g / g.flatten(1).norm(dim=1).view(3, 1, 1, 1),
        )
    assert grad_normalizer(None) is None


def test_bad_optimizers_are_usage_errors():
    x = [torch.zeros(1, requires_grad=True)]
    with pytest.raises(UsageError, match="adam"):
        make_optimizer("lbfgs2", x, 0.1)
    with pytest.raises(UsageError, match="class or a factory"):
        make_optimizer(torch.optim.SGD(x, lr=0.1), x, 0.1)
    with pytest.raises(UsageError, match="not an Optimizer"):
        make_optimizer(lambda params, lr: None, x, 0.1)
    with pytest.raises(UsageError, match="grad_norm"):
        grad_normalizer("l3")
