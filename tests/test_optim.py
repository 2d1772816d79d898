"""Optimizers: every registry entry, a torch.optim class and a factory raise a real objective."""

from __future__ import annotations

import pytest
import torch

from dreamviz.engine import render
from dreamviz.errors import UsageError
from dreamviz.objectives import channel
from dreamviz.optim import OPTIMIZERS, grad_normalizer, make_optimizer, normalize_grads

# (optimizer, lr): plain SGD steps are proportional to the gradient, which is small for a
# Fourier image; momentum and the adaptive optimizers use the usual rates
CASES = [
    ("sgd", 20.0),
    ("momentum", 2.0),
    ("rmsprop", 0.01),
    ("adam", 0.05),
    ("adamw", 0.05),
    (torch.optim.Adamax, 0.05),
    (lambda params, lr: torch.optim.NAdam(params, lr=lr), 0.05),
]


def test_registry_names():
    assert set(OPTIMIZERS) == {"sgd", "momentum", "rmsprop", "adam", "adamw"}


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
