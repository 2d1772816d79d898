"""Image I/O: every common input kind, EXIF orientation, recipes, stills, animations, atomicity."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from dreamviz.errors import UsageError
from dreamviz.io import (
    atomic_path,
    pil_to_tensor,
    read_image,
    read_recipe,
    save_animation,
    save_image,
    save_png,
    to_pil,
)


def _png16(path, arr: np.ndarray, color_type: int) -> None:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit RGB)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + tag + data + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_grayscale_becomes_rgb(tmp_path):
    Image.new("L", (5, 4), 51).save(tmp_path / "g.png")
    t = read_image(tmp_path / "g.png")
    assert t.shape == (3, 4, 5) and torch.allclose(t, torch.full_like(t, 0.2))


def test_rgba_composited_over_white(tmp_path):
    im = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    im.putpixel((1, 0), (255, 0, 0, 255))
    im.putpixel((2, 0), (0, 0, 0, 128))
    im.save(tmp_path / "a.png")
    t = read_image(tmp_path / "a.png")
    assert torch.allclose(t[:, 1, 0], torch.ones(3))  # transparent -> white
    assert torch.allclose(t[:, 0, 1], torch.tensor([1.0, 0, 0]))  # opaque red stays
    assert torch.allclose(t[:, 0, 2], torch.full((3,), 127 / 255), atol=1 / 255)  # half black


def test_16bit_grayscale_keeps_precision(tmp_path):
    arr = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    _png16(tmp_path / "g16.png", arr, color_type=0)
    t = read_image(tmp_path / "g16.png")
    assert t.shape == (3, 1, 4)
    assert torch.allclose(t[0, 0], torch.tensor(arr[0] / 65535.0, dtype=torch.float32))
    assert abs(t[0, 0, 1] * 255 - round(float(t[0, 0, 1]) * 255)) > 0.05  # finer than 8 bits


def test_16bit_rgb_and_gray_alpha(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint16)
    rgb[..., 0], rgb[..., 1] = 65535, 32768
    _png16(tmp_path / "rgb16.png", rgb, color_type=2)
    t = read_image(tmp_path / "rgb16.png")
    assert t.shape == (3, 2, 3)
    assert torch.allclose(t[:, 0, 0], torch.tensor([1.0, 0.5, 0.0]), atol=1 / 255)
    la = np.zeros((2, 2, 2), np.uint16)
    la[..., 0] = 0
    la[0, :, 1] = 65535  # top row opaque black, bottom transparent
    _png16(tmp_path / "la16.png", la, color_type=4)
    t = read_image(tmp_path / "la16.png")
    assert torch.allclose(t[:, 0], torch.zeros(3, 2)) and torch.allclose(t[:, 1], torch.ones(3, 2))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path, orientation):
    # an asymmetric picture: one bright pixel in the top-left corner of a 6 x 4 image
    upright = Image.new("RGB", (6, 4), (0, 0, 0))
    upright.putpixel((0, 0), (255, 255, 255))
    inverse = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    stored = upright if inverse is None else upright.transpose(inverse)  # FLIP_LEFT_RIGHT == 0
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "o.png", exif=exif.tobytes())
    t = read_image(tmp_path / "o.png")
    assert t.shape == (3, 4, 6)
    assert t[0, 0, 0] == 1 and t[0].sum() == 1


def test_webp_and_jpeg_read(tmp_path):
    im = Image.new("RGB", (9, 7), (10, 200, 30))
    im.save(tmp_path / "x.webp", lossless=True)
    im.save(tmp_path / "x.jpg", quality=95)
    for name in ("x.webp", "x.jpg"):
        t = read_image(tmp_path / name)
        assert t.shape == (3, 7, 9)
        assert torch.allclose(t[:, 3, 4], torch.tensor([10, 200, 30]) / 255.0, atol=0.03)


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((1, 0), 1)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    t = read_image(tmp_path / "p.png")
    assert torch.allclose(t[:, 0, 0], torch.ones(3)) and torch.allclose(t[:, 0, 1], torch.eye(3)[0])


def test_read_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_image(tmp_path / "none.png")
    with pytest.raises(UsageError, match="folder"):
        read_image(tmp_path)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(UsageError, match="cannot read"):
        read_image(tmp_path / "bad.jpg")


def test_png_recipe_and_still_formats(tmp_path):
    img = torch.rand(3, 10, 12)
    recipe = {"command": "dream", "steps": 3}
    save_png(tmp_path / "a.png", img, recipe)
    assert read_recipe(tmp_path / "a.png") == recipe
    assert torch.allclose(read_image(tmp_path / "a.png"), img, atol=0.5 / 255 + 1e-6)
    save_image(tmp_path / "b.jpg", img, recipe)
    with Image.open(tmp_path / "b.jpg") as im:
        assert im.format == "JPEG" and json.loads(im.info["comment"]) == recipe
    save_image(tmp_path / "c.webp", img)
    with Image.open(tmp_path / "c.webp") as im:
        assert im.format == "WEBP" and im.size == (12, 10)
    with pytest.raises(UsageError):
        save_image(tmp_path / "d.bmpx", img)


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animation(tmp_path, suffix):
    frames = [torch.full((3, 8, 10), v) for v in (0.0, 0.5, 1.0)]
    path = save_animation(tmp_path / f"anim{suffix}", frames, fps=10)
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.size == (10, 8) and im.is_animated
        im.seek(2)
        assert np.asarray(im.convert("L")).mean() > 240
    with pytest.raises(UsageError):
        save_animation(tmp_path / "anim.png", frames)


def test_outputs_get_normal_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = save_png(tmp_path / "p.png", torch.rand(3, 4, 4))
    finally:
        os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        open(tmp, "wb").write(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_pil_round_trip():
    t = torch.rand(3, 5, 6)
    back = pil_to_tensor(to_pil(t))
    assert back.shape == t.shape and (back - t).abs().max() <= 0.5 / 255 + 1e-6
