"""Receptive fields computed from the network: which input pixels can change a position of a
layer's output.

The field of position (y, x) is the support of the gradient of the sum over channels at
(y, x) with respect to the input: the pixels with a nonzero derivative. Nonlinearities can zero
a path on one input (a ReLU below zero), so the support is the union over a few inputs (two
noise images and a grey one). For a stack of convolutions this is the exact field, clipped to
the image (tests/test_examples.py checks one by hand); for a network that mixes positions
globally (a transformer, a squeeze-and-excitation block) it is the whole image, as it should
be. The fields depend on the position only, not on the image, so they are computed once per
(layer, input size, position), batched, and cached per network; and as the field of a stack
of convolutions is separable (its rows depend on the row only), one row and one column of
positions stand for all, checked on a few (see :func:`receptive_fields`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch

from ..batching import AUTO, Chunker, rows_per_pass
from ..hooks import Capture, as_nchw, check_layer
from ..models import VisionModel, as_vision_model

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
TRIALS = 3  # noise, noise, grey


def _inputs(size: tuple[int, int], dtype, device) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    noise = [torch.rand(1, 3, *size, generator=g) for _ in range(TRIALS - 1)]
    return [x.to(device, dtype) for x in [*noise, torch.full((1, 3, *size), 0.5)]]


def _box(support: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The bounding box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) of an H x W bool mask."""
    rows = support.any(1).nonzero().flatten()
    cols = support.any(0).nonzero().flatten()
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _exact(model, layer, layout, positions, size, cache, batch) -> None:
    """Compute the field of every position in ``positions`` into ``cache``."""
    p = next((t for t in model.net.parameters() if t.is_floating_point()), None)
    dtype = p.dtype if p is not None else torch.float32
    inputs = _inputs(size, dtype, model.device)
    todo = sorted(set(positions) - set(cache))
    if not todo:
        return
    if batch == AUTO:  # rows per forward+backward pass that fit the device
        batch = rows_per_pass(model, size, [layer], rows=len(todo))

    def pass_(r0: int, r1: int) -> None:  # safe to redo: the cache is written at the end
        chunk = todo[r0:r1]
        ys = torch.tensor([y for y, _ in chunk], device=model.device)
        xs = torch.tensor([x for _, x in chunk], device=model.device)
        support = torch.zeros(len(chunk), *size, dtype=torch.bool, device=model.device)
        for base in inputs:
            x = base.expand(len(chunk), -1, -1, -1).clone().requires_grad_(True)
            a = as_nchw(cap(x)[layer], layout)
            picked = a[torch.arange(len(chunk), device=a.device), :, ys, xs]
            (grad,) = torch.autograd.grad(picked.sum(), x)
            support |= (grad != 0).any(1)
        for pos, mask in zip(chunk, support.cpu()):
            cache[pos] = _box(mask) or (0, 0, size[1], size[0])

    with Capture(model, [layer]) as cap:  # a pass out of memory is halved and redone
        for _ in Chunker(batch, model.device).run(len(todo), pass_):
            pass


def receptive_fields(
    model: VisionModel,
    layer: str,
    positions: Iterable[tuple[int, int]],
    size: tuple[int, int],
    batch: int | str = AUTO,
    exact: bool = False,
) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """The field of each ``(y, x)`` position of ``layer``'s output (its NCHW grid; tokens on
    their patch grid) at input ``size`` (H, W), as a box ``(x0, y0, x1, y1)`` in input pixels
    (x1, y1 exclusive). A position whose gradient is zero everywhere gets the whole image.
    ``batch``: positions per forward+backward pass (``"auto"``: what fits the device).

    Unless ``exact``, the boxes are taken as separable, the rows of (y, x) those of (y, x')
    and its columns those of (y', x), as for any stack of convolutions, pools and attention:
    the fields of one row and one column of positions are computed (not one per position),
    and the guess is checked against the exact field of up to four of the positions asked
    for; on any difference every position is computed exactly."""
    model = as_vision_model(model)
    size = (int(size[0]), int(size[1]))
    layout = check_layer(model, layer).layout
    cache = _CACHE.setdefault(model.net, {}).setdefault((layer, size), {})
    wanted = sorted({(int(y), int(x)) for y, x in positions})
    missing = [p for p in wanted if p not in cache]
    if exact or len(missing) <= 8:
        _exact(model, layer, layout, missing, size, cache, batch)
    elif missing:
        y0, x0 = missing[0]
        rows = {y: (y, x0) for y, _ in missing}
        cols = {x: (y0, x) for _, x in missing}
        g = torch.Generator().manual_seed(len(missing))
        checks = [missing[i] for i in torch.randperm(len(missing), generator=g)[:4].tolist()]
        probes = {*rows.values(), *cols.values(), *checks}
        _exact(model, layer, layout, probes, size, cache, batch)

        def guess(y, x):
            c, r = cache[cols[x]], cache[rows[y]]
            return (c[0], r[1], c[2], r[3])

        if all(guess(*p) == cache[p] for p in checks):
            for p in missing:
                cache.setdefault(p, guess(*p))
        else:
            _exact(model, layer, layout, missing, size, cache, batch)
    return {p: cache[p] for p in wanted}


__all__ = ["TRIALS", "receptive_fields"]
