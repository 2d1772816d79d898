"""The render loop: raises a unit, reproducible, class top-1, model untouched, NaN, Ctrl-C."""

from __future__ import annotations

import pytest
import torch

from dreamviz.engine import render, tile_boxes
from dreamviz.errors import NonFiniteError, UsageError
from dreamviz.hooks import Capture
from dreamviz.models import VisionModel
from dreamviz.objectives import Objective, channel, class_logit
from dreamviz.regularizers import L2, Blur


def _activation(model, images, layer, c):
    with Capture(model, [layer]) as cap, torch.no_grad():
        return cap(images)[layer][:, c].mean((1, 2))


def _hooks(net):
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in net.modules()
    )


def test_render_raises_a_channel(lite0):
    r = render(lite0, channel("blocks.5", 3), size=64, steps=24, seed=0)
    assert r.images.shape == (1, 3, 64, 64)
    assert r.images.min() >= 0 and r.images.max() <= 1
    assert r.history.shape == (24, 1)
    grey = torch.full((1, 3, 64, 64), 0.5)
    before = _activation(lite0, grey, "blocks.5", 3).item()
    after = _activation(lite0, r.images, "blocks.5", 3).item()
    assert after > before + 5, (before, after)
    assert r.history[-1].item() > r.history[0].item() + 5
    assert r.objective == "channel(blocks.5:3)"


def test_same_seed_same_image_bit_for_bit(lite0):
    kw = dict(size=(40, 56), steps=6, batch=2, thresholds=[3])
    obj = channel("blocks.3", 1, image=0) + channel("blocks.3", 2, image=1)
    a = render(lite0, obj, seed=3, **kw)
    b = render(lite0, obj, seed=3, **kw)
    c = render(lite0, obj, seed=4, **kw)
    assert a.images.shape == (2, 3, 40, 56)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)
    assert torch.equal(a.frames[3], b.frames[3]) and not torch.equal(a.frames[3], a.images)
    assert not torch.equal(a.images, c.images)


def test_class_render_reaches_top1(lite0):
    classes = ["goldfish", "tabby"]
    obj = sum(class_logit(name, image=i) for i, name in enumerate(classes))
    r = render(lite0, obj, size=96, steps=64, batch=len(classes), seed=0)
    with torch.no_grad():
        top1 = lite0(r.images).argmax(1).tolist()
    assert top1 == [lite0.class_index(c) for c in classes]


def test_settle_one_is_no_transforms(lite0):
    a = render(lite0, channel("blocks.2", 4), size=40, steps=5, settle=1.0)
    b = render(lite0, channel("blocks.2", 4), size=40, steps=5, settle=0.0, transforms="none")
    assert torch.equal(a.images, b.images)


def test_regularizers_pull_towards_grey(lite0):
    free = render(lite0, channel("blocks.2", 4), size=40, steps=10, transforms="none")
    held = render(
        lite0,
        channel("blocks.2", 4),
        size=40,
        steps=10,
        transforms="none",
        regularizers=[L2(5000.0)],
    )
    assert (held.images - 0.5).abs().mean() < 0.5 * (free.images - 0.5).abs().mean()
    blurred = render(
        lite0,
        channel("blocks.2", 4),
        size=40,
        steps=10,
        transforms="none",
        regularizers=[Blur(1.0, sigma=1.0, every=2)],
    )
    tv = lambda im: (im[..., 1:, :] - im[..., :-1, :]).abs().mean()  # noqa: E731
    assert tv(blurred.images) < tv(free.images)


def test_tiles_cover_the_image_and_tiled_render_runs(lite0):
    boxes = tile_boxes(100, 70, 48)
    covered = torch.zeros(100, 70, dtype=torch.int64)
    for y0, y1, x0, x1 in boxes:
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all() and len(boxes) == 6
    # on a pointwise network with no overlap, each tile's value and gradient are its share
    # of the whole image's: the tiled render is the untiled one, up to rounding
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Tanh(), torch.nn.Conv2d(4, 4, 1))
    model = VisionModel(net, input_size=64, name="pointwise")
    kw = dict(size=(64, 48), steps=6, transforms="none", progress=False)
    whole = render(model, channel("2", 1), **kw)
    tiled = render(model, channel("2", 1), tile=32, tile_overlap=0, **kw)
    torch.testing.assert_close(tiled.history, whole.history, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tiled.images, whole.images, rtol=0, atol=1e-4)
    assert whole.history[-1].item() > whole.history[0].item()  # it did optimize


def test_model_untouched_even_when_the_objective_raises(tiny_net):
    net = tiny_net()
    net.train()
    net[1].eval()  # a mixed state must come back as it was
    frozen = next(net[3].parameters())
    frozen.requires_grad_(False)
    modes = [m.training for m in net.modules()]
    grads = [p.requires_grad for p in net.parameters()]
    r = render(net, channel("3", 2), size=24, steps=3, transforms="none")
    assert r.history.shape == (3, 1)

    def boom(acts):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        render(net, Objective(boom, "boom", ["3"]), size=24, steps=3)
    assert [m.training for m in net.modules()] == modes
    assert [p.requires_grad for p in net.parameters()] == grads
    assert _hooks(net) == 0
    assert all(p.grad is None for p in net.parameters())


def test_lite0_untouched(lite0):
    modes = [m.training for m in lite0.modules()]
    grads = [p.requires_grad for p in lite0.parameters()]
    render(lite0, channel("blocks.1", 0), size=32, steps=2)
    assert [m.training for m in lite0.modules()] == modes
    assert [p.requires_grad for p in lite0.parameters()] == grads
    assert _hooks(lite0) == 0


def test_nan_stops_with_the_last_good_image(lite0):
    calls = {"n": 0}
    inner = channel("blocks.1", 0)

    def fn(acts):
        calls["n"] += 1
        v = inner(acts)
        return v * float("nan") if calls["n"] == 3 else v

    with pytest.raises(NonFiniteError, match="step 3") as info:
        # one view per step, so call 3 is step 3 (crops call the objective once per view)
        render(
            lite0, Objective(fn, "nan at 3", ["blocks.1"]), size=32, steps=6, transforms="standard"
        )
    err = info.value
    assert err.step == 3
    assert err.last_good.shape == (1, 3, 32, 32) and torch.isfinite(err.last_good).all()
    assert _hooks(lite0) == 0


def test_ctrl_c_returns_what_it_has(lite0):
    def stop(step, steps, values):
        if step == 3:
            raise KeyboardInterrupt

    r = render(lite0, channel("blocks.1", 0), size=32, steps=10, callback=stop)
    assert r.interrupted and r.history.shape == (3, 1)
    assert r.images.shape == (1, 3, 32, 32) and torch.isfinite(r.images).all()


def test_callback_sees_every_step(lite0):
    seen = []
    render(
        lite0,
        channel("blocks.1", 0),
        size=32,
        steps=4,
        callback=lambda s, n, v: seen.append((s, n, v.shape)),
    )
    assert seen == [(s, 4, (1,)) for s in range(1, 5)]


def test_bad_arguments(lite0):
    with pytest.raises(UsageError, match="unknown layer"):
        render(lite0, channel("blocks.99", 0), size=32, steps=2)
    with pytest.raises(UsageError, match="settle"):
        render(lite0, channel("blocks.1", 0), size=32, steps=2, settle=2.0)
    with pytest.raises(UsageError, match="steps"):
        render(lite0, channel("blocks.1", 0), size=32, steps=-1)
