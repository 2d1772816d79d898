"""Every torchvision classifier, transformers included: layers and their layouts, the three
commands on one model per family, a unit's channel on every kind of layer, the neuron grammar,
and one-line errors for what cannot work.

The per-family runs (render, saliency, dream on random weights) are marked ``slow``; the rest
runs on ``meta`` tensors or tiny networks.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

import dreamviz
from dreamviz import objectives
from dreamviz.cli import main
from dreamviz.errors import UsageError
from dreamviz.hooks import Layout, as_nchw, detect_layout, probe
from dreamviz.io import as_image, resize
from dreamviz.models import VisionModel, architecture

ALL_MODELS = sorted(torchvision.models.list_models(module=torchvision.models))


# --------------------------------------------------------------------------- helpers


def random_model(name: str) -> VisionModel:
    """A torchvision model with random weights (seeded) on the CPU."""
    torch.manual_seed(0)
    return dreamviz.load_model(name, weights="random", device="cpu")


def tiny_vit() -> VisionModel:
    """A two-layer ViT at 32 px: 4x4 patches of 8 px plus the class token, 32 features."""
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=10,
    )
    return VisionModel(net, input_size=32, name="tiny_vit")


VIT_LAYER = "encoder.layers.encoder_layer_1"  # N x 17 x 32: cls + 4x4 patch tokens


def blocks_net(size=(24, 40)) -> VisionModel:
    """Four convolutions named blocks.0-3 (8 channels, full resolution), on a non-square input."""
    torch.manual_seed(0)
    blocks = nn.Sequential(*(nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(4)))
    net = nn.Sequential(
        OrderedDict(
            blocks=blocks, pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, 10)
        )
    )
    return VisionModel(net, input_size=size, name="blocks_net")


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def conv_net(**middle) -> nn.Sequential:
    """A convolution (8 channels), the named layers ``middle``, a linear head on 8 features."""
    torch.manual_seed(0)
    layers = OrderedDict(conv=nn.Conv2d(3, 8, 3, padding=1), **middle, fc=nn.Linear(8, 10))
    return nn.Sequential(layers)


def cube_net() -> nn.Sequential:
    """Its layer ``x`` gives N x 8 x 8 x 8 channels-last at 8 px input, which detection (C == H
    == W) reads as NCHW; only a stated layout can say otherwise."""
    return conv_net(x=_Fn(lambda t: t.permute(0, 2, 3, 1)), pool=_Fn(lambda t: t.mean((1, 2))))


def five_dim_net() -> nn.Sequential:
    """Its layer ``split`` gives N x 2 x 4 x H x W: no channel axis dreamviz knows."""
    split = _Fn(lambda t: t.unflatten(1, (2, 4)))
    return conv_net(split=split, pool=_Fn(lambda t: t.flatten(1, 2).mean((2, 3))))


def raw_output(model: VisionModel, layer: str, images: torch.Tensor) -> torch.Tensor:
    """The layer's output as the module returns it, read by a hook of our own (not dreamviz's)."""
    seen = {}
    module = dict(model.net.named_modules())[layer]
    handle = module.register_forward_hook(lambda _m, _i, out: seen.setdefault("out", out))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    return seen["out"].detach()


def per_channel(raw: torch.Tensor, axis: str) -> torch.Tensor:
    """The mean of every feature of a raw output whose feature axis the test names itself."""
    if axis == "nchw":  # N x C x H x W
        return raw.mean((0, 2, 3))
    if axis == "nhwc":  # N x H x W x C
        return raw.mean((0, 1, 2))
    assert axis == "tokens+1"  # N x (1 + L) x D: the patch tokens, not the class token
    return raw[:, 1:].mean((0, 1))


# --------------------------------------------------------------------------- 1. every model

_ROW = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*))?$")
_LAYOUT = re.compile(
    r"^(\d+) ch(?:, (\?|\d+x\d+)(?:( tokens)(?: \+ cls| \+ \d+ extra)?|(, channels-last))?)?$"
)

#: A few layers whose layout is known, as `dreamviz layers` prints it.
KNOWN = {
    "resnet18": {"layer2": "128 ch, 28x28", "fc": "1000 ch"},
    "vit_b_16": {
        "encoder.layers.encoder_layer_5": "768 ch, 14x14 tokens + cls",
        "conv_proj": "768 ch, 14x14",
    },
    "vit_b_32": {"encoder": "768 ch, 7x7 tokens + cls"},
    "vit_h_14": {"encoder.layers.encoder_layer_0": "1280 ch, 37x37 tokens + cls"},
    "swin_t": {"features.3": "192 ch, 28x28, channels-last", "permute": "768 ch, 7x7"},
    "swin_v2_t": {"features.5": "384 ch, 16x16, channels-last"},
    "convnext_tiny": {
        "features.1.0.block.3": "384 ch, 56x56, channels-last",
        "features.1.0.block.6": "96 ch, 56x56",
    },
    "maxvit_t": {
        "blocks.1": "128 ch, 28x28",
        "blocks.1.layers.0.layers.window_attention.partition_op": "",  # 16 windows x 49 x 128
        "blocks.1.layers.0.layers.window_attention.departition_op": "128 ch, 28x28",
    },
    "inception_v3": {"Mixed_6b": "768 ch, 17x17"},
    "efficientnet_v2_s": {"features.4": "128 ch, 24x24"},
}


#: MaxViT's attention internals: windows x window pixels x features, no feature map; the only
#: hookable layers of any torchvision classifier that may have no layout.
WINDOWS = re.compile(r"\.(window|grid)_attention\.")


def _check_layout(name: str, row: str, shape: list[int], text: str) -> None:
    m = _LAYOUT.match(text)
    assert m, f"{name}: no layout for a {len(shape)}-dim output: {row!r}"
    channels, grid, tokens, last = int(m[1]), m[2], m[3], m[4]
    if len(shape) == 1:
        assert (channels, grid) == (shape[0], None), row
    elif len(shape) == 2:
        assert tokens and channels == shape[1], row
    elif last:
        assert channels == shape[2] and grid == f"{shape[0]}x{shape[1]}", row
    else:
        assert channels == shape[0] and grid == f"{shape[1]}x{shape[2]}", row


@pytest.mark.parametrize("name", ALL_MODELS)
def test_layers_of_every_classifier(name, capsys):
    """`dreamviz layers NAME` works offline for every classifier, and every hookable layer
    with a 1- to 3-dim output (per image) but MaxViT's attention windows has a layout that
    agrees with its shape."""
    assert main(["layers", name]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    rows = {}
    for row in out.splitlines():
        m = _ROW.match(row)
        assert m, row
        layer, _type, shape, rest = m[1], m[2], m[3], m[4] or ""
        rows[layer] = rest
        if shape == "-" or rest.startswith("("):
            continue  # not a tensor, not run in eval mode, or called several times
        dims = [int(s) for s in shape.split("x")]
        if len(dims) > 3:
            assert rest == "", f"a {len(dims)}-dim output has no layout: {row!r}"
        elif not (rest == "" and WINDOWS.search(layer)):
            _check_layout(name, row, dims, rest)
    assert rows["logits"] == "1000 ch"
    for layer, text in KNOWN.get(name, {}).items():
        assert rows[layer] == text, (name, layer)


@pytest.mark.parametrize("name", ["regnet_y_400mf", "regnet_y_128gf"])
def test_architecture_on_meta_allocates_nothing(name):
    """RegNet's builders compute their widths with tensors; on ``meta`` that must still work
    (regnet_y_128gf would otherwise take 2.6 GB and half a minute to list its layers)."""
    model = architecture(name, device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert probe(model)["trunk_output.block2"].layout.kind == "nchw"
    assert torch.ones(1).device.type == "cpu"  # the device context did not leak


# --------------------------------------------------------------------------- 2. one per family

#: model -> (a mid layer from `dreamviz layers`, render size, dream octaves)
FAMILIES = {
    "alexnet": ("features.6", 64, 1),  # its last pool has nothing left at 55x68 px
    "vgg11": ("features.11", 64, 2),
    "resnet18": ("layer2", 64, 2),
    "resnext50_32x4d": ("layer2", 64, 2),
    "wide_resnet50_2": ("layer2", 64, 2),
    "densenet121": ("features.denseblock2", 64, 2),
    "googlenet": ("inception4a", 64, 2),
    "inception_v3": ("Mixed_6b", 80, 1),  # at least 75 px: the 2nd octave would be smaller
    "squeezenet1_0": ("features.7", 64, 2),
    "shufflenet_v2_x0_5": ("stage3", 64, 2),
    "mnasnet0_5": ("layers.10", 64, 2),
    "mobilenet_v2": ("features.7", 64, 2),
    "mobilenet_v3_small": ("features.4", 64, 2),
    "efficientnet_b0": ("features.4", 64, 2),
    "efficientnet_v2_s": ("features.4", 64, 2),
    "regnet_y_400mf": ("trunk_output.block2", 64, 2),
    "convnext_tiny": ("features.3.0.block.3", 64, 2),  # a Linear: channels-last
    "vit_b_16": ("encoder.layers.encoder_layer_5", 64, 2),  # tokens + cls
    "swin_t": ("features.3", 64, 2),  # channels-last
    "swin_v2_t": ("features.3", 64, 2),
    "maxvit_t": ("blocks.1", 64, 2),
}
PHOTO_SIZE = (77, 95)  # H, W: odd, not square, and above inception_v3's 75 px


@pytest.fixture(scope="module")
def photo(assets_dir) -> torch.Tensor:
    """The one image every family test uses: a photo at an odd, non-square size."""
    return resize(as_image(assets_dir / "chelsea.jpg"), PHOTO_SIZE)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    """(name, model with random weights on the CPU): one model alive at a time, shared by the
    render, saliency and dream tests of its family."""
    return request.param, random_model(request.param)


@pytest.mark.slow
def test_family_render(family):
    name, model = family
    layer, size, _ = FAMILIES[name]
    result = dreamviz.render(model, f"{layer}:3", size=size, steps=2)
    assert result.images.shape == (1, 3, size, size)
    assert result.history.shape == (2, 1) and torch.isfinite(result.history).all()
    assert result.objective == f"channel({layer}:3)"


@pytest.mark.slow
def test_family_saliency(family, photo):
    """The top class, and the family's unit (ViT's random head is all zeros, so its logits
    have no gradient; a unit's has)."""
    name, model = family
    maps = dreamviz.saliency(model, photo[None], None, "gradient")
    assert maps.shape == (1, *PHOTO_SIZE) and torch.isfinite(maps).all()
    maps = dreamviz.saliency(model, photo[None], f"{FAMILIES[name][0]}:3", "gradient")
    assert maps.shape == (1, *PHOTO_SIZE) and torch.isfinite(maps).all()
    assert maps.abs().sum() > 0
    cam = dreamviz.saliency(model, photo[None], None, "gradcam")  # its default layer
    assert cam.shape == (1, *PHOTO_SIZE) and torch.isfinite(cam).all()


def test_gradcam_on_a_fixed_size_model_finds_its_layer_at_any_photo_size():
    """A fixed-size model resizes every photo to its input size, so its layers have the grid
    of that size: a photo of another shape still has a spatial layer (maxvit_t on a 640x427
    photo said it had none)."""
    model = tiny_vit()
    assert model.fixed_size
    photo = torch.rand(1, 3, 48, 72)
    assert dreamviz.attribution.gradcam_layer(model, (48, 72)) == "encoder"
    cam = dreamviz.saliency(model, photo, 0, "gradcam")
    assert cam.shape == (1, 48, 72) and torch.isfinite(cam).all()


@pytest.mark.slow
def test_family_dream(family, photo):
    name, model = family
    octaves = FAMILIES[name][2]
    result = dreamviz.dream(model, photo, octaves=octaves, steps=1)
    assert result.image.shape == photo.shape
    assert result.octaves == octaves and result.sizes[-1] == PHOTO_SIZE
    assert torch.isfinite(result.image).all()
    assert 0 <= float(result.image.min()) and float(result.image.max()) <= 1


def test_dream_octave_too_small_for_the_whole_network_is_dropped():
    """The dream layer runs at the small octave but the network's last pool does not: render()
    refuses such a size, so the dream must plan one octave fewer (with a warning), not fail."""
    net = conv_net(pool=nn.MaxPool2d(40), flat=nn.Flatten())
    model = VisionModel(net, input_size=64, name="pool40")
    with pytest.warns(UserWarning, match="too small for 2 octaves"):
        result = dreamviz.dream(model, torch.rand(3, 50, 50), "conv", octaves=2, steps=1)
    assert result.octaves == 1 and result.image.shape == (3, 50, 50)


# --------------------------------------------------------------------------- 3. channel c

C, OTHER = 5, 3  # not 0, below the grid sides and the token count: a wrong axis still runs


def _selectivity(model, layer, axis, size, steps):
    """Each feature's mean on the image rendered for channel C minus its mean on the image
    rendered for channel OTHER, from the same start: what is particular to each objective.
    (The plain rise is not enough: rendering any channel of a random network lifts many
    features, and a wrong feature axis still lifts C above the median of the rest.) Read on
    the raw module output, with the feature axis the test names."""
    means = []
    for c in (C, OTHER):
        unit = dreamviz.channel(layer, c)
        image = dreamviz.render(model, unit, size=size, steps=steps, transforms="none").images
        means.append(per_channel(raw_output(model, layer, image), axis))
    return means[0] - means[1]


def _assert_channel_c_rises(diff: torch.Tensor) -> None:
    """Rendering C raises feature C more than the median of the other features, and more than
    any of them; rendering OTHER does the same for feature OTHER."""
    rest = diff[[k for k in range(len(diff)) if k not in (C, OTHER)]]
    assert diff[C] > rest.median(), (float(diff[C]), float(rest.median()))
    assert diff[C] > rest.max(), (float(diff[C]), float(rest.max()))
    assert diff[OTHER] < rest.min(), (float(diff[OTHER]), float(rest.min()))


@pytest.mark.parametrize(
    "name, layer, axis",
    [
        ("resnet18", "layer2", "nchw"),  # 128 x 8x8 at 64 px
        ("swin_t", "features.3", "nhwc"),  # 8x8 x 192
        ("convnext_tiny", "features.1.0.block.3", "nhwc"),  # a Linear in a block: 16x16 x 384
    ],
)
def test_rendering_channel_c_raises_feature_c(name, layer, axis):
    _assert_channel_c_rises(_selectivity(random_model(name), layer, axis, size=64, steps=20))


def test_rendering_channel_c_raises_feature_c_of_tokens():
    """Tiny ViT: 17 tokens of 32 features; channel C is feature C of the patch tokens."""
    _assert_channel_c_rises(_selectivity(tiny_vit(), VIT_LAYER, "tokens+1", size=32, steps=30))


@pytest.mark.slow
def test_rendering_channel_c_raises_feature_c_of_vit_b_16():
    model = random_model("vit_b_16")
    layer = "encoder.layers.encoder_layer_3"
    _assert_channel_c_rises(_selectivity(model, layer, "tokens+1", size=64, steps=10))


# --------------------------------------------------------------------------- 4. layouts

SQUARE = (224, 224)
WIDE = (160, 224)  # H x W


@pytest.mark.parametrize(
    "shape, size, expected",
    [
        ((64, 56, 56), SQUARE, Layout("nchw", 64, (56, 56))),
        ((56, 56, 96), SQUARE, Layout("nhwc", 96, (56, 56))),
        ((14, 14, 14), SQUARE, Layout("nchw", 14, (14, 14))),  # ambiguous: NCHW wins
        ((197, 768), SQUARE, Layout("tokens", 768, (14, 14), 1)),
        ((196, 768), SQUARE, Layout("tokens", 768, (14, 14), 0)),
        ((50, 768), SQUARE, Layout("tokens", 768, (7, 7), 1)),
        ((1000,), SQUARE, Layout("vector", 1000)),
        ((64, 20, 28), WIDE, Layout("nchw", 64, (20, 28))),
        ((20, 28, 96), WIDE, Layout("nhwc", 96, (20, 28))),
        ((141, 32), WIDE, Layout("tokens", 32, (10, 14), 1)),  # cls + 10x14 patches
        ((140, 32), WIDE, Layout("tokens", 32, (10, 14), 0)),
    ],
)
def test_detect_layout(shape, size, expected):
    assert detect_layout(shape, size) == expected


@pytest.mark.parametrize(
    "shape",
    [
        None,
        (),
        (2, 4, 8, 8),
        (16, 49, 128),  # MaxViT's window partition at 224 px: 16 windows of 7x7, 128 features
        (49, 16, 128),  # ... and its grid partition
    ],
)
def test_detect_layout_without_channel_axis(shape):
    assert detect_layout(shape, SQUARE) is None


def test_describe():
    assert Layout("tokens", 768, (14, 14), 1).describe() == "768 ch, 14x14 tokens + cls"
    assert Layout("nhwc", 192, (28, 28)).describe() == "192 ch, 28x28, channels-last"
    assert Layout("nchw", 64, (20, 28)).describe() == "64 ch, 20x28"
    assert Layout("vector", 10).describe() == "10 ch"


def test_as_nchw_puts_the_feature_axis_second():
    t = torch.arange(2 * 17 * 6, dtype=torch.float32).view(2, 17, 6)  # cls + 4x4 tokens
    grid = as_nchw(t, Layout("tokens", 6, (4, 4), 1))
    assert grid.shape == (2, 6, 4, 4)
    assert torch.equal(grid[:, 3, 1, 2], t[:, 1 + 1 * 4 + 2, 3])  # row 1, col 2
    nhwc = torch.randn(2, 5, 7, 3)
    assert torch.equal(as_nchw(nhwc, Layout("nhwc", 3, (5, 7)))[:, 2], nhwc[..., 2])
    assert as_nchw(torch.randn(2, 9), Layout("vector", 9)).shape == (2, 9, 1, 1)


def test_stated_layout_wins_over_detection():
    detected = VisionModel(cube_net(), input_size=8)
    stated = VisionModel(detected.net, input_size=8, layouts={"x": "nhwc"})
    assert probe(detected)["x"].layout == Layout("nchw", 8, (8, 8))
    assert probe(stated)["x"].layout == Layout("nhwc", 8, (8, 8))
    acts = {"x": torch.randn(2, 8, 8, 8)}
    unit = objectives.parse("x:3", stated)
    torch.testing.assert_close(unit(acts), acts["x"][..., 3].mean((1, 2)))
    torch.testing.assert_close(
        objectives.parse("x:3", detected)(acts), acts["x"][:, 3].mean((1, 2))
    )


def test_stated_token_layout_with_a_class_token():
    model = tiny_vit()
    stated = VisionModel(model.net, input_size=32, layouts={VIT_LAYER: "tokens+1"})
    assert probe(stated)[VIT_LAYER].layout == Layout("tokens", 32, (4, 4), 1)
    stated = VisionModel(model.net, input_size=32, layouts={VIT_LAYER: "tokens"})
    assert probe(stated)[VIT_LAYER].layout == Layout("tokens", 32, None, 0)  # 17 is no square


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nhcw", "unknown layout 'nhcw'"),
        ("nhwc+1", "unknown layout 'nhwc\\+1'"),
        ("tokens", "needs a 3-dim output"),
        ("vector", "needs a 2-dim output"),
    ],
)
def test_bad_stated_layout_is_a_usage_error(spec, message):
    model = VisionModel(cube_net(), input_size=8, layouts={"x": spec})
    with pytest.raises(UsageError, match=message):
        objectives.parse("x:0", model)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("tokens+x", "unknown layout 'tokens\\+x'"),
        ("tokens+", "unknown layout 'tokens\\+'"),
        ("tokens+-1", "unknown layout 'tokens\\+-1'"),
        ("tokens+17", "the layer has only 17 tokens"),
        ("tokens+20", "the layer has only 17 tokens"),
    ],
)
def test_bad_class_token_count_is_a_usage_error(spec, message):
    model = VisionModel(tiny_vit().net, input_size=32, layouts={VIT_LAYER: spec})
    with pytest.raises(UsageError, match=message):
        objectives.parse(f"{VIT_LAYER}:0", model)


# --------------------------------------------------------------------------- 5. one-line errors


def _render_fails(capsys, tmp_path, *args) -> str:
    """Run `dreamviz render ... -o FILE`; it must exit 2 with one line on stderr, no
    traceback, and write nothing. Returns that line."""
    out = tmp_path / "out.png"
    rc = main(["render", *args, "--steps", "1", "--size", "32", "--device", "cpu", "-o", str(out)])
    stdout, stderr = capsys.readouterr()
    lines = stderr.splitlines()
    assert rc == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("dreamviz: error: "), stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not out.exists() and list(tmp_path.iterdir()) == []
    return lines[0]


def test_unit_on_maxvit_window_partition(capsys, tmp_path):
    """MaxViT's window partition: N x 16 windows x 49 pixels x 128 features, no feature map."""
    layer = "blocks.1.layers.0.layers.window_attention.partition_op"
    args = ["--model", "maxvit_t", "--weights", "random", "--unit", f"{layer}:0"]
    line = _render_fails(capsys, tmp_path, *args)
    assert f"{layer} has no channel axis (its output is N x 16 x 49 x 128)" in line


def test_unit_on_a_five_dim_output():
    """No torchvision classifier has a hookable output of 4+ dims per image: a tiny net of ours."""
    model = VisionModel(five_dim_net(), input_size=32, name="fived")
    assert probe(model)["split"].layout is None
    with pytest.raises(UsageError, match=r"split has no channel axis \(its output is N x 2 x 4 x"):
        dreamviz.render(model, "split:0", steps=1)
    dreamviz.render(model, "split", steps=1, size=32)  # the whole layer needs no channel axis


@pytest.mark.parametrize(
    "unit, message",
    [
        ("features.3.1:999", "channel 999 is out of range for features.3.1 (192 channels)"),
        ("features.3:0@99,99", "neuron position x=99, y=99 is outside features.3's 28x28 grid"),
        ("features.3:0@cls", "features.3 has no class token"),
        # inside the 28x28 grid at 224 px, outside the smaller grid at 32 px
        ("features.3:0@20,20", "neuron position x=20, y=20 is outside features.3's"),
        ("features.3:0@1", "write a neuron as LAYER:CHANNEL@X,Y"),
    ],
)
def test_bad_unit_on_swin(capsys, tmp_path, unit, message):
    args = ["--model", "swin_t", "--weights", "random", "--unit", unit]
    assert message in _render_fails(capsys, tmp_path, *args)


def test_image_too_small_for_the_model(capsys, tmp_path):
    args = ["--model", "inception_v3", "--weights", "random", "--unit", "Mixed_6b:0"]
    line = _render_fails(capsys, tmp_path, *args)
    assert "32x32 image is too small for inception_v3" in line


# --------------------------------------------------------------------------- 6. neuron grammar


def test_neuron_position_is_column_then_row():
    model = blocks_net()  # blocks.3: 8 x 24 x 40, not square
    unit = objectives.parse("blocks.3:2@1,2", model)
    assert unit.target == ("neuron", "blocks.3", 2)
    assert str(unit) == "neuron(blocks.3:2, x=1, y=2)"
    acts = {"blocks.3": torch.randn(3, 8, 24, 40)}
    torch.testing.assert_close(unit(acts), acts["blocks.3"][:, 2, 2, 1])
    corner = objectives.parse("blocks.3:2@39,23", model)  # x < W = 40, y < H = 24
    torch.testing.assert_close(corner(acts), acts["blocks.3"][:, 2, 23, 39])
    with pytest.raises(UsageError, match="outside blocks.3's 40x24 grid"):
        objectives.parse("blocks.3:2@23,39", model)


def test_neuron_outside_a_smaller_grid_is_a_usage_error():
    """The position is checked at the model's input size; a smaller image shrinks the grid."""
    unit = objectives.parse("blocks.3:2@30,20", blocks_net())
    with pytest.raises(UsageError, match="outside blocks.3's 20x12 grid"):
        unit({"blocks.3": torch.randn(1, 8, 12, 20)})


def test_neuron_on_tokens_cls_and_patch_grid():
    model = tiny_vit()
    acts = {VIT_LAYER: torch.randn(2, 17, 32)}
    cls = objectives.parse(f"{VIT_LAYER}:3@cls", model)
    assert str(cls) == f"neuron({VIT_LAYER}:3@cls)"
    torch.testing.assert_close(cls(acts), acts[VIT_LAYER][:, 0, 3])
    patch = objectives.parse(f"{VIT_LAYER}:3@1,2", model)  # column 1, row 2 of 4x4
    torch.testing.assert_close(patch(acts), acts[VIT_LAYER][:, 1 + 2 * 4 + 1, 3])
    mean = objectives.parse(f"{VIT_LAYER}:3", model)  # the channel: patch tokens only
    torch.testing.assert_close(mean(acts), acts[VIT_LAYER][:, 1:, 3].mean(1))
    assert objectives.neuron(VIT_LAYER, 3, x="cls").bind(model)(acts).shape == (2,)


def test_cls_on_a_layer_without_class_token():
    with pytest.raises(UsageError, match="blocks.3 has no class token"):
        objectives.parse("blocks.3:2@cls", blocks_net())
    model = tiny_vit()
    with pytest.raises(UsageError, match="conv_proj has no class token"):
        objectives.parse("conv_proj:2@cls", model)


@pytest.mark.parametrize(
    "pos", ["1", "1,2,3", "a,b", "-1,2", "1;2", "", "cls,1", "1.5,2", "x=1,y=2"]
)
def test_malformed_neuron_position(pos):
    with pytest.raises(UsageError, match=r"LAYER:CHANNEL@X,Y"):
        objectives.parse(f"blocks.3:2@{pos}", blocks_net())
