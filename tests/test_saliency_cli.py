"""``dreamviz saliency``: paths printed, partial failures, one-line errors, nothing half-written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dreamviz.cli import main
from dreamviz.io import read_recipe


def run(capsys, *argv):
    code = main(["saliency", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_good_images_get_maps_when_one_fails(capsys, assets_dir, tmp_path):
    missing = tmp_path / "missing.jpg"
    code, out, err = run(
        capsys,
        assets_dir / "chelsea.jpg",
        missing,
        assets_dir / "coffee.jpg",
        "--size", "48", "--out", tmp_path / "maps",
        "--method", "gradient,gradcam", "--save-raw",
    )  # fmt: skip
    assert code == 1
    assert len(err) == 1 and "missing.jpg" in err[0] and "does not exist" in err[0]
    expected = [
        tmp_path / "maps" / f"{stem}_{m}.{ext}"
        for stem in ("chelsea", "coffee")
        for m in ("gradient", "gradcam")
        for ext in ("png", "npy")
    ]
    assert out == [str(p) for p in expected]
    assert all(p.exists() for p in expected)
    with Image.open(expected[0]) as img:
        assert img.mode == "RGB" and min(img.size) == 48
    recipe = read_recipe(expected[0])
    assert recipe["method"] == "gradient" and recipe["model"] == "efficientnet_lite0"
    assert recipe["target"] == "Egyptian cat (285)"
    assert np.load(expected[1]).shape[0] == 3  # the raw signed attribution, 3 x H x W
    assert np.load(expected[3]).shape[0] == 1  # Grad-CAM has no colour channels
    assert not list((tmp_path / "maps").glob(".*.tmp"))  # no temporary files left


def test_one_file_with_panel_ig_and_a_unit_target(capsys, assets_dir, tmp_path):
    out_file = tmp_path / "cat.png"
    code, out, err = run(
        capsys,
        assets_dir / "chelsea.jpg",
        "-o", out_file, "--method", "ig", "--steps", "16", "--size", "48", "--panel",
        "--target", "blocks.10:5",
    )  # fmt: skip
    assert code == 0 and out == [str(out_file)]
    assert len(err) == 1 and "completeness error" in err[0]
    recipe = read_recipe(out_file)
    assert recipe["target"] == "channel(blocks.10:5)" and recipe["options"]["steps"] == 16
    assert 0 <= recipe["completeness_error"] < 1
    with Image.open(out_file) as img:
        assert img.width > 3 * img.height / 2  # photo | map | overlay side by side


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "tabbby"], "unknown class 'tabbby' (did you mean: tabby"),
        (["--target", "-1"], "class index -1 is out of range"),  # not "unknown layer '-1'"
        (["--target", "1000"], "class index 1000 is out of range; use 0..999"),
        (["--method", "gradcam", "--layer", "blocks.99"], "unknown layer 'blocks.99'"),
        (["--method", "smoothgrad", "--layer", "head"], "--layer is for gradcam"),
        (["--method", "gradcm"], "unknown method 'gradcm'"),
        (["--method", "gradient,,"], "--method 'gradient,,' has an empty entry"),
        (["--method", "ig", "--baseline", "grey"], "unknown baseline 'grey'; give --baseline"),
        (
            ["--method", "gradcam", "--layer", "blocks.10", "--target", "blocks.3:1"],
            "--layer blocks.10 does not run before the target's layer (blocks.3)",
        ),
        (["--cmap", "jet"], "unknown colour map"),
        (["-o", "OUT", "EXTRA"], "-o FILE takes one image"),
    ],
)
def test_usage_errors_are_one_line_and_write_nothing(args, message, capsys, assets_dir, tmp_path):
    extra = [assets_dir / "coffee.jpg"] if "EXTRA" in args else []
    args = [tmp_path / "x.png" if a == "OUT" else a for a in args if a != "EXTRA"]
    dest = [] if "-o" in args else ["--out", tmp_path]
    code, out, err = run(capsys, assets_dir / "chelsea.jpg", *extra, "--size", "32", *dest, *args)
    assert code == 2 and out == []
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_only_bad_images_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    code, out, err = run(capsys, bad, tmp_path / "gone.png", "--out", tmp_path / "o")
    assert code == 2 and out == [] and len(err) == 2
    assert "cannot read" in err[0] and "does not exist" in err[1]


def test_every_default_comes_from_defaults_saliency(capsys):
    """The API's signatures, the CLI's flags and its help texts all read defaults.SALIENCY."""
    import inspect

    from dreamviz import attribution, visualize
    from dreamviz.cli import build_parser
    from dreamviz.defaults import SALIENCY

    def default(fn, name):
        return inspect.signature(fn).parameters[name].default

    for fn, names in [
        (attribution.saliency, ["method", "internal_batch_size"]),
        (attribution.smoothgrad, ["samples", "noise", "seed"]),
        (attribution.integrated_gradients, ["steps", "baseline", "quadrature_rule"]),
        (visualize.colorize, ["clip"]),
        (visualize.display_map, ["clip"]),
        (visualize.overlay, ["clip", "alpha", "dim"]),
        (visualize.panel, ["clip", "alpha", "dim"]),
    ]:
        for name in names:
            assert default(fn, name) == SALIENCY[name], (fn.__name__, name)
    flags = {"internal_batch_size": "batch_size"}
    args = build_parser().parse_args(["saliency", "x.jpg"])
    keys = ["method", "samples", "noise", "steps", "baseline", "internal_batch_size"]
    for key in keys + ["clip", "alpha", "dim"]:
        assert getattr(args, flags.get(key, key)) == SALIENCY[key], key
    assert args.sign is None and args.smooth is None  # None: each method's own
    with pytest.raises(SystemExit):
        main(["saliency", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key in keys:
        assert f"default: {SALIENCY[key]})" in text, key
    for key in ("clip", "alpha", "dim"):
        assert f"default: {SALIENCY[key]:g})" in text, key
    for method in SALIENCY["sign"]:
        assert f"{method} {SALIENCY['sign'][method]}" in text, method
        assert f"{method} {SALIENCY['smooth'][method]:g}" in text, method


def test_default_method_display_flags_and_raw_maps(capsys, assets_dir, tmp_path):
    """No --method: Integrated Gradients. Display flags change the picture, never the
    --save-raw array, and the PNG's recipe records the display settings used."""
    import torch

    from dreamviz import load_model
    from dreamviz.attribution import saliency
    from dreamviz.defaults import SALIENCY
    from dreamviz.io import read_image

    code, out, _ = run(capsys, assets_dir / "coffee.jpg", "--size", "48", "--out", tmp_path)
    assert code == 0 and out == [str(tmp_path / f"coffee_{SALIENCY['method']}.png")]
    assert SALIENCY["method"] == "integrated_gradients"
    pictures = {}
    for name, flags in {
        "default": [],
        "signed": ["--sign", "signed", "--smooth", "0"],
        "sharp": ["--smooth", "0", "--clip", "100", "--alpha", "1", "--dim", "0"],
    }.items():
        png = tmp_path / f"{name}.png"
        code, out, _ = run(
            capsys, assets_dir / "coffee.jpg", "--size", "48", "--method", "gradient",
            "--save-raw", "-o", png, *flags,
        )  # fmt: skip
        assert code == 0 and out == [str(png), str(png.with_suffix(".npy"))]
        recipe = read_recipe(png)
        pictures[name] = (np.asarray(Image.open(png)), np.load(png.with_suffix(".npy")), recipe)
    default, signed, sharp = pictures.values()
    assert default[2]["display"]["sign"] == "abs" == SALIENCY["sign"]["gradient"]
    assert default[2]["display"]["smooth"] == SALIENCY["smooth"]["gradient"]
    assert signed[2]["display"]["sign"] == "signed" and sharp[2]["display"]["smooth"] == 0
    assert sharp[2]["display"]["dim"] == 0 and sharp[2]["display"]["alpha"] == 1
    assert not np.array_equal(default[0], signed[0]) and not np.array_equal(default[0], sharp[0])
    model = load_model(device="cpu")
    image = read_image(assets_dir / "coffee.jpg")[None]
    image = torch.nn.functional.interpolate(image, size=(48, 72), mode="bilinear", antialias=True)
    expected = saliency(model, image, None, "gradient", reduce=None)[0].numpy()
    for _, raw, _ in pictures.values():  # the raw gradient, whatever the display
        np.testing.assert_array_equal(raw, default[1])
        assert raw.shape == (3, 48, 72)
        np.testing.assert_allclose(raw, expected, rtol=1e-3, atol=1e-6)
