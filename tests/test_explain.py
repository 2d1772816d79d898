"""explain: attributions that add up, rankings that do not depend on the batch, a page that
opens, one-line errors, an untouched model, and ablations that confirm the ranking."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from dreamviz import VisionModel
from dreamviz.cli import main
from dreamviz.explain import (
    MEANING,
    METHODS,
    ablate,
    channel_ablation,
    explain,
    layer_attribution,
    nmf,
    write_page,
)
from dreamviz.hooks import replace_output
from dreamviz.io import as_batch, read_image

FAST = dict(render_settings={"steps": 2, "size": [32, 32]}, saliency_maps=False)


@pytest.fixture(scope="module")
def photo(assets_dir):
    from torchvision.transforms.v2.functional import resize

    return resize(read_image(assets_dir / "chelsea.jpg"), [96], antialias=True)


def test_ig_attributions_sum_to_the_logit_minus_the_zeroed_layer(lite0, photo):
    # blocks.10 is followed by nonlinear blocks, so this is a real test of the path integral
    x = as_batch(photo, lite0)
    target = int(lite0(x).argmax())
    attr, _, logit, baseline = layer_attribution(lite0, x, target, "blocks.10", steps=32)
    assert abs(float(attr.sum()) - (logit - baseline)) <= 0.05 * abs(logit - baseline)
    # one gradient at the photo (gradient x activation) does not satisfy completeness here
    gxa, _, _, _ = layer_attribution(lite0, x, target, "blocks.10", method="grad_x_act")
    ig_error = abs(float(attr.sum()) - (logit - baseline))
    assert abs(float(gxa.sum()) - (logit - baseline)) > ig_error


def test_explanation_reports_completeness_and_ranks_by_attribution(lite0, photo):
    ex = explain(lite0, photo, layer="blocks.10", top=5, pictures=False, **FAST)
    assert ex.completeness_error < 0.05
    values = [u.value for u in ex.channels]
    assert values == sorted(values, reverse=True)
    assert values[0] == pytest.approx(float(ex.all_values.max()), rel=1e-6)
    assert ex.channels[0].map.shape == photo.shape[-2:]
    assert ex.target == ex.top5[0][0] and len(ex.top5) == 5


def test_ranking_is_invariant_to_batch_composition(lite0, photo, assets_dir):
    other = read_image(assets_dir / "coffee.jpg")[:, :96, :96]
    alone = explain(lite0, photo, top=6, pictures=False, **FAST)
    both = explain(lite0, [other, photo], top=6, pictures=False, **FAST)
    assert [u.index for u in both[1].channels] == [u.index for u in alone.channels]
    torch.testing.assert_close(both[1].all_values, alone.all_values)


def test_zeroing_the_top_channels_lowers_the_logit_most(lite0, photo):
    ex = explain(lite0, photo, top=4, pictures=False, **FAST)
    x, t, layer = ex.image, ex.target, ex.layer
    k = 4
    top = [u.index for u in ex.channels[:k]]
    drop_top = ex.logit - ablate(lite0, x, t, layer, top)
    active = ex_active = None
    from dreamviz.hooks import Capture, as_nchw, probe

    with Capture(lite0, [layer]) as cap, torch.no_grad():
        a = as_nchw(cap(as_batch(x, lite0))[layer], probe(lite0)[layer].layout)
    ex_active = a.flatten(2).mean(2)[0].topk(k).indices.tolist()
    drop_active = ex.logit - ablate(lite0, x, t, layer, ex_active)
    g = torch.Generator().manual_seed(0)
    n = a.shape[1]
    drops = [
        ex.logit - ablate(lite0, x, t, layer, torch.randperm(n, generator=g)[:k].tolist())
        for _ in range(20)
    ]
    active = drop_active
    assert drop_top > sorted(drops)[10] and drop_top > active


def _zeroed_alone(model, x, target, layer, c, last_axis=False):
    """The target's logit with channel ``c`` of ``layer`` zeroed by a plain hook (a reference
    that shares no code with explain's batched ablation)."""

    def zero(out):
        out = out.clone()
        if last_axis:
            out[..., c] = 0
        else:
            out[:, c] = 0
        return out

    with replace_output(model, layer, zero), torch.no_grad():
        return float(model(x)[0, target])


@pytest.mark.parametrize("layer", ["blocks.3", "blocks.12"])
def test_ablation_ranking_is_each_channel_zeroed_alone(lite0, photo, layer):
    x = as_batch(photo, lite0)
    target = int(lite0(x).argmax())
    drops = channel_ablation(lite0, x, target, layer, rows=7)  # chunks that do not divide C
    logit = float(lite0(x)[0, target])
    for c in (0, 5, len(drops) - 1, int(drops.argmax())):
        assert float(drops[c]) == pytest.approx(
            logit - _zeroed_alone(lite0, x, target, layer, c), abs=1e-4
        )
    assert float(drops.std()) > 0


def test_ablation_ranking_on_a_vit_zeroes_a_feature_of_every_token():
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=10,
    )  # fmt: skip
    torch.nn.init.normal_(net.heads.head.weight)  # torchvision starts the head at zero
    vit = VisionModel(net, input_size=32, name="tiny_vit")
    x = torch.rand(1, 3, 32, 32)
    layer = "encoder.layers.encoder_layer_0"
    drops = channel_ablation(vit, x, 3, layer)
    with torch.no_grad():
        logit = float(vit(x)[0, 3])
    assert drops.shape == (32,)
    for c in (0, 17, 31):
        expected = logit - _zeroed_alone(vit, x, 3, layer, c, last_axis=True)
        assert float(drops[c]) == pytest.approx(expected, abs=1e-5)
    ex = explain(vit, x[0], target=3, layer=layer, top=3, method="ablation", pictures=False,
                 saliency_maps=False)  # fmt: skip
    assert ex.channels[0].index == int(drops.argmax())


def test_first_order_rankings_are_exact_where_the_rest_of_the_net_is_linear(tiny_net):
    # after the pooling layer the tiny net is flatten + linear: gradient x activation, IG from
    # zero and the ablation drop of each channel are all the same number
    model = VisionModel(tiny_net(), input_size=32)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    exact = channel_ablation(model, x, 2, "5")
    for method in ("grad_x_act", "ig"):
        attr, _, _, _ = layer_attribution(model, x, 2, "5", method, steps=4)
        torch.testing.assert_close(attr.flatten(), exact, rtol=1e-4, atol=1e-5)
    assert float(exact.abs().max()) > 1e-3


def test_grad_x_act_is_the_gradient_at_the_photo_times_the_activation(tiny_net):
    model = VisionModel(tiny_net(), input_size=32)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).requires_grad_()
    saved = {}

    def keep(out):  # a plain-autograd reference; after "0" come biases: not homogeneous
        out.retain_grad()
        saved["a"] = out
        return out

    with replace_output(model, "0", keep):
        model(x)[0, 1].backward()
    expected = saved["a"].grad * saved["a"].detach()
    attr, _, _, _ = layer_attribution(model, x.detach(), 1, "0", "grad_x_act")
    scale = float(expected.abs().max())
    torch.testing.assert_close(attr, expected, rtol=1e-4, atol=1e-4 * scale)
    ig, _, _, _ = layer_attribution(model, x.detach(), 1, "0", "ig", steps=16)
    assert float((ig - expected).abs().max()) > 0.01 * scale  # the path matters here


def test_ig_blur_starts_from_the_layer_on_a_blurred_copy(tiny_net):
    from dreamviz.attribution import blur
    from dreamviz.defaults import EXPLAIN
    from dreamviz.models import model_guard

    model = VisionModel(tiny_net(), input_size=32)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    attr, _, logit, baseline = layer_attribution(model, x, 1, "2", "ig_blur", steps=64)
    with model_guard(model), torch.no_grad():
        blurred = float(model(blur(x, *EXPLAIN["blur"]))[0, 1])
    assert baseline == pytest.approx(blurred, abs=1e-5)  # a sequential net: the same thing
    assert float(attr.sum()) == pytest.approx(logit - baseline, rel=0.05, abs=1e-3)
    zero, _, _, zero_baseline = layer_attribution(model, x, 1, "2", "ig", steps=64)
    assert abs(zero_baseline - baseline) > 1e-3 and not torch.allclose(zero, attr)


def test_explain_ranks_by_the_method_and_says_what_the_number_means(lite0, photo, tmp_path):
    x = as_batch(photo, lite0)
    target = int(lite0(x).argmax())
    ex = explain(lite0, photo, layer="blocks.12", top=4, method="ablation", pictures=False, **FAST)
    torch.testing.assert_close(ex.all_values, channel_ablation(lite0, x, target, "blocks.12"))
    assert [u.index for u in ex.channels] == ex.all_values.topk(4).indices.tolist()
    assert ex.completeness_error is None and "alone" in ex.meaning
    write_page(ex, tmp_path / "ex")
    data = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert data["value_means"] == MEANING["ablation"] and data["completeness_error"] is None
    assert MEANING["ablation"] in (tmp_path / "ex" / "index.html").read_text()
    assert set(MEANING) == set(METHODS)


def test_nmf_reconstructs_a_nonnegative_product():
    g = torch.Generator().manual_seed(1)
    w, h = torch.rand(50, 3, generator=g), torch.rand(3, 20, generator=g)
    v = (w @ h).double()
    fw, fh = nmf(v, 3, iters=500)
    assert (fw >= 0).all() and (fh >= 0).all()
    assert float((fw @ fh - v).norm() / v.norm()) < 0.05


def test_groups_and_pictures_and_the_page(lite0, photo, tmp_path):
    ex = explain(lite0, photo, top=2, groups=2, **FAST)
    assert len(ex.groups) == 2 and all(u.picture is not None for u in ex.channels + ex.groups)
    assert ex.groups[0].direction.shape == (ex.all_values.numel(),)
    page = write_page(ex, tmp_path / "ex", command="dreamviz explain x.jpg")
    data = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert data["channels"][0]["index"] == ex.channels[0].index and data["command"]
    for name in ("photo.png", "channel_{}.png", "channel_{}_map.png", "group_0.png"):
        assert (tmp_path / "ex" / name.format(ex.channels[0].index)).is_file(), name
    html = page.read_text()
    assert "channel_" in html and "data:image" not in html
    inline = ex._repr_html_()
    assert inline.count("data:image/png;base64") >= 5


def test_page_opens_in_chromium_without_broken_images(lite0, photo, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("Chromium not found: install it (apt-get install chromium)")
    ex = explain(lite0, photo, top=2, groups=1, render_settings=FAST["render_settings"])
    page = write_page(ex, tmp_path / "ex")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
           "--dump-dom", page.as_uri()]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert 'data-broken="[]"' in dom, dom[-500:]


def test_model_is_untouched_after_success_and_error(lite0, photo, monkeypatch):
    before = [(m.training, len(m._forward_hooks)) for m in lite0.modules()]
    grads = [p.requires_grad for p in lite0.parameters()]
    explain(lite0, photo, top=1, pictures=False, **FAST)

    def interrupted(*args, **kwargs):  # Ctrl-C in the middle of the path integral
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.autograd, "grad", interrupted)
    with pytest.raises(KeyboardInterrupt):
        explain(lite0, photo, layer="blocks.10", top=1, pictures=False, **FAST)
    monkeypatch.undo()
    assert [(m.training, len(m._forward_hooks)) for m in lite0.modules()] == before
    assert [p.requires_grad for p in lite0.parameters()] == grads


@pytest.mark.parametrize(
    "args, words",
    [
        (["--target", "no such class"], "unknown class"),
        (["--layer", "blocks.99"], "unknown layer"),
        (["--top", "0"], "out of range"),
    ],
)
def test_cli_bad_input_is_one_line(capsys, tmp_path, assets_dir, args, words):
    out = tmp_path / "ex"
    try:
        rc = main(["explain", str(assets_dir / "chelsea.jpg"), "--out", str(out), *args])
    except SystemExit as e:  # argparse's own range errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and words in err
    assert not out.exists()


def test_cli_unreadable_photo_is_one_line(capsys, tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not an image")
    rc = main(["explain", str(bad), "--out", str(tmp_path / "ex")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "cannot read" in err


def test_cli_writes_a_page_per_photo_and_an_index(capsys, tmp_path, assets_dir):
    from PIL import Image

    out = tmp_path / "ex"
    for name in ("chelsea.jpg", "coffee.jpg"):  # small copies keep the test fast
        with Image.open(assets_dir / name) as im:
            im.resize((64, 64)).save(tmp_path / name)
    rc = main(["explain", str(tmp_path / "chelsea.jpg"), str(tmp_path / "coffee.jpg"),
               "--top", "1", "--render-steps", "1", "--render-size", "32", "--steps", "4",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "index.html")]
    assert (out / "chelsea" / "index.html").is_file() and (
        out / "coffee" / "explain.json"
    ).is_file()


def test_channels_after_a_relu_are_pictured_at_their_pre_activation(lite0):
    from dreamviz.explain import picture_layer

    # lite0's head is conv, batch norm, ReLU6: a dead channel of its output renders flat grey
    assert picture_layer(lite0, "head") == "head.1"
    assert picture_layer(lite0, "blocks.10") == "blocks.10"  # ends in a projection, no ReLU


def test_cli_method_flag_reaches_the_page(capsys, tmp_path, assets_dir):
    from PIL import Image

    with Image.open(assets_dir / "coffee.jpg") as im:
        im.resize((64, 64)).save(tmp_path / "coffee.jpg")
    out = tmp_path / "ex"
    rc = main(["explain", str(tmp_path / "coffee.jpg"), "--method", "ablation", "--top", "1",
               "--render-steps", "1", "--render-size", "32", "--out", str(out)])  # fmt: skip
    assert rc == 0
    data = json.loads((out / "explain.json").read_text())
    assert data["method"] == "ablation" and data["value_means"] == MEANING["ablation"]


def test_ablation_repeats_the_photo_where_the_net_cannot_broadcast_one_row():
    from torch import nn

    class Dense(nn.Module):  # concatenates the layer's input and output: no broadcasting
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(7, 5)

        def forward(self, x):
            return self.fc(torch.cat([x, self.a(x).relu()], 1).mean((2, 3)))

    torch.manual_seed(0)
    model = VisionModel(Dense(), input_size=16)
    x = torch.rand(1, 3, 16, 16)
    drops = channel_ablation(model, x, 2, "a")
    with torch.no_grad():
        logit = float(model(x)[0, 2])
    expected = [logit - _zeroed_alone(model, x, 2, "a", c) for c in range(4)]
    torch.testing.assert_close(drops, torch.tensor(expected), rtol=1e-4, atol=1e-6)
    assert float(drops.abs().max()) > 1e-4


def test_ablation_halves_its_rows_when_a_pass_runs_out_of_memory(tiny_net):
    """The ablation's passes go through the batching chunker: a pass that runs out of memory
    is halved and retried (before, the error was taken for a broadcast failure and the pass
    retried at the same size with the photo repeated)."""
    from torch import nn

    from dreamviz.explain import ablate_many

    class Tight(nn.Module):  # a layer after the ablated one that cannot take 3 rows at once
        def forward(self, x):
            if x.shape[0] > 2:
                raise torch.OutOfMemoryError("CPU out of memory (simulated)")
            return x

    net = tiny_net()
    net.insert(4, Tight())
    model = VisionModel(net, input_size=32)
    keep = torch.ones(8, 8)
    keep[torch.arange(8), torch.arange(8)] = 0  # row c zeroes channel c
    image = torch.rand(3, 32, 32)
    one_by_one = ablate_many(model, image, 1, "3", keep, rows=1)
    assert torch.allclose(ablate_many(model, image, 1, "3", keep, rows=8), one_by_one)
