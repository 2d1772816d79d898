"""Capture hooks: correct values and gradients, early stop, in-place safety, refusals, cleanup."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import dreamviz
from dreamviz.errors import UsageError
from dreamviz.hooks import Capture, check_unit, parse_unit, probe
from dreamviz.models import architecture


def _images(n=2, size=64, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _objective(acts):
    """Nonlinear in the activations, so backward needs their true values."""
    return sum((a**2).mean() + a.mean() for a in acts.values())


def _captured(model, layers, x, **kwargs):
    """Activations and d(objective)/d(input) through Capture."""
    x = x.clone().requires_grad_(True)
    with Capture(model, layers, **kwargs) as cap:
        acts = cap(x)
        _objective(acts).backward()
    return {k: v.detach() for k, v in acts.items()}, x.grad


def _manual(model, fn, x):
    """The same, from a hand-written forward pass ``fn(net, normalized_x) -> acts``."""
    x = x.clone().requires_grad_(True)
    acts = fn(model.net, model.normalize(x))
    _objective(acts).backward()
    return {k: v.detach() for k, v in acts.items()}, x.grad


def _assert_same(got, want):
    (acts, grad), (want_acts, want_grad) = got, want
    assert acts.keys() == want_acts.keys()
    for k in acts:
        torch.testing.assert_close(acts[k], want_acts[k], msg=f"activation {k}")
    torch.testing.assert_close(grad, want_grad, msg="input gradient")


# --------------------------------------------------------------------------- lite0


def _lite0_manual(net, xn):
    acts, h = {}, net.stem(xn)
    for i, block in enumerate(net.blocks):
        h = block(h)
        acts[f"blocks.{i}"] = h
    acts["head"] = net.head(h)
    acts["logits"] = net.fc(torch.flatten(net.pool(acts["head"]), 1))
    return acts


@pytest.mark.parametrize("stop_early", [True, False])
def test_capture_equals_manual_lite0(lite0, stop_early):
    layers = ["blocks.3", "blocks.10", "head"]
    x = _images(size=96)
    got = _captured(lite0, layers, x, stop_early=stop_early)
    _assert_same(got, _manual(lite0, lambda n, xn: {k: _lite0_manual(n, xn)[k] for k in layers}, x))
    assert got[0]["blocks.10"].shape == (2, 112, 6, 6)


def test_capture_logits_equals_model_output(lite0):
    x = _images(size=96)
    with torch.no_grad(), Capture(lite0, ["blocks.5", "logits"]) as cap:
        acts = cap(x)
        torch.testing.assert_close(acts["logits"], lite0(x))
        torch.testing.assert_close(
            acts["blocks.5"], _lite0_manual(lite0.net, lite0.normalize(x))["blocks.5"]
        )


@pytest.mark.parametrize("layer", ["blocks.1", "blocks.8", "blocks.15"])
def test_early_stop_equals_full_pass(lite0, layer):
    x = _images(size=64, seed=1)
    _assert_same(_captured(lite0, [layer], x), _captured(lite0, [layer], x, stop_early=False))


def _count_calls(module):
    calls = []
    return calls, module.register_forward_hook(lambda *_: calls.append(1))


@pytest.mark.parametrize(
    "layers, stop_early, later_runs",
    [
        (["blocks.1"], True, False),
        (["blocks.1"], False, True),
        (["blocks.1", "blocks.0"], True, False),  # order given does not matter
        (["blocks.1", "logits"], True, True),  # the output is wanted: run it all
    ],
)
def test_early_stop_skips_later_modules(lite0, layers, stop_early, later_runs):
    net = lite0.net
    counters = [_count_calls(m) for m in (net.blocks[2], net.head, net.fc)]
    first, first_handle = _count_calls(net.blocks[1])
    try:
        with torch.no_grad(), Capture(lite0, layers, stop_early=stop_early) as cap:
            cap(_images(1, size=64))
    finally:
        first_handle.remove()
        for _, handle in counters:
            handle.remove()
    assert len(first) == 1
    assert [len(calls) for calls, _ in counters] == [int(later_runs)] * 3


# --------------------------------------------------------------------------- in-place ReLU models


def _vgg11(net, xn):
    f = net.features
    a0 = f[0](xn)  # followed by ReLU(inplace=True) in the model
    a3 = f[3](f[2](F.relu(a0)))
    return {"features.0": a0, "features.3": a3, "features.4": F.relu(a3)}


def _resnet18(net, xn):
    a = net.bn1(net.conv1(xn))  # followed by the in-place relu
    h = net.maxpool(F.relu(a))
    b = net.layer1[0]
    bn2 = b.bn2(b.conv2(F.relu(b.bn1(b.conv1(h)))))  # then `out += identity` in place
    return {"bn1": a, "layer1.0.bn2": bn2, "layer1.0": F.relu(bn2 + h)}


def _googlenet(net, xn):
    xn = net._transform_input(xn)
    c1 = net.conv1.bn(net.conv1.conv(xn))  # then F.relu(..., inplace=True)
    h = net.maxpool1(F.relu(c1))
    c2 = net.conv2.bn(net.conv2.conv(h))
    return {"conv1.bn": c1, "conv2.bn": c2, "conv2": F.relu(c2)}


INPLACE = {"vgg11": _vgg11, "resnet18": _resnet18, "googlenet": _googlenet}


@pytest.fixture(scope="module")
def random_model():
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = dreamviz.load_model(name, weights="random", device="cpu")
        return cache[name]

    return get


@pytest.mark.parametrize("stop_early", [True, False])
@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_relu_models_give_true_activations_and_gradients(random_model, name, stop_early):
    model = random_model(name)
    assert any(getattr(m, "inplace", False) for m in model.modules()) or name == "googlenet"
    x = _images(size=32, seed=2)
    fn = INPLACE[name]
    want = _manual(model, fn, x)
    # the pre-ReLU activations really are negative somewhere, so an overwrite would show
    assert all((a < 0).any() for k, a in want[0].items() if k in ("features.0", "bn1", "conv1.bn"))
    for layers in (list(want[0]), list(want[0])[:1]):  # several layers; one early layer
        got = _captured(model, layers, x, stop_early=stop_early)
        _assert_same(got, _manual(model, lambda n, xn, ks=layers: {k: fn(n, xn)[k] for k in ks}, x))


# --------------------------------------------------------------------------- refusals


def test_module_called_several_times_is_refused_with_neighbours():
    model = architecture("resnet50")  # meta device: the check needs no weights or compute
    assert probe(model)["layer1.0.relu"].calls == 3
    with pytest.raises(UsageError) as info:
        Capture(model, ["layer1.0.relu"])
    msg = str(info.value)
    assert "3 times" in msg and "layer1.0.relu" in msg
    suggested = msg.split("e.g. ")[1].split(", ")
    assert "layer1.0" in suggested
    for name in suggested:  # every suggestion is itself capturable
        Capture(model, [name])


def test_unknown_layer_suggests_close_names(lite0):
    with pytest.raises(
        UsageError, match=r"did you mean: .*blocks\.10.*dreamviz\.layers\('efficientnet_lite0'\)"
    ):
        Capture(lite0, ["block.10"])
    with pytest.raises(UsageError, match="unknown layer 'nothing'"):
        Capture(lite0, ["blocks.3", "nothing"])


class _WithUnused(torch.nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body
        self.unused = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.body(x)


def test_layer_that_never_runs_is_refused(tiny_net):
    net = _WithUnused(tiny_net())
    with pytest.raises(UsageError, match="'unused' never runs"):
        Capture(net, ["unused"])
    Capture(net, ["body.3"])  # a layer that runs is accepted


@pytest.mark.parametrize(
    "layer, channel, ok",
    [
        ("blocks.1", 0, True),
        ("blocks.1", 23, True),
        ("blocks.1", 24, False),
        ("blocks.1", -1, False),
        ("logits", 999, True),
        ("logits", 1000, False),
    ],
)
def test_channel_range(lite0, layer, channel, ok):
    if ok:
        assert check_unit(lite0, layer, channel).name == layer
        return
    n = 24 if layer == "blocks.1" else 1000
    with pytest.raises(
        UsageError, match=rf"out of range for {layer} \({n} channels\); use 0\.\.{n - 1}"
    ):
        check_unit(lite0, layer, channel)


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("inception4a:97", ("inception4a", 97)),
        ("blocks.10:0", ("blocks.10", 0)),
        ("  blocks.10:5 ", ("blocks.10", 5)),
        ("blocks.10 : 5", ("blocks.10", 5)),
        ("blocks.10", ("blocks.10", None)),
        ("logits:967", ("logits", 967)),
        ("layer3.1:-1", ("layer3.1", -1)),  # parsed; the range check refuses it
    ],
)
def test_parse_unit(text, parsed):
    assert parse_unit(text) == parsed


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("", "empty unit"),
        ("   ", "empty unit"),
        (":5", "has no layer"),
        ("blocks.10:x", "'x' is not an integer"),
        ("blocks.10:", "is not an integer"),
    ],
)
def test_parse_unit_errors(text, pattern):
    with pytest.raises(UsageError, match=pattern):
        parse_unit(text)


def test_capture_outside_with_block_is_an_error(lite0):
    with pytest.raises(RuntimeError, match="with"):
        Capture(lite0, ["blocks.1"])(_images(1, size=32))


# --------------------------------------------------------------------------- cleanup


def _state(model):
    return (
        [(n, m.training) for n, m in model.named_modules()],
        [(n, p.requires_grad) for n, p in model.named_parameters()],
        [(n, b.clone()) for n, b in model.named_buffers()],
    )


def _assert_clean(model, before):
    assert [n for n, m in model.named_modules() if m._forward_hooks] == []
    after = _state(model)
    assert after[0] == before[0] and after[1] == before[1]
    for (n, b), (_, b0) in zip(after[2], before[2]):
        assert torch.equal(b, b0), f"buffer {n} changed"


class _Boom(Exception):
    pass


def _raise_in_block(exc):
    def body(cap, x):
        cap(x)
        raise exc

    return body


def _raise_in_forward(exc):
    """Raise from inside the forward pass, as Ctrl-C would, between two modules."""

    def body(cap, x):
        def hook(*_):
            raise exc

        handle = cap.model.net.layer1.register_forward_hook(hook)
        try:
            cap(x)
        finally:
            handle.remove()

    return body


def _bad_input(cap, x):
    cap(x[:, :2])  # 2 channels: the first conv raises


@pytest.fixture
def mixed_state_resnet(random_model):
    """resnet18 in train mode, mostly trainable, with a few exceptions; put back afterwards."""
    model = random_model("resnet18")
    model.train().requires_grad_(True)
    model.net.layer2.eval()  # a mix, so a blanket restore would be caught
    model.net.fc.requires_grad_(False)
    yield model
    model.eval().requires_grad_(False)


def _succeed(cap, x):
    _objective(cap(x.requires_grad_(True))).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "body, expected",
    [
        (_succeed, None),
        (_raise_in_block(_Boom()), _Boom),
        (_raise_in_block(KeyboardInterrupt()), KeyboardInterrupt),
        (_raise_in_forward(KeyboardInterrupt()), KeyboardInterrupt),
        (_bad_input, RuntimeError),
    ],
    ids=["success", "exception", "ctrl-c", "ctrl-c-in-forward", "bad-input"],
)
def test_hooks_removed_and_state_restored(mixed_state_resnet, body, expected):
    model = mixed_state_resnet
    before = _state(model)
    x = _images(2, size=32)
    cap = Capture(model, ["layer1.0", "layer2.1.bn2"], stop_early=False)
    if expected is None:
        with cap:
            assert not any(m.training for m in model.net.modules())
            assert not any(p.requires_grad for p in model.net.parameters())
            body(cap, x)
    else:
        with pytest.raises(expected), cap:
            body(cap, x)
    _assert_clean(model, before)  # buffers equal too: BN ran in eval mode inside the block


def test_capture_can_be_reused(lite0):
    x = _images(1, size=64)
    cap = Capture(lite0, ["blocks.4"])
    with cap:
        first = cap(x)["blocks.4"]
    with cap:
        second = cap(x)["blocks.4"]
    assert torch.equal(first, second)
    assert not any(m._forward_hooks for m in lite0.modules())


def test_logits_of_a_model_without_tensor_output_is_a_usage_error():
    from dreamviz.errors import UsageError
    from dreamviz.hooks import check_layer
    from dreamviz.models import VisionModel

    class DictOut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return {"out": self.conv(x)}

    model = VisionModel(DictOut().eval(), input_size=16)
    assert check_layer(model, "conv").shape == (4, 14, 14)
    with pytest.raises(UsageError, match="does not return a tensor of logits"):
        check_layer(model, "logits")


def test_layers_lists_a_model_or_an_architecture_by_name(lite0):
    """dreamviz.layers(): the API that messages name (never the `dreamviz layers` command)."""
    table = dreamviz.layers(lite0)
    assert table["blocks.10"].shape == (112, 14, 14) and list(table)[-1] == "logits"
    by_name = dreamviz.layers("resnet18")  # no weights: probed on meta tensors
    assert by_name["layer3"].shape == (256, 14, 14) and by_name["layer3"].calls == 1
