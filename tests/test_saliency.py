"""Saliency: correctness against hand-computed answers, invariances for every method, pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dreamviz import colormaps
from dreamviz.attribution import (
    METHODS,
    QUADRATURES,
    gradcam_layer,
    quadrature,
    reduce,
    saliency,
)
from dreamviz.errors import UsageError
from dreamviz.io import as_batch, read_image
from dreamviz.objectives import channel
from dreamviz.visualize import colorize, overlay, panel, predict

# options that keep every method fast on tiny inputs; steps=16 exercises the adaptive IG rule
FAST = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 16}}


def fast(method: str) -> dict:
    return dict(FAST.get(method, {}))


@pytest.fixture(scope="module")
def photos(assets_dir):
    """chelsea.jpg and coffee.jpg, short side resized to 96, centre 96 x 96: 2 x 3 x 96 x 96."""
    from torchvision.transforms.v2.functional import center_crop, resize

    return torch.stack(
        [
            center_crop(resize(read_image(assets_dir / name), [96]), [96])
            for name in ("chelsea.jpg", "coffee.jpg")
        ]
    )


@pytest.fixture(scope="module")
def photo(photos):
    return photos[:1]


class Boom(nn.Module):
    """Identity that raises on its ``at``-th forward pass with gradients (0 = never): an error
    in the middle of a method, after a first backward pass and with every hook in place."""

    def __init__(self, at: int = 0):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x):
        self.calls += torch.is_grad_enabled()
        if self.at and self.calls == self.at:
            raise RuntimeError("boom")
        return x


def leftover_hooks(net: nn.Module) -> list[str]:
    found = []
    for name, m in net.named_modules():
        for key, value in vars(m).items():
            if "hooks" in key and isinstance(value, dict) and value:
                found.append(f"{name or 'net'}.{key}")
    return found


# --------------------------------------------------------------------------- correctness


def test_gradient_equals_central_differences():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Softplus(),
        nn.Conv2d(4, 4, 3, stride=2),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    ).double()
    x = torch.rand(2, 3, 9, 9, dtype=torch.float64)
    target = [1, 3]
    raw = saliency(net, x, target, "gradient", reduce=None)
    assert raw.dtype == torch.float64 and raw.shape == x.shape
    gen = torch.Generator().manual_seed(1)
    eps = 1e-6
    for _ in range(12):
        i, c, h, w = (int(torch.randint(n, (1,), generator=gen)) for n in x.shape)
        up, down = x.clone(), x.clone()
        up[i, c, h, w] += eps
        down[i, c, h, w] -= eps
        with torch.no_grad():
            numeric = (net(up)[i, target[i]] - net(down)[i, target[i]]) / (2 * eps)
        assert float(raw[i, c, h, w]) == pytest.approx(float(numeric), rel=1e-6, abs=1e-9)
    # the documented reduction: max |g| over colour channels
    maps = saliency(net, x, target, "gradient")
    torch.testing.assert_close(maps, raw.abs().amax(1))


def test_integrated_gradients_completeness_on_lite0(lite0, photos):
    """Black baseline: error < 3% of |f(x) - f(0)| at 64 steps and < 1% at 256 steps."""
    errors = {}
    for steps in (64, 256):
        maps, info = saliency(
            lite0, photos, method="integrated_gradients", steps=steps, return_info=True
        )
        errors[steps] = info.relative_error.tolist()
        with torch.no_grad():  # f(x) - f(0) for each image's top-1 class
            logits = lite0(torch.cat([photos, torch.zeros_like(photos)]))
        top = logits[:2].argmax(1)
        delta = logits[:2].gather(1, top[:, None]) - logits[2:].gather(1, top[:, None])
        torch.testing.assert_close(info.delta, delta[:, 0], rtol=1e-4, atol=1e-4)
        # the map is the signed channel sum, so it sums to f(x) - f(b) up to that error
        gaps = (maps.flatten(1).sum(1) - info.delta).abs()
        torch.testing.assert_close(gaps, info.completeness_error, rtol=1e-3, atol=1e-3)
    assert max(errors[64]) < 0.03, errors
    assert max(errors[256]) < 0.01, errors


def test_adaptive_ig_in_memory_groups_gives_the_same_maps(tiny_net, monkeypatch):
    import dreamviz._quadrature as quad

    net, x = tiny_net(), torch.rand(3, 3, 10, 10)
    whole = saliency(net, x, 1, "integrated_gradients", steps=16, reduce=None)
    monkeypatch.setattr(quad, "IG_MEMORY", 1)  # one image per group
    grouped = saliency(net, x, 1, "integrated_gradients", steps=16, reduce=None)
    torch.testing.assert_close(grouped, whole)


def test_integrated_gradients_exact_on_a_linear_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).double()
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    base = torch.full_like(x, 0.5)
    w = net[1].weight.view(3, 3, 4, 4)
    for rule in QUADRATURES:
        raw, info = saliency(
            net, x, 2, "integrated_gradients", reduce=None, return_info=True,
            steps=16, baseline=base, quadrature_rule=rule,
        )  # fmt: skip
        torch.testing.assert_close(raw, (x - base) * w[2])
        assert float(info.completeness_error.max()) < 1e-10


def test_baselines(tiny_net):
    from dreamviz.attribution import make_baseline

    x = torch.rand(2, 3, 5, 7)
    assert make_baseline(x, "black").eq(0).all() and make_baseline(x, "white").eq(1).all()
    assert make_baseline(x, 0.5).eq(0.5).all()
    blurred = make_baseline(x, "blurred")  # kernel 31 shrinks to fit a 5 x 7 image
    assert blurred.shape == x.shape and blurred.std() < x.std()
    per_image = torch.rand(3, 5, 7)
    assert torch.equal(make_baseline(x, per_image)[1], per_image)
    with pytest.raises(UsageError, match="does not fit"):
        make_baseline(x, torch.rand(3, 4, 4))
    flat = torch.full((1, 3, 5, 7), 0.3)  # blurring changes nothing: no path, no attribution
    maps, info = saliency(tiny_net(), flat, 0, "ig", steps=8, baseline="blurred", return_info=True)
    assert maps.abs().max() < 1e-6 and info.delta.abs().max() < 1e-5


def test_quadrature_rules_integrate_what_they_should():
    for rule in QUADRATURES[1:]:
        a, w = quadrature(rule, 8)
        assert a.shape == w.shape == (8,) and w.sum() == pytest.approx(1.0)
        assert ((0 <= a) & (a <= 1)).all()
    a, w = quadrature("gausslegendre", 4)  # exact up to degree 7
    assert (w * a**7).sum() == pytest.approx(1 / 8, rel=1e-12)
    a, w = quadrature("riemann_left", 4)
    assert (w * a).sum() == pytest.approx(0.375)  # (0 + 1/4 + 1/2 + 3/4) / 4
    with pytest.raises(UsageError, match="unknown quadrature"):
        quadrature("simpson", 8)


def test_smoothgrad_with_zero_noise_equals_gradient(tiny_net):
    net = tiny_net()
    x = torch.rand(3, 3, 12, 12)
    plain = saliency(net, x, 4, "gradient")
    smooth = saliency(net, x, 4, "smoothgrad", samples=5, noise=0.0, internal_batch_size=4)
    torch.testing.assert_close(smooth, plain, rtol=1e-5, atol=1e-7)
    noisy = saliency(net, x, 4, "smoothgrad", samples=5, noise=0.2)
    assert not torch.allclose(noisy, plain, rtol=1e-3)
    again = saliency(net, x, 4, "smoothgrad", samples=5, noise=0.2)
    torch.testing.assert_close(noisy, again)  # seeded: reproducible


def test_gradcam_exact_values():
    """Grad-CAM by hand: conv (2 channels, stride 2) -> ReLU -> mean -> linear."""
    net = nn.Sequential(
        nn.Conv2d(1 * 3, 2, 2, stride=2, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 2, bias=False),
    ).double()
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0] = 1.0  # channel 0: sum of red in each 2x2 block
        net[0].weight[1, 1] = -1.0  # channel 1: minus the sum of green
        net[0].weight[1, 1, 0, 0] = 2.0
        net[4].weight.copy_(torch.tensor([[0.5, -2.0], [1.0, 1.0]]))
    x = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    x[0, 0] = torch.arange(16, dtype=torch.float64).view(4, 4) / 16
    x[0, 1] = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0.5]])
    acts = np.maximum(
        [
            [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]],
            [[2.0, 0.0], [0.0, 2.0 - 0.5]],
        ],
        0,
    )
    acts[0] /= 16
    for cls, w in ((0, [0.5, -2.0]), (1, [1.0, 1.0])):
        alpha = np.array(w) / 4  # d logit / d A_k is w_k / (h * w) everywhere
        cam = np.maximum((alpha[:, None, None] * acts).sum(0), 0)
        up = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])  # bilinear 2 -> 4
        got = saliency(net, x, cls, "gradcam", layer="1", return_info=True)
        np.testing.assert_allclose(got[0][0].numpy(), up @ cam @ up.T, atol=1e-12)
        assert got[1].layer == "1"
    raw = saliency(net, x, 0, "gradcam", layer="1", relu=False, reduce=None)
    assert raw.shape == (1, 1, 4, 4) and float(raw.min()) < 0  # the signed map, without ReLU


def test_guided_backprop_by_hand():
    """Linear -> ReLU -> Linear: guided grad = W1^T [(h > 0) * max(W2^T e_c, 0)]."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.rand(1, 3, 2, 2, dtype=torch.float64)
    w1, b1, w2 = net[1].weight, net[1].bias, net[3].weight
    h = w1 @ x.flatten() + b1
    expected = w1.T @ ((h > 0) * w2[2].clamp_min(0))
    got = saliency(net, x, 2, "guided_backprop", reduce=None)
    torch.testing.assert_close(got.flatten(), expected.detach())
    plain = saliency(net, x, 2, "gradient", reduce=None)
    assert not torch.allclose(got, plain)


class FunctionalNet(nn.Module):
    """The tiny net's convolutions with functional ReLUs (F.relu, x.relu(), torch.relu)."""

    def __init__(self, seq: nn.Sequential):
        super().__init__()
        self.c1, self.bn, self.c2, self.fc = seq[0], seq[1], seq[3], seq[7]

    def forward(self, x):
        x = F.relu(self.bn(self.c1(x)), inplace=True)
        x = self.c2(x).relu()
        return self.fc(torch.relu(x).mean((2, 3)))


def test_guided_backprop_handles_functional_and_inplace_relus(tiny_net):
    seq = tiny_net()
    x = torch.rand(2, 3, 10, 10)
    with_modules = saliency(seq, x, 1, "guided_backprop", return_info=True)
    functional = saliency(FunctionalNet(seq), x, 1, "guided_backprop", return_info=True)
    torch.testing.assert_close(functional[0], with_modules[0])
    assert with_modules[1].guided_relus == 2 and functional[1].guided_relus == 3
    assert not torch.allclose(with_modules[0], saliency(seq, x, 1))


def test_guided_backprop_warns_without_relus():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Tanh(), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 6, 6))
    with pytest.warns(UserWarning, match="no ReLU ran"):
        saliency(net, torch.rand(1, 3, 6, 6), 0, "guided_backprop")


def test_guided_gradcam_is_the_product(tiny_net):
    net = tiny_net()
    x = torch.rand(2, 3, 10, 10)
    guided = saliency(net, x, 3, "guided_backprop", reduce=None)
    cam = saliency(net, x, 3, "gradcam", reduce=None)
    both = saliency(net, x, 3, "guided_gradcam", reduce=None)
    torch.testing.assert_close(both, guided * cam)


# --------------------------------------------------------------------------- every method


@pytest.mark.parametrize("method", list(METHODS))
def test_batch_equals_stacked_singles(method, tiny_net):
    net = tiny_net().train()  # eval mode is used inside, and the flag restored
    x = torch.rand(3, 3, 16, 16)
    target = [None, 2, 7]
    batch = saliency(net, x, target, method, internal_batch_size=2, **fast(method))
    singles = torch.cat(
        [saliency(net, x[i : i + 1], target[i], method, **fast(method)) for i in range(3)]
    )
    assert batch.shape == (3, 16, 16)
    torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("boom", [0, 2], ids=["ok", "induced-error"])
@pytest.mark.parametrize("method", list(METHODS))
def test_model_untouched(method, boom, tiny_net):
    net = nn.Sequential(*tiny_net(), Boom(boom))
    net.train()
    net[1].eval()  # a mix of flags
    net[0].weight.requires_grad_(False)  # and of requires_grad
    flags = [m.training for m in net.modules()]
    grads = [p.requires_grad for p in net.parameters()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    images = torch.rand(2, 3, 12, 12, requires_grad=True)
    before = images.detach().clone()
    images.grad = torch.full_like(images, 7.0)
    if boom:
        with pytest.raises(RuntimeError, match="boom"):
            saliency(net, images, None, method, internal_batch_size=1, **fast(method))
    else:
        saliency(net, images, None, method, internal_batch_size=1, **fast(method))
    assert leftover_hooks(net) == []
    assert [m.training for m in net.modules()] == flags
    assert [p.requires_grad for p in net.parameters()] == grads
    assert all(p.grad is None for p in net.parameters())
    for k, v in net.state_dict().items():  # BN running stats too: eval mode was used
        assert torch.equal(v, state[k]), k
    assert torch._C._len_torch_function_stack() == 0
    assert torch.equal(images.grad, torch.full_like(images, 7.0))
    assert images.requires_grad and torch.equal(images.detach(), before)


@pytest.mark.parametrize("method", list(METHODS))
def test_float64_model_leaves_the_default_dtype_alone(method, tiny_net):
    """A float64 model works on float32 images (they take the model's dtype), and the
    process-wide default dtype stays what it was, as seen from inside the model's forward."""
    net = tiny_net().double()
    seen = []
    net[0].register_forward_hook(lambda *_: seen.append(torch.get_default_dtype()))
    before = torch.get_default_dtype()
    x = torch.rand(2, 3, 12, 12)
    maps = saliency(net, x, None, method, **fast(method))
    assert maps.dtype == torch.float64 and maps.shape == (2, 12, 12)
    assert seen and set(seen) == {before}
    assert torch.get_default_dtype() == before


# --------------------------------------------------------------------------- targets


def test_targets_top1_list_and_info(tiny_net):
    net = tiny_net()
    x = torch.rand(3, 3, 12, 12)
    with torch.no_grad():
        top = net.eval()(x).argmax(1).tolist()
    maps, info = saliency(net, x, return_info=True)
    assert info.classes == top and info.targets == [f"class {c}" for c in top]
    explicit = saliency(net, x, top)
    torch.testing.assert_close(maps, explicit)
    other = saliency(net, x, [(c + 1) % 10 for c in top])
    assert not torch.allclose(maps, other)
    with pytest.raises(UsageError, match="3 images"):
        saliency(net, x, [1, 2])
    with pytest.raises(UsageError, match="out of range"):
        saliency(net, x, 10)
    with pytest.raises(UsageError, match="not a class index"):
        saliency(net, x, 1.5)


def test_unit_target_is_the_channel_mean_gradient(tiny_net):
    net = tiny_net()
    x = torch.rand(2, 3, 12, 12)
    raw, info = saliency(net, x, "1:3", "gradient", reduce=None, return_info=True)
    assert info.targets == ["channel(1:3)"] * 2 and info.classes == [None, None]
    xr = x.clone().requires_grad_()
    net.eval()
    act = net[1](net[0](xr))[:, 3].mean((1, 2)).sum()
    torch.testing.assert_close(raw, torch.autograd.grad(act, xr)[0])
    obj = saliency(net, x, channel("1", 3), "gradient", reduce=None)
    torch.testing.assert_close(obj, raw)
    mixed = saliency(net, x, ["1:3", 4], "gradient", reduce=None)  # a unit, then a class
    torch.testing.assert_close(mixed[0], raw[0])
    torch.testing.assert_close(mixed[1], saliency(net, x[1:], 4, "gradient", reduce=None)[0])
    with pytest.raises(UsageError, match="channel 99 is out of range"):
        saliency(net, x, "1:99")
    with pytest.raises(UsageError, match="unknown layer"):
        saliency(net, x, "nope:1")


def test_class_names_units_and_gradcam_layer_on_lite0(lite0, photo):
    x = F.interpolate(photo, size=64, mode="bilinear", antialias=True)
    by_name, info = saliency(lite0, x, "tabby", return_info=True)
    assert info.classes == [281] and info.targets == ["tabby (281)"]
    torch.testing.assert_close(by_name, saliency(lite0, x, 281))
    cam, info = saliency(lite0, x, "blocks.10:5", "gradcam", layer="blocks.6", return_info=True)
    assert cam.shape == (1, 64, 64) and float(cam.max()) > 0
    assert gradcam_layer(lite0) == "head"
    with pytest.raises(UsageError, match="does not run before"):
        saliency(lite0, x, "blocks.3:1", "gradcam", layer="blocks.10")
    with pytest.raises(UsageError, match="has no spatial map"):
        saliency(lite0, x, None, "gradcam", layer="fc")


def test_info_names_the_method_not_the_layer(tiny_net):
    """Grad-CAM's layer goes to info.layer; info.method stays the method's name."""
    net, x = tiny_net(), torch.rand(1, 3, 12, 12)
    for method in ("gradcam", "guided_gradcam"):
        _, info = saliency(net, x, 0, method, return_info=True)
        assert info.method == method and info.layer == gradcam_layer(net, (12, 12))
        _, info = saliency(net, x, 0, method, layer="1", return_info=True)
        assert info.method == method and info.layer == "1"
    _, info = saliency(net, x, 0, "ig", steps=4, return_info=True)
    assert info.method == "integrated_gradients" and info.layer is None


def test_gradcam_default_layer():
    from dreamviz.models import load_model

    assert gradcam_layer(load_model("resnet18", weights="random", device="cpu")) == "layer4"
    # adaptive pooling (VGG's 7 x 7 avgpool) resamples; it is never the default
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten())
    assert gradcam_layer(nn.Sequential(net, nn.Linear(36, 2))) == "0.1"


# --------------------------------------------------------------------------- inputs and options


def test_inputs_paths_pil_uint8_and_bad_ranges(lite0, assets_dir, tmp_path):
    path = tmp_path / "small.png"
    Image.open(assets_dir / "coffee.jpg").resize((48, 32)).convert("LA").save(path)
    from_path = as_batch(str(path), lite0)
    assert from_path.shape == (1, 3, 32, 48)
    from_pil = as_batch([Image.open(path), Image.open(path)], lite0)
    assert from_pil.shape == (2, 3, 32, 48)
    u8 = (torch.rand(1, 3, 8, 8) * 255).to(torch.uint8)
    torch.testing.assert_close(as_batch(u8, lite0), u8.float() / 255)
    with pytest.raises(UsageError, match=r"pixels in \[0, 1\]"):
        saliency(lite0, torch.rand(1, 3, 8, 8) * 255)
    with pytest.raises(UsageError, match="different sizes"):
        as_batch([torch.rand(3, 8, 8), torch.rand(3, 9, 8)], lite0)
    with pytest.raises(UsageError, match="N x 3 x H x W"):
        as_batch(torch.rand(1, 1, 8, 8), lite0)


def test_bad_methods_options_and_reductions(tiny_net):
    net, x = tiny_net(), torch.rand(1, 3, 8, 8)
    with pytest.raises(UsageError, match="did you mean: gradcam"):
        saliency(net, x, method="gradcm")
    with pytest.raises(UsageError, match="no option 'sample'.*samples"):
        saliency(net, x, method="smoothgrad", sample=3)
    with pytest.raises(UsageError, match="steps must be an integer >= 1"):
        saliency(net, x, method="ig", steps=0)
    with pytest.raises(UsageError, match="unknown baseline"):
        saliency(net, x, method="ig", steps=4, baseline="grey")
    with pytest.raises(UsageError, match="unknown reduction"):
        saliency(net, x, reduce="mean")
    l2 = saliency(net, x, 0, reduce="l2")
    raw = saliency(net, x, 0, reduce=None)
    torch.testing.assert_close(l2, raw.norm(dim=1))


def test_messages_name_arguments_not_flags(tiny_net):
    """Library errors name the API argument; the CLI shows the same message with its flag."""
    import re
    from pathlib import Path

    import dreamviz.attribution as attribution
    import dreamviz.visualize as visualize

    for module in (attribution, visualize):
        source = Path(module.__file__).read_text()
        assert not re.findall(r"--[a-z]|`dreamviz \w", source), module.__name__
    net, x = tiny_net(), torch.rand(1, 3, 8, 8)
    cases = [
        (lambda: saliency(net, x, internal_batch_size=0), "internal_batch_size", "--batch-size"),
        (lambda: saliency(net, x, method="ig", baseline="grey"), "give baseline", "--baseline"),
        (lambda: saliency(net, x, "1:2", "gradcam", layer="4"), "layer='4'", "--layer 4"),
        (lambda: overlay(torch.rand(3, 8, 8), torch.rand(8, 8), alpha=2), "alpha", "--alpha"),
        (lambda: colorize(torch.rand(8, 8), clip=0), "clip must", "--clip must"),
    ]
    for call, python, cli in cases:
        with pytest.raises(UsageError) as e:
            call()
        text = e.value.for_cli({"internal_batch_size": "--batch-size"})
        assert python in str(e.value) and "--" not in str(e.value), str(e.value)
        assert cli in text, text


BAD_INPUTS = {  # call(net, x) -> what the one-line UsageError must say
    "seed": (lambda n, x: saliency(n, x, 0, "smoothgrad", seed=-1), "seed must be an integer"),
    "array baseline": (
        lambda n, x: saliency(n, x, 0, "ig", baseline=np.zeros((3, 8, 8))),
        "unknown baseline ndarray of shape (3, 8, 8); give baseline black",
    ),
    "rule": (lambda n, x: saliency(n, x, 0, "ig", quadrature_rule=["a"]), "unknown quadrature"),
    "steps": (lambda n, x: quadrature("gausslegendre", 0), "steps must be an integer >= 1"),
    "adaptive": (lambda n, x: quadrature("adaptive", 8), "quadrature() takes a fixed rule"),
    "layer": (lambda n, x: saliency(n, x, 0, "gradcam", layer=4), "layer must be a layer name"),
    "method": (lambda n, x: saliency(n, x, 0, None), "unknown method None; give method"),
    "reduce": (lambda n, x: saliency(n, x, 0, reduce=["sum"]), "unknown reduction"),
    "target": (lambda n, x: saliency(n, x, torch.ones(2, 1).long()), "Tensor of shape (2, 1)"),
    "raw": (lambda n, x: reduce(torch.rand(5), "sum"), "N x C x H x W attributions"),
    "clip": (lambda n, x: colorize(torch.rand(4, 4), clip="99"), "clip must be a percentile"),
    "cmap": (lambda n, x: colorize(torch.rand(4, 4), cmap=5), "cmap must be a colour map name"),
    "empty map": (lambda n, x: colorize(torch.rand(0, 3)), "map of shape (0, 3) is empty"),
    "no map": (lambda n, x: overlay(x[0], None), "map must be an H x W tensor or array"),
    "ragged": (lambda n, x: overlay(x[0], [[1, 2], [3]]), "map must be an H x W tensor or array"),
    "array image": (lambda n, x: overlay(np.zeros((1, 4, 4, 3)), np.ones((4, 4))), "H x W x (1"),
    "caption": (lambda n, x: panel(x[0], torch.rand(8, 8), caption=5), "caption must be a string"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_are_one_line_usage_errors(case, tiny_net):
    """Inputs that used to reach a bare ValueError/TypeError/IndexError deep inside."""
    call, message = BAD_INPUTS[case]
    with pytest.raises(UsageError) as e:
        call(tiny_net(), torch.rand(1, 3, 8, 8))
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


# --------------------------------------------------------------------------- pictures


def test_colormaps_are_monotone_in_lightness():
    for name in ("viridis", "inferno", "gray"):
        lut = colormaps.table(name).astype(float)
        luma = lut @ [0.2126, 0.7152, 0.0722]
        assert lut.shape == (256, 3) and (np.diff(luma) > -0.5).all(), name
    div = colormaps.table("diverging").astype(int)
    assert div[0, 2] > div[0, 0] and div[-1, 0] > div[-1, 2]  # blue ... red
    assert (div[128] > 230).all()  # white in the middle
    with pytest.raises(UsageError, match="unknown colour map"):
        colormaps.table("jet")


def test_colorize_clips_at_the_percentile_and_picks_diverging_for_signed():
    m = torch.linspace(0, 1, 100).repeat(100, 1)
    m[0, 0] = 1000.0  # one outlier
    clipped = colorize(m, clip=99.0)
    unclipped = colorize(m, clip=100.0)
    lut = colormaps.table("inferno")
    assert (clipped[50, 99] == lut[-1]).all()  # the top 1% saturates ...
    assert clipped[50, 50].sum() > unclipped[50, 50].sum() + 100  # ... the rest keeps contrast
    signed = torch.cat([-torch.ones(4, 4), torch.ones(4, 4)], 1)
    rgb = colorize(signed)
    assert rgb[0, 0, 2] > rgb[0, 0, 0] and rgb[0, -1, 0] > rgb[0, -1, 2]


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "RGB"])
def test_overlay_handles_image_modes(mode):
    img = Image.new("RGB", (20, 10), (200, 100, 50)).convert(mode)
    m = torch.zeros(10, 20)
    m[:, 10:] = 1.0
    out = overlay(img, m, alpha=0.5)
    assert out.size == (20, 10) and out.mode == "RGB"
    arr = np.asarray(out).astype(int)
    assert arr[5, 15].sum() > arr[5, 5].sum()  # the salient half is brighter (inferno)
    small = overlay(img, m[::2, ::2])  # a map at lower resolution is resized
    assert small.size == (20, 10)


def test_overlay_tensor_inputs_and_bad_maps():
    m = torch.rand(6, 6)
    for image in (torch.rand(3, 6, 6), torch.rand(1, 6, 6), torch.rand(4, 6, 6), torch.rand(6, 6)):
        assert overlay(image, m).size == (6, 6)
    image = torch.rand(3, 6, 6)
    zero = np.asarray(overlay(image, m, alpha=0.0)).astype(int)
    full = np.asarray(overlay(image, m, alpha=1.0))
    hot = m >= m.flatten().quantile(0.99) / 2  # alpha is reached from half the clipped top
    np.testing.assert_array_equal(full[hot], colorize(m)[hot])
    # alpha=0: no heat colour at all (any colour map gives the same picture), and the
    # hottest pixel (weight 1) is the photo's own colour
    assert zero.shape == (6, 6, 3)
    np.testing.assert_array_equal(zero, np.asarray(overlay(image, m, alpha=0.0, cmap="gray")))
    y, x = divmod(int(m.argmax()), 6)
    assert np.abs(zero[y, x] - image[:, y, x].numpy() * 255).max() <= 1
    with pytest.raises(UsageError, match="reduce it over channels"):
        overlay(torch.rand(3, 6, 6), torch.rand(3, 6, 6))


def test_panel_and_predict(lite0, photo):
    name, p, idx = predict(lite0, photo)
    with torch.no_grad():
        probs = lite0(photo).softmax(1)[0]
    assert idx == int(probs.argmax()) and p == pytest.approx(float(probs.max()), rel=1e-5)
    assert name == lite0.classes[idx]
    m = torch.rand(96, 96)
    bare = panel(photo[0], m)
    captioned = panel(photo[0], m, model=lite0, caption="gradient")
    assert bare.width == captioned.width >= 3 * 96 and captioned.height > bare.height
    tile = np.asarray(bare)[4 : 4 + 96, 4 : 4 + 96]  # the photo, untouched
    expected = (photo[0].permute(1, 2, 0) * 255).round().byte().numpy()
    np.testing.assert_array_equal(tile, expected)


def test_gradcam_on_a_unit_target_uses_the_units_layer(lite0):
    """A unit before Grad-CAM's usual layer still gets a Grad-CAM map, taken at the unit's own
    layer (a later layer never sees the unit's gradient)."""
    x = torch.rand(1, 3, 64, 64)
    maps, info = saliency(lite0, x, "blocks.10:5", "gradcam", return_info=True)
    assert info.method == "gradcam" and info.layer == "blocks.10"
    assert maps.shape == (1, 64, 64) and float(maps.std()) > 0
