"""`dreamviz dream`: outputs, recipe, orientation, input kinds, animations, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dreamviz.cli import main
from dreamviz.commands.dream import parse_layer_weights
from dreamviz.errors import UsageError
from dreamviz.io import read_image, read_recipe

FAST = ["--octaves", "1", "--steps", "1"]


@pytest.fixture
def cli(lite0, monkeypatch, capsys):
    """Run the CLI in-process with the session's model; returns (rc, stdout lines, stderr)."""
    monkeypatch.setattr("dreamviz.commands.load_from_args", lambda args: lite0)

    def run(*argv):
        rc = main(["dream", *map(str, argv)])
        out, err = capsys.readouterr()
        return rc, out.splitlines(), err

    return run


def _photo(assets_dir, size=(120, 80)) -> Image.Image:
    return Image.open(assets_dir / "chelsea.jpg").convert("RGB").resize(size)


def _corr(a, b) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_dream_writes_png_with_recipe(cli, assets_dir, tmp_path):
    src = tmp_path / "cat.png"
    _photo(assets_dir, (97, 75)).save(src)
    out = tmp_path / "sub" / "dreamed.png"
    rc, lines, err = cli(
        src,
        "--octaves",
        "2",
        "--steps",
        "2",
        "--layer",
        "blocks.6",
        "--layer",
        "blocks.10:0.5",
        "--seed",
        "5",
        "-o",
        out,
    )
    assert rc == 0, err
    assert lines == [str(out)]
    with Image.open(out) as im:
        assert im.size == (97, 75)
    recipe = read_recipe(out)
    assert recipe["objective"] == "layer(blocks.6) + 0.5*layer(blocks.10)"
    assert recipe["octaves"] == 2 and recipe["seed"] == 5 and recipe["lr"] == 1.5
    assert recipe["model"] == "efficientnet_lite0" and "torch" in recipe["versions"]
    assert list(tmp_path.glob("sub/.*tmp")) == []


def test_exif_rotated_jpeg_keeps_displayed_orientation(cli, assets_dir, tmp_path):
    photo = _photo(assets_dir, (120, 80))
    stored = photo.transpose(Image.Transpose.ROTATE_90)  # stored 80 wide x 120 high
    exif = Image.Exif()
    exif[0x0112] = 6  # display: rotate 90 degrees clockwise -> back to 120 x 80
    src = tmp_path / "rotated.jpg"
    stored.save(src, quality=95, exif=exif.tobytes())
    out = tmp_path / "rotated_dream.png"
    rc, lines, err = cli(src, *FAST, "-o", out)
    assert rc == 0, err
    result = read_image(out)
    assert result.shape == (3, 80, 120)
    upright = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)
    assert _corr(result, upright) > 0.8
    assert _corr(result, upright.flip(-1)) < 0.5  # not mirrored


@pytest.mark.parametrize("kind", ["L", "RGBA", "I;16"])
def test_grayscale_rgba_16bit_inputs(cli, assets_dir, tmp_path, kind):
    photo = _photo(assets_dir, (71, 90))
    if kind == "L":
        im = photo.convert("L")
    elif kind == "RGBA":
        im = photo.convert("RGBA")
        im.putalpha(Image.linear_gradient("L").resize(im.size))  # transparent at the top
    else:
        arr = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
        im = Image.fromarray(arr)  # uint16 -> mode I;16
        assert im.mode == "I;16"
    src = tmp_path / f"in_{kind.replace(';', '')}.png"
    im.save(src)
    out = tmp_path / "out.png"
    rc, lines, err = cli(src, *FAST, "-o", out)
    assert rc == 0, err
    result = read_image(out)
    assert result.shape == (3, 90, 71)
    assert _corr(result, read_image(src)) > 0.8


def test_zoom_animation(cli, assets_dir, tmp_path):
    src = tmp_path / "cat.jpg"
    _photo(assets_dir, (72, 64)).save(src)
    out = tmp_path / "anim.gif"
    rc, lines, err = cli(src, *FAST, "--frames", "3", "--zoom", "1.1", "--rotate", "2", "-o", out)
    assert rc == 0, err
    frames = [tmp_path / f"anim_{i:04d}.png" for i in range(3)]
    assert lines == [*map(str, frames), str(out)]
    assert read_recipe(frames[2])["frame"] == 2
    with Image.open(out) as gif:
        assert gif.n_frames == 3 and gif.size == (72, 64)


def test_guide_and_unit_and_class(cli, assets_dir, tmp_path):
    src, guide = tmp_path / "cat.png", tmp_path / "coffee.png"
    _photo(assets_dir, (64, 64)).save(src)
    Image.open(assets_dir / "coffee.jpg").resize((80, 60)).save(guide)
    out = tmp_path / "g.png"
    rc, _, err = cli(src, *FAST, "--guide", guide, "--layer", "blocks.10", "-o", out)
    assert rc == 0, err
    assert read_recipe(out)["objective"] == "guide(blocks.10)"
    rc, _, err = cli(src, *FAST, "--unit", "blocks.10:3", "--class", "tabby", "-o", out)
    assert rc == 0, err
    assert read_recipe(out)["objective"].startswith("channel(blocks.10:3) + class_logit(tabby")


@pytest.mark.parametrize(
    "make, args, message",
    [
        (None, [], "does not exist"),
        ("garbage", [], "cannot read"),
        ("photo", ["--layer", "blocks.99"], "unknown layer 'blocks.99'"),
        ("photo", ["--layer", "blocks.9:x"], "is not a weight"),
        ("photo", ["--unit", "blocks.9"], "needs a channel"),
        ("photo", ["--zoom", "1.1"], "--frames"),
        ("tiny", [], "too small"),
    ],
)
def test_errors_are_one_line_exit_2_no_output(cli, assets_dir, tmp_path, make, args, message):
    src = tmp_path / "in.png"
    if make == "garbage":
        src.write_bytes(b"not an image at all")
    elif make == "photo":
        _photo(assets_dir, (64, 64)).save(src)
    elif make == "tiny":
        Image.new("RGB", (20, 20)).save(src)
    out = tmp_path / "out.png"
    rc, lines, err = cli(src, *FAST, *args, "-o", out)
    assert rc == 2
    assert lines == []
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_parse_layer_weights():
    assert parse_layer_weights(["blocks.6", "blocks.10:0.5"]) == {"blocks.6": 1.0, "blocks.10": 0.5}
    with pytest.raises(UsageError):
        parse_layer_weights([":2"])
