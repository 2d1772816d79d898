"""Integrated Gradients' path integral: the fixed quadrature rules and the adaptive rule.

Private to :mod:`dreamviz.attribution` (which re-exports :func:`quadrature` and
:data:`QUADRATURES`). ``run`` is attribution's pass helper: ``run.n`` images, and
``run.gradients``, ``run.scores`` and ``run.passes`` over rows made from (image, sample) indices.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import UsageError, arg, integer, suggest

QUADRATURES = (
    "adaptive",
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "trapezoid",
)
ADAPTIVE_START = 4  # the adaptive rule starts from steps / 4 equal cells
ADAPTIVE_ROUNDS = 10  # and bisects the worst cells in 10 rounds
IG_MEMORY = 2**30  # bytes of stored gradients per group of images (adaptive rule)


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights for integrating over ``steps`` points."""
    if not isinstance(rule, str) or rule not in QUADRATURES:
        shown = repr(rule) if isinstance(rule, str) else type(rule).__name__
        raise UsageError(
            f"unknown quadrature rule {shown}{suggest(str(rule), QUADRATURES)}; give "
            f"{arg('quadrature_rule')} one of " + ", ".join(QUADRATURES)
        )
    if rule == "adaptive":
        raise UsageError(
            "the adaptive rule places its points per image as it integrates; quadrature() "
            "takes a fixed rule: " + ", ".join(QUADRATURES[1:])
        )
    integer("steps", steps, 1)
    k = np.arange(steps, dtype=np.float64)
    if rule == "gausslegendre":
        t, w = np.polynomial.legendre.leggauss(steps)
        return (t + 1) / 2, w / 2
    if rule == "trapezoid":
        if steps < 2:
            raise UsageError(f"the trapezoid rule needs {arg('steps')} >= 2")
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] /= 2
        return k / (steps - 1), w
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (k + offset) / steps, np.full(steps, 1.0 / steps)


def adaptive_ig(run, base, diff, steps: int):
    """Adaptive trapezoid rule for the IG path integral, per image; images go in groups whose
    stored gradients fit in ``IG_MEMORY`` bytes. Returns (sum of weighted gradients, f(b))."""
    per_image = steps * diff[0].numel() * diff.element_size()
    group = max(1, IG_MEMORY // per_image)
    grads, f_b = torch.zeros_like(diff), diff.new_zeros(run.n)
    for start in range(0, run.n, group):
        ids = torch.arange(start, min(start + group, run.n), device=diff.device)
        grads[ids], f_b[ids] = _adaptive_group(run, base, diff, ids, steps)
    return grads, f_b


def _adaptive_group(run, base, diff, ids, steps: int):
    """Points on the path are added where the estimate is worst, and the estimate's error is
    known exactly: each gradient pass also gives f at its point, and between two points the
    integral of the directional derivative is f(right) - f(left). So:

    1. evaluate the gradient and f at ``steps / 4 + 1`` equally spaced points (0 and 1 too);
    2. in rounds (``ADAPTIVE_ROUNDS``), bisect each image's cells whose trapezoid estimate
       misses f(right) - f(left) by the most;
    3. the result is the trapezoid rule on the final, uneven points.

    Needs every point's gradient until the weights are known: ``steps`` gradient images per
    image. No extra forward passes.
    """
    m, start = len(ids), int(ids[0])
    dtype, dev = diff.dtype, diff.device
    grads = diff.new_empty(m, steps, *diff.shape[1:])
    alpha, f, slope = (np.zeros((m, steps)) for _ in range(3))
    used = 0

    def evaluate(points: np.ndarray) -> None:
        nonlocal used
        a = torch.as_tensor(points, dtype=dtype, device=dev)
        k = points.shape[1]

        def make(o, s):
            return base[o] + a[o - start, s].view(-1, 1, 1, 1) * diff[o]

        for local, owner, s, g, v in run.passes(make, k, ids):
            grads[local, used + s] = g
            col = (used + s).cpu().numpy()
            rows = local.cpu().numpy()
            f[rows, col] = v.double().cpu().numpy()
            slope[rows, col] = (g * diff[owner]).flatten(1).sum(1).double().cpu().numpy()
        alpha[:, used : used + k] = points
        used += k

    def cells():
        order = np.argsort(alpha[:, :used], axis=1, kind="stable")
        a, fv, sv = (np.take_along_axis(t[:, :used], order, 1) for t in (alpha, f, slope))
        return order, a, fv, sv

    evaluate(np.tile(np.linspace(0.0, 1.0, max(1, steps // ADAPTIVE_START) + 1), (m, 1)))
    left = steps - used
    per_round = -(-left // ADAPTIVE_ROUNDS) if left > 0 else 0
    while left > 0:
        _, a, fv, sv = cells()
        width = np.diff(a, axis=1)
        miss = np.abs((sv[:, 1:] + sv[:, :-1]) / 2 * width - np.diff(fv, axis=1))
        k = min(per_round, left, width.shape[1])
        worst = np.argsort(-miss, axis=1, kind="stable")[:, :k]
        lo, hi = np.take_along_axis(a, worst, 1), np.take_along_axis(a, worst + 1, 1)
        evaluate((lo + hi) / 2)
        left -= k
    order, a, _, _ = cells()
    w = np.zeros_like(a)
    w[:, 1:] += np.diff(a, axis=1) / 2
    w[:, :-1] += np.diff(a, axis=1) / 2
    weights = np.zeros((m, used))
    np.put_along_axis(weights, order, w, axis=1)
    weights = torch.as_tensor(weights, dtype=dtype, device=dev).view(m, 1, used)
    total = torch.bmm(weights, grads[:, :used].flatten(2)).view(m, *diff.shape[1:])
    return total, torch.as_tensor(f[:, 0], dtype=dtype, device=dev)


def path_integral(run, base: torch.Tensor, diff: torch.Tensor, steps: int, rule: str):
    """``sum_k w_k grad f(base + a_k diff)`` per image by ``rule``, and f(base): the adaptive
    rule for ``steps >= 2 * ADAPTIVE_START`` (Gauss-Legendre below that), else the fixed one."""
    if rule == "adaptive" and steps >= 2 * ADAPTIVE_START:
        return adaptive_ig(run, base, diff, steps)
    rule = "gausslegendre" if rule == "adaptive" else rule
    alphas, weights = (
        torch.as_tensor(np.broadcast_to(a, (run.n, steps)).copy(), dtype=base.dtype)
        for a in quadrature(rule, steps)
    )
    alphas, weights = alphas.to(base.device), weights.to(base.device)
    grads = run.gradients(
        lambda o, s: base[o] + alphas[o, s].view(-1, 1, 1, 1) * diff[o], steps, weights
    )
    return grads, run.scores(lambda o, s: base[o])[:, 0]
