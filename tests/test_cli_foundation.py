"""CLI: `dreamviz models`, `dreamviz layers`, --help and one-line usage errors (in-process)."""

from __future__ import annotations

import os
import re

import pytest
import torch

from dreamviz.cli import main
from dreamviz.models import weights_cache_path


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache, and any download attempt is a test failure."""

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    return tmp_path


def _layers(capsys, *args):
    assert main(["layers", *args]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    rows, layouts = {}, {}
    for line in out.splitlines():
        name, typ, rest = re.split(r"\s{2,}", line, maxsplit=2)
        shape, _, layout = rest.partition("  ")
        rows[name] = (typ, shape)
        layouts[name] = layout.strip()
    _layers.layouts = layouts
    return out, rows


@pytest.mark.parametrize(
    "model, expected",
    [
        (
            "efficientnet_lite0",
            {
                "stem": ("ConvNormActivation", "32x112x112"),
                "blocks.0": ("MBConv", "16x112x112"),
                "blocks.10": ("MBConv", "112x14x14"),
                "blocks.15": ("MBConv", "320x7x7"),
                "head": ("ConvNormActivation", "1280x7x7"),
                "logits": ("output", "1000"),
            },
        ),
        (
            "googlenet",
            {
                "inception3a": ("Inception", "256x28x28"),
                "inception4c": ("Inception", "512x14x14"),
                "inception5b": ("Inception", "1024x7x7"),
                "fc": ("Linear", "1000"),
            },
        ),
        (
            "resnet50",
            {
                "layer3.1": ("Bottleneck", "1024x14x14"),
                "layer4": ("Sequential", "2048x7x7"),
                "layer1.0.conv3": ("Conv2d", "256x56x56"),
            },
        ),
        (
            "vit_h_14",  # default weights are 518 px: the architecture must be built for that
            {
                "conv_proj": ("Conv2d", "1280x37x37"),
                "encoder.layers.encoder_layer_31": ("EncoderBlock", "1370x1280"),
            },
        ),
        (
            "vgg16",
            {
                "features.0": ("Conv2d", "64x224x224"),
                "features.29": ("ReLU", "512x14x14"),
                "classifier.6": ("Linear", "1000"),
            },
        ),
    ],
)
def test_layers_offline(capsys, offline, model, expected):
    out, rows = _layers(capsys, model)
    for name, (typ, shape) in expected.items():
        assert rows[name] == (typ, shape), name
    # aligned: the type and shape columns start at the same offset on every line
    lines = out.splitlines()
    starts = {line.index(rows[line.split()[0]][0], len(line.split()[0])) for line in lines}
    assert len(starts) == 1
    assert "logits" in rows and not any(name.startswith("aux") for name in rows)
    if model == "vit_h_14":  # the feature axis of a token layer, and where the patches are
        assert _layers.layouts["encoder.layers.encoder_layer_31"] == "1280 ch, 37x37 tokens + cls"
    if model == "vgg16":
        assert _layers.layouts["features.29"] == "512 ch, 14x14"


def test_layers_default_is_lite0_and_flags_shared_modules(capsys, offline):
    _, default = _layers(capsys)
    assert "blocks.15" in default and "head" in default
    _, rows = _layers(capsys, "resnet50")
    assert _layers.layouts["layer1.0.relu"].endswith("(called 3x per pass: not hookable)")
    assert "not hookable" not in _layers.layouts["layer1.0.bn3"]


def test_models_lists_bundled_and_availability(capsys, offline):
    cached = weights_cache_path("resnet18")
    os.makedirs(os.path.dirname(cached))
    open(cached, "wb").close()
    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert rows["efficientnet_lite0"] == ["bundled", "224"]
    assert rows["resnet18"] == ["cached", "224"]
    assert rows["resnet50"] == ["download", "224"]
    assert rows["inception_v3"] == ["download", "299"]
    assert out.splitlines()[0].split() == ["MODEL", "WEIGHTS", "INPUT"]


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["layers", "nosuchmodel"], r"unknown model 'nosuchmodel'.*dreamviz\.list_models\(\)"),
        (["layers", "resnet5"], r"did you mean: .*resnet50"),
        (["layers", "--bogus"], r"unrecognized arguments: --bogus"),
        (["nosuchcommand"], r"invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, offline, argv, pattern):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(pattern, err) and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--help"], ["models", "--help"], ["layers", "--help"]])
def test_help(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dreamviz")
    if argv[0] == "layers":
        assert "LAYER:CHANNEL" in out and "offline" in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: dreamviz" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
    from dreamviz.cli import COMMANDS

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS) and "explain" in COMMANDS
