"""Objectives: algebra and names, image=, reported layers, values on known activations, binding."""

from __future__ import annotations

import pytest
import torch

import dreamviz
from dreamviz.errors import UsageError
from dreamviz.hooks import Capture
from dreamviz.models import VisionModel
from dreamviz.objectives import (
    Objective,
    channel,
    class_logit,
    direction,
    diversity,
    layer,
    neuron,
    parse,
)


def _acts(n=3, c=4, h=5, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(n, c, h, w, generator=g), "b": torch.randn(n, c, 3, 3, generator=g)}


def test_names_of_the_algebra():
    obj = channel("blocks.10", 5) - 0.5 * diversity("blocks.10")
    assert str(obj) == "channel(blocks.10:5) - 0.5*diversity(blocks.10)"
    assert obj.layers == ("blocks.10",)
    total = sum([channel("a", 0), channel("b", 1), neuron("a", 2)])
    assert str(total) == "channel(a:0) + channel(b:1) + neuron(a:2)"
    assert total.layers == ("a", "b")
    assert str(channel("a", 1) - (channel("a", 2) + channel("b", 0))) == (
        "channel(a:1) - (channel(a:2) + channel(b:0))"
    )
    assert str(2 * (channel("a", 1) + 1)) == "2*(channel(a:1) + 1)"
    assert str(channel("a", 3, image=1)) == "channel(a:3, image=1)"
    assert str(class_logit("tabby")) == "class_logit(tabby)"


def test_algebra_values():
    acts = _acts()
    a, b = channel("a", 1), channel("b", 2)
    va, vb = a(acts), b(acts)
    assert va.shape == (3,)
    torch.testing.assert_close(va, acts["a"][:, 1].mean((1, 2)))
    torch.testing.assert_close((a + b)(acts), va + vb)
    torch.testing.assert_close((a - 2 * b)(acts), va - 2 * vb)
    torch.testing.assert_close((3 - a)(acts), 3 - va)
    torch.testing.assert_close((a / 4)(acts), va / 4)
    torch.testing.assert_close((-a)(acts), -va)
    torch.testing.assert_close(sum([a, b, a])(acts), 2 * va + vb)


def test_batch_aims_a_term_at_one_image():
    acts = _acts()
    obj = channel("a", 0, image=0) + channel("a", 3, image=2)
    v = obj(acts)
    assert v[1] == 0
    torch.testing.assert_close(v[0], acts["a"][0, 0].mean())
    torch.testing.assert_close(v[2], acts["a"][2, 3].mean())
    with pytest.raises(UsageError, match="image=5 but the batch has 3 images"):
        channel("a", 0, image=5)(acts)


def test_neuron_centre_of_a_non_square_map_and_layer():
    acts = _acts(h=5, w=8)
    # centre: column W//2 = 4, row H//2 = 2
    torch.testing.assert_close(neuron("a", 1)(acts), acts["a"][:, 1, 2, 4])
    torch.testing.assert_close(neuron("a", 1, x=0, y=4)(acts), acts["a"][:, 1, 4, 0])
    torch.testing.assert_close(layer("b")(acts), acts["b"].pow(2).mean((1, 2, 3)))


def test_direction_matches_a_channel_for_a_one_hot_vector():
    acts = _acts()
    vec = torch.zeros(4)
    vec[2] = 1
    torch.testing.assert_close(direction("a", vec)(acts), channel("a", 2)(acts))


def test_diversity_prefers_different_images():
    same = {"a": torch.rand(1, 4, 6, 6).expand(3, -1, -1, -1).contiguous()}
    different = _acts()
    assert diversity("a")({"a": same["a"][:1]}).item() == 0
    assert diversity("a")(same).mean() < diversity("a")(different).mean()


def test_bind_keeps_every_term_of_a_valid_objective(lite0):
    obj = channel("blocks.3", 5) - 0.5 * neuron("blocks.5", 7, image=1) + class_logit("tabby")
    bound = obj.bind(lite0)
    assert isinstance(bound, Objective)
    assert str(bound) == str(obj) and bound.layers == ("blocks.3", "blocks.5", "logits")
    with Capture(lite0, bound.layers) as cap:
        acts = cap(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    expected = acts["blocks.3"][:, 5].mean((1, 2)) + acts["logits"][:, 281]
    expected[1] -= 0.5 * acts["blocks.5"][1, 7, 2, 2]
    torch.testing.assert_close(bound(acts), expected)


def test_bind_resolves_class_names_against_the_model(tiny_net):
    # ImageNet's "tabby" is 281; bound to a model with its own names, it is that model's class
    model = VisionModel(tiny_net(classes=3), classes=["cat", "tabby", "dog"], input_size=16)
    obj = 2 * class_logit("tabby") + 1
    bound = obj.bind(model)
    assert str(bound) == "2*class_logit(tabby) + 1"
    logits = torch.tensor([[10.0, 20.0, 30.0]])
    assert bound({"logits": logits}).item() == 41
    with pytest.raises(UsageError, match="unknown class"):
        class_logit("goldfish").bind(model)


def test_bind_validates_against_the_model(lite0):
    with pytest.raises(UsageError, match="unknown layer"):
        channel("blocks.99", 1).bind(lite0)
    with pytest.raises(UsageError, match="out of range"):
        channel("blocks.3", 40).bind(lite0)
    with pytest.raises(UsageError, match="out of range"):
        (channel("blocks.3", 1) + 0.5 * channel("blocks.4", 400)).bind(lite0)
    with pytest.raises(UsageError, match="outside"):
        neuron("blocks.3", 1, x=99, y=0).bind(lite0)
    with pytest.raises(UsageError, match="unknown class"):
        class_logit("tabbyy")
    with pytest.raises(UsageError, match="ambiguous"):
        class_logit("cardigan")  # two ImageNet classes share this name
    with pytest.raises(UsageError, match="ambiguous"):
        class_logit("terrier")  # a part of many names


def test_class_by_name_and_parse(lite0):
    acts = {"logits": torch.arange(1000.0).view(1, -1)}
    assert class_logit("Tabby").bind(lite0)(acts).item() == 281
    assert class_logit(281)(acts).item() == 281
    assert str(parse("blocks.10:5")) == "channel(blocks.10:5)"
    assert parse("logits:7")(acts).item() == 7
    assert str(parse("blocks.10", lite0)) == "layer(blocks.10)"
    assert parse("tabby", lite0)(acts).item() == 281


def test_objective_on_a_real_capture(lite0):
    x = torch.rand(2, 3, 64, 64)
    obj = channel("blocks.3", 4) + neuron("blocks.5", 7, image=1)
    with Capture(lite0, obj.layers) as cap:
        acts = cap(x)
    assert set(acts) == {"blocks.3", "blocks.5"}
    v = obj(acts)
    expected = acts["blocks.3"][:, 4].mean((1, 2))
    expected[1] += acts["blocks.5"][1, 7, 2, 2]
    torch.testing.assert_close(v, expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda **k: channel("a", 1, **k),
        lambda **k: neuron("a", 1, **k),
        lambda **k: class_logit(7, **k),
        lambda **k: dreamviz.objectives.layer("a", **k),
        lambda **k: dreamviz.objectives.direction("a", [1.0, 0.0], **k),
    ],
)
def test_batch_is_the_deprecated_name_of_image(make):
    """``image=i`` aims a term at image i; ``batch=i``, its name before, still works for one
    release, with a DeprecationWarning."""
    with pytest.warns(DeprecationWarning, match="write image=i"):
        old = make(batch=1)
    new = make(image=1)
    assert str(old) == str(new) and old.terms == new.terms
    acts = {"a": torch.arange(24.0).reshape(3, 2, 2, 2), "logits": torch.rand(3, 10)}
    assert torch.equal(old(acts), new(acts)) and new(acts)[0] == 0 and new(acts)[2] == 0
    with pytest.raises(UsageError, match="give image only"):
        make(image=1, batch=1)


def test_parse_takes_batch_as_the_old_name_of_image_with_a_warning():
    from dreamviz.objectives import parse

    with pytest.warns(DeprecationWarning, match="image=i"):
        old = parse("blocks.3:0", batch=1)
    assert str(old) == str(parse("blocks.3:0", image=1))
