"""Robustness transforms: shapes, determinism, gradients, identity, per-image independence."""

from __future__ import annotations

import pytest
import torch

from dreamviz import transforms as T
from dreamviz.errors import UsageError


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _images(n=3, h=40, w=56, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("h, w", [(40, 56), (33, 33), (31, 45)])
def test_standard_shape(h, w):
    x = _images(3, h, w)
    out = T.standard()(x, _gens(0, 1, 2))
    # pad 12 on every side, then 12 px cropped by the jitters
    assert out.shape == (3, 3, h + 12, w + 12)
    assert out.min() >= 0 and out.max() <= 1


def test_piece_shapes():
    x = _images(2, 20, 30)
    g = _gens(0, 1)
    assert T.Pad(5)(x, g).shape == (2, 3, 30, 40)
    assert T.Jitter(4)(x, g).shape == (2, 3, 16, 26)
    assert T.Roll(3)(x, g).shape == x.shape
    assert T.RandomAffine([0.9, 1.1], [-5, 5], jitter=4, crop=6)(x, g).shape == (2, 3, 14, 24)


def test_deterministic_under_the_seed():
    x = _images()
    a = T.standard()(x, _gens(7, 8, 9))
    b = T.standard()(x, _gens(7, 8, 9))
    c = T.standard()(x, _gens(1, 2, 3))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_each_image_depends_only_on_its_own_generator():
    x = _images()
    y = x.clone()
    y[1:] = _images(2, seed=5)  # other images change, image 0 does not
    a = T.standard()(x, _gens(7, 8, 9))
    b = T.standard()(y, _gens(7, 1, 2))
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-6)
    alone = T.standard()(x[:1], _gens(7))  # and the same image alone
    torch.testing.assert_close(a[:1], alone, rtol=0, atol=1e-6)


def test_gradients_flow_to_every_pixel_region():
    x = _images(2).requires_grad_(True)
    T.standard()(x, _gens(0, 1)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad.abs().flatten(1).sum(1) > 0).all()


def test_none_is_identity():
    x = _images()
    assert torch.equal(T.none()(x, _gens(0, 1, 2)), x)
    assert torch.equal(T.get(None)(x, _gens(0, 1, 2)), x)


def test_affine_geometry():
    x = _images(1, 24, 36)
    same = T.affine(x, [1.0], [0.0], [(0.0, 0.0)], (24, 36))
    torch.testing.assert_close(same, x, rtol=0, atol=1e-5)
    half_turn = T.affine(x, [1.0], [180.0], [(0.0, 0.0)], (24, 36))
    torch.testing.assert_close(half_turn, x.flip(-1, -2), rtol=0, atol=1e-4)
    shifted = T.affine(x, [1.0], [0.0], [(2.0, 3.0)], (20, 30))  # window moved down 2, right 3
    torch.testing.assert_close(shifted[..., 1:-1, 1:-1], x[..., 5:23, 7:35], rtol=0, atol=1e-5)


def test_roll_and_jitter_move_pixels_not_values():
    x = _images(2, 10, 12)
    rolled = T.Roll(4)(x, _gens(0, 1))
    shifts = []
    for i in range(2):  # each image is its own image circularly shifted by at most 4 px
        found = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if torch.equal(rolled[i], torch.roll(x[i], (dy, dx), (-2, -1)))
        ]
        assert found, f"image {i} is not a circular shift of itself by up to 4 px"
        shifts.append(found[0])
    assert shifts != [(0, 0), (0, 0)]  # something moved
    again = T.Roll(4)(x, _gens(0, 7))  # each image's shift comes from its own generator
    assert torch.equal(again[0], rolled[0])
    crop = T.Jitter(2)(x, _gens(3, 4))
    for i in range(2):  # each crop is a window of its own image
        hits = [
            torch.equal(crop[i], x[i, :, dy : dy + 8, dx : dx + 10])
            for dy in range(3)
            for dx in range(3)
        ]
        assert any(hits)


def test_get_presets_and_errors():
    assert isinstance(T.get("standard"), T.Compose)
    assert T.get([T.Pad(2)])(_images(1, 4, 4), _gens(0)).shape == (1, 3, 8, 8)
    with pytest.raises(UsageError, match="standard"):
        T.get("fancy")


@pytest.mark.parametrize("h, w", [(40, 56), (31, 45)])
def test_fused_pad_equals_pad_then_resample(h, w):
    x = _images(3, h, w)
    kw = dict(scales=[0.9, 1.0, 1.1], angles=[-10, 0, 7], jitter=12, crop=12)
    fused = T.RandomAffine(**kw, pad=12, fill=0.5)(x, _gens(4, 5, 6))
    two = T.Compose([T.Pad(12, 0.5), T.RandomAffine(**kw)])(x, _gens(4, 5, 6))
    torch.testing.assert_close(fused, two, rtol=0, atol=1e-5)
    reflect = T.RandomAffine(**kw, pad=3, fill=None)(x, _gens(4, 5, 6))
    assert reflect.shape == (3, 3, h - 6, w - 6)
