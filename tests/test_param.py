"""Parameterizations: each one can fit a fixed image (the proof it is right), init, seeds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dreamviz.errors import UsageError
from dreamviz.io import read_image
from dreamviz.param import FourierImage, PixelImage, image_param, image_seeds


@pytest.fixture(scope="module")
def photo(assets_dir):
    return read_image(assets_dir / "chelsea.jpg")


def _target(photo, h, w):
    return F.interpolate(photo[None], size=(h, w), mode="area").clamp(0, 1)


@pytest.mark.parametrize("kind", ["pixel", "fft"])
@pytest.mark.parametrize("decorrelate", [True, False])
@pytest.mark.parametrize("size", [(16, 24), (17, 23)])
def test_fits_a_target_image(photo, kind, decorrelate, size):
    target = _target(photo, *size)
    p = image_param(kind, size, decorrelate=decorrelate, seed=0)
    opt = torch.optim.Adam(p.parameters(), lr=0.05)
    for _ in range(1000):
        opt.zero_grad()
        mae = (p() - target).abs().mean()
        if mae.item() < 0.01:
            break
        mae.backward()
        opt.step()
    assert p().shape == (1, 3, *size)
    assert (p() - target).abs().mean().item() < 0.01, f"MAE still {mae.item():.4f}"


@pytest.mark.parametrize("kind", ["pixel", "fft"])
@pytest.mark.parametrize("decorrelate", [True, False])
@pytest.mark.parametrize("valid", ["sigmoid", "clamp"])
def test_init_from_an_image_reproduces_it(photo, kind, decorrelate, valid):
    target = _target(photo, 21, 30).clamp(0.02, 0.98)
    p = image_param(kind, decorrelate=decorrelate, valid=valid, init=target[0], batch=2)
    out = p()
    assert out.shape == (2, 3, 21, 30)
    assert (out - target).abs().max().item() < 1e-3


@pytest.mark.parametrize("kind", ["pixel", "fft"])
@pytest.mark.parametrize("decorrelate", [True, False])
@pytest.mark.parametrize("valid", ["sigmoid", "clamp"])
def test_start_is_near_grey_in_range_and_seeded_per_image(kind, decorrelate, valid):
    make = dict(decorrelate=decorrelate, valid=valid)
    a = image_param(kind, (32, 48), batch=3, seed=5, **make)()
    assert a.shape == (3, 3, 32, 48)
    assert a.min() >= 0 and a.max() <= 1
    # a faint start, not saturated noise: the optimizer, not the init, makes the picture
    assert (a - 0.5).abs().max() < 0.1
    b = image_param(kind, (32, 48), batch=1, seed=[6], **make)()
    torch.testing.assert_close(a[1:2], b, rtol=0, atol=0)  # image i uses seed + i
    assert not torch.equal(a[0], a[1])


def test_fourier_scale_favours_low_frequencies():
    p = FourierImage((32, 32), decorrelate=False, valid="clamp")
    scale = p.scale.flatten()
    assert scale.max() == scale[0] == 32  # DC: 1 / (1 / max(h, w))
    assert scale.min() < 2


def test_clamp_mode_stays_in_range_after_steps():
    p = PixelImage((8, 8), decorrelate=True, valid="clamp")
    opt = torch.optim.SGD(p.parameters(), lr=10.0)
    for _ in range(3):
        opt.zero_grad()
        (-p().sum()).backward()
        opt.step()
        p.post_step()
    out = p()
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    assert out.max() > 0.99  # it went up to the bound


def test_unknown_kind_is_a_usage_error():
    with pytest.raises(UsageError, match="pixel"):
        image_param("wavelet", 16)


def _usage_error(make, pattern):
    """``make()`` raises a one-line UsageError whose message matches ``pattern``."""
    with pytest.raises(UsageError, match=pattern) as info:
        make()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["pixel", "fft"])
def test_seeds_that_do_not_fit_the_batch_are_usage_errors(kind):
    _usage_error(lambda: image_param(kind, 8, batch=3, seed=[1, 2]), r"2 seeds .* batch of 3")
    _usage_error(lambda: image_param(kind, 8, batch=1, seed="7"), "an int or a list of ints")
    _usage_error(lambda: image_param(kind, 8, batch=2, seed=[1, 2.5]), "an int or a list")
    _usage_error(
        lambda: image_param(kind, 8, batch=0), r"batch must be an integer >= 1 \(images to make\)"
    )
    assert image_seeds(4, 3) == [4, 5, 6] and image_seeds([9, 2], 2) == [9, 2]


@pytest.mark.parametrize("cls", [PixelImage, FourierImage])
def test_unknown_valid_and_bad_sizes_are_usage_errors(cls):
    _usage_error(lambda: cls(8, valid="tanh"), r"valid='tanh'; use valid='sigmoid'")
    for size in [0, -4, (8, 8, 3), (8, 0), "224", (8.5, 8)]:
        _usage_error(lambda size=size: cls(size), r"size must be N or \(H, W\)")


@pytest.mark.parametrize("kind", ["pixel", "fft"])
def test_wrong_shaped_init_images_are_usage_errors(kind):
    bad = [
        (torch.rand(8, 8), r"init has shape \(8, 8\); give an RGB image"),
        (torch.rand(4, 8, 8), r"shape \(4, 8, 8\)"),  # RGBA
        (torch.rand(2, 1, 8, 8), r"shape \(2, 1, 8, 8\)"),  # grey
        (torch.rand(1, 1, 3, 8, 8), "shape"),
        (torch.rand(0, 3, 8, 8), "shape"),
        ("chelsea.jpg", "init must be an image tensor.*read_image"),
    ]
    for init, pattern in bad:
        _usage_error(lambda init=init: image_param(kind, init=init), pattern)
    two = torch.rand(2, 3, 8, 8)
    _usage_error(lambda: image_param(kind, init=two, batch=3), "2 images but the batch is 3")
    # what fits: one image for any batch, N images for batch N (or the default batch)
    assert image_param(kind, init=two[0], batch=3)().shape == (3, 3, 8, 8)
    assert image_param(kind, init=two)().shape == image_param(kind, init=two, batch=2)().shape
