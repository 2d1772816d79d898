"""The display of saliency maps: one normalization (sign, smoothing, clipping) for every picture,
overlays that change the photo where the map is high, and raw maps that nothing changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamviz import colormaps
from dreamviz.attribution import METHODS, saliency
from dreamviz.defaults import SALIENCY
from dreamviz.errors import UsageError
from dreamviz.visualize import SIGNS, colorize, display_map, overlay, panel


def bump(h: int, w: int, y: float, x: float, sigma: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))


def photo(h: int = 64, w: int = 64) -> torch.Tensor:
    """A textured, mid-bright photo: every pixel differs from its neighbours."""
    torch.manual_seed(0)
    return 0.35 + 0.3 * torch.rand(3, h, w)


def test_every_method_has_a_display_default():
    assert set(SALIENCY["sign"]) == set(METHODS) == set(SALIENCY["smooth"])
    assert set(SALIENCY["sign"].values()) <= set(SIGNS)
    assert all(0 <= s <= 0.05 for s in SALIENCY["smooth"].values())


@pytest.mark.parametrize("clip", [50.0, 90.0, 99.0, 100.0])
def test_display_clips_at_the_stated_percentile(clip):
    m = torch.arange(1, 10001, dtype=torch.float64).view(100, 100)
    v = display_map(m, clip=clip, smooth=0)
    top = np.percentile(m.numpy(), clip)
    np.testing.assert_allclose(v, np.minimum(m.numpy() / top, 1.0))
    assert (v == 1).mean() == pytest.approx(1 - clip / 100, abs=2e-4)  # the top saturates
    signed = m - 5000.5  # signed maps clip at the percentile of |map|
    s = display_map(signed, sign="signed", clip=clip, smooth=0)
    top = np.percentile(np.abs(signed.numpy()), clip)
    np.testing.assert_allclose(s, np.clip(signed.numpy() / top, -1, 1))


def test_sign_modes():
    m = torch.tensor([[-4.0, -1.0, 0.0, 2.0]])
    kw = dict(clip=100.0, smooth=0)
    np.testing.assert_allclose(display_map(m, sign="abs", **kw), [[1, 0.25, 0, 0.5]])
    np.testing.assert_allclose(display_map(m, sign="positive", **kw), [[0, 0, 0, 1]])
    np.testing.assert_allclose(display_map(m, sign="negative", **kw), [[1, 0.25, 0, 0]])
    np.testing.assert_allclose(display_map(m, sign="signed", **kw), [[-1, -0.25, 0, 0.5]])
    np.testing.assert_allclose(display_map(m, **kw), [[-1, -0.25, 0, 0.5]])  # has < 0: signed
    np.testing.assert_allclose(display_map(m.abs(), **kw), [[1, 0.25, 0, 0.5]])
    # a method's default: gradient x input shows the evidence for the target
    np.testing.assert_allclose(display_map(m, "gradient_x_input", **kw), [[0, 0, 0, 1]])
    assert display_map(torch.zeros(3, 3)).max() == 0  # an empty map stays empty
    with pytest.raises(UsageError, match="unknown sign 'pos' \\(did you mean: positive"):
        display_map(m, sign="pos")
    with pytest.raises(UsageError, match="smooth must be a fraction"):
        display_map(m, smooth=-1)


def test_one_hot_pixel_does_not_hide_a_smooth_bump():
    m = bump(64, 64, 40, 40, 5.0)
    m[10, 10] = 1000.0  # one pixel 1000x the bump
    for method in (None, "gradient", "smoothgrad"):
        v = display_map(m, method)
        assert v[40, 40] > 0.9, method  # the bump is drawn at full strength ...
        assert (v[30:51, 30:51] > 0.5).sum() > 60, method  # ... over its whole width
        assert (v > 0.5).sum() < 250, method  # and the hot pixel stays a small spot
    # what the clip prevents: scaled by the maximum, the bump would vanish
    assert display_map(m, clip=100.0, smooth=0)[40, 40] < 0.002


def test_smoothing_turns_a_pixel_sparse_map_into_a_region():
    """Gradients at 224 px are a scatter of single hot pixels, denser on the object: smoothing
    (display only) shows the dense region as a region, not as specks."""
    gen = torch.Generator().manual_seed(0)
    h = w = 224
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    disk = (yy - 80) ** 2 + (xx - 130) ** 2 < 40**2
    density = torch.where(disk, 0.08, 0.01)
    m = (torch.rand(h, w, generator=gen) < density) * torch.rand(h, w, generator=gen).pow(-2)
    raw = display_map(m, smooth=0)
    smoothed = display_map(m, "gradient")
    d = disk.numpy()
    assert (raw[d] > 0.25).mean() < 0.15  # unsmoothed: most of the object looks empty
    assert (smoothed[d] > 0.25).mean() > 0.6  # smoothed: the object is lit as a region
    assert (smoothed[~d] > 0.25).mean() < 0.1  # and the sparser rest mostly stays dark


def test_raw_maps_are_never_changed(tiny_net):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16)
    for method in ("gradient", "integrated_gradients"):
        opts = {"steps": 8} if method == "integrated_gradients" else {}
        raw = saliency(tiny_net(), x, 0, method, reduce=None, **opts)
        reduced = raw.sum(1)
        kept = raw.clone(), reduced.clone()
        for sign in SIGNS:
            display_map(reduced[0], method, sign=sign, smooth=0.1)
            colorize(reduced[0], method=method, sign=sign)
            overlay(x[0], reduced[0], method=method, sign=sign, smooth=0.1)
            panel(x[0], reduced[0], method=method, sign=sign)
        torch.testing.assert_close(raw, kept[0], rtol=0, atol=0)
        torch.testing.assert_close(reduced, kept[1], rtol=0, atol=0)


def _luma(a: np.ndarray) -> np.ndarray:
    return a.astype(float) @ [0.299, 0.587, 0.114]


@pytest.mark.parametrize("method", list(METHODS))
def test_each_overlay_changes_the_photo_where_the_map_is_high(method):
    image = photo()
    m = bump(64, 64, 20, 44, 4.0)  # high near (20, 44), about 0 far from it
    if SALIENCY["sign"][method] == "negative":
        m = -m
    ref = (image.permute(1, 2, 0).numpy() * 255).astype(float)
    out = np.asarray(overlay(image, m, method=method)).astype(float)
    hot = np.abs(out[16:25, 40:49] - ref[16:25, 40:49]).sum(-1).mean()
    assert hot > 120, (method, hot)  # the map's colour, clearly
    cold = out[48:, :16]
    assert _luma(cold).mean() < 0.7 * _luma(ref[48:, :16]).mean()  # the photo, dimmed ...
    assert _luma(cold).std() > 0.25 * _luma(ref[48:, :16]).std()  # ... but still there
    assert _luma(out[20, 44]) > _luma(cold).mean() + 60  # high stands out from low


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients", None])
def test_signed_overlays_show_both_signs(method):
    image = photo()
    m = bump(64, 64, 20, 16, 4.0) - bump(64, 64, 44, 48, 4.0)
    ref = (image.permute(1, 2, 0).numpy() * 255).astype(float)
    out = np.asarray(overlay(image, m, method=method, sign="signed")).astype(float)
    pos, neg, zero = out[20, 16], out[44, 48], out[4:12, 52:60]
    for point, (y, x) in ((pos, (20, 16)), (neg, (44, 48))):
        assert np.abs(point - ref[y, x]).sum() > 120  # both signs change the photo ...
        assert _luma(point) > _luma(zero).mean() + 60  # ... and stand out: nothing vanishes
    assert pos[0] > pos[2] + 30 and neg[2] > neg[0] + 30  # warm positive, cool negative ...
    assert (pos[0] - pos[2]) - (neg[0] - neg[2]) > 100  # ... far apart in hue
    assert _luma(zero).mean() < 0.7 * _luma(ref[4:12, 52:60]).mean()  # zero: dimmed photo


def test_signed_colours_are_dark_at_zero_and_bright_at_both_ends():
    lut = colormaps.table("diverging_dark").astype(float)
    luma = _luma(lut)
    assert (np.diff(luma[128:]) > -0.5).all() and (np.diff(luma[:128]) < 0.5).all()
    assert luma[0] > 200 and luma[-1] > 200 and luma[128] < 30
    assert lut[0, 2] > lut[0, 0] and lut[-1, 0] > lut[-1, 2]  # blue ... yellow


def test_panel_map_and_overlay_use_the_same_display():
    image = photo()
    m = bump(64, 64, 32, 32, 3.0)
    m[5, 5] = 50.0
    for kw in ({"method": "gradient"}, {"sign": "signed", "smooth": 0.05}, {"clip": 90.0}):
        picture = np.asarray(panel(image, m, **kw))
        np.testing.assert_array_equal(picture[4:68, 72:136], colorize(m, **kw))
        np.testing.assert_array_equal(picture[4:68, 140:204], np.asarray(overlay(image, m, **kw)))


def test_alpha_and_dim():
    image = photo()
    m = bump(64, 64, 32, 32, 6.0)
    ref = np.asarray(overlay(image, torch.zeros(64, 64), dim=0.0)).astype(int)
    expected = (image.permute(1, 2, 0).numpy() @ [0.299, 0.587, 0.114]) * 255
    np.testing.assert_allclose(ref[..., 0], expected, atol=1)  # no map, no dim: grey photo
    plain = np.asarray(overlay(image, m, alpha=0.0, dim=0.0)).astype(int)
    assert np.abs(plain[32, 32] - image[:, 32, 32].numpy() * 255).max() <= 1  # high: in colour
    full = np.asarray(overlay(image, m, alpha=1.0)).astype(int)
    np.testing.assert_array_equal(full[32, 32], colorize(m)[32, 32])
    for bad in ({"alpha": 2}, {"dim": -0.1}):
        with pytest.raises(UsageError, match="must be in \\[0, 1\\]"):
            overlay(image, m, **bad)
