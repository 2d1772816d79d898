"""Results show themselves in notebooks (valid PNG and HTML, with captions); progress bars and
live previews change no image; dreamviz imports and runs without IPython or matplotlib."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import types
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

import dreamviz
from dreamviz import display
from dreamviz.objectives import channel, class_logit, diversity

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png(data: bytes) -> Image.Image:
    assert data.startswith(PNG_SIGNATURE) and data.endswith(b"IEND\xaeB`\x82")  # whole
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes every byte: a truncated or corrupt PNG raises
    return image


class Page(HTMLParser):
    """The HTML of a repr: its <img> sources and its text, checked to be well nested."""

    VOID = {"img", "br", "meta", "input"}

    def __init__(self, text: str):
        super().__init__()
        self.stack, self.images, self.text = [], [], []
        self.feed(text)
        self.close()
        assert self.stack == [], f"unclosed tags: {self.stack}"

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_html(text: str) -> Page:
    page = Page(text)
    assert page.images
    for attrs in page.images:
        head, data = attrs["src"].split(",", 1)
        assert head == "data:image/png;base64"
        image = png(base64.b64decode(data))
        assert image.size == (int(attrs["width"]), int(attrs["height"]))
    return page


@pytest.fixture(scope="module")
def rendered(lite0):
    obj = dreamviz.channel("blocks.3", 1, image=0) + dreamviz.class_logit("tabby", image=1)
    return dreamviz.render(lite0, obj, batch=2, size=48, steps=3, progress=False)


def test_a_render_shows_a_grid_with_the_unit_its_value_and_the_class_seen(rendered):
    picture = png(rendered._repr_png_())
    assert picture.size[0] > 2 * 48 and picture.size[1] > 48
    page = check_html(rendered._repr_html_())
    assert len(page.images) == 2
    text = " ".join(page.text)
    assert "channel(blocks.3:1)" in text and "class_logit(tabby)" in text
    assert f"objective {rendered.final[0].item():.4g}" in text
    top = rendered.predictions
    assert len(top) == 2 and all(0 < p <= 1 for _, p in top)
    assert f"seen as {top[1][0]} ({top[1][1]:.0%})" in text
    assert "RenderResult(2 x 3 x 48 x 48 images" in repr(rendered)


def test_to_pil_save_and_show(rendered, tmp_path, monkeypatch):
    one = rendered.to_pil(1)
    assert one.size == (48, 48)
    assert np.array_equal(np.asarray(one), np.asarray(dreamviz.io.to_pil(rendered.images[1])))
    grid = rendered.to_pil()  # the tiles at their own size (the repr enlarges small ones)
    shown = png(rendered._repr_png_()).size
    # the repr enlarges small tiles: taller, and at least as wide (captions can set the width)
    assert 2 * 48 < grid.size[0] <= shown[0] and grid.size[1] < shown[1]
    path = rendered.save(tmp_path / "grid.png")
    assert Image.open(path).size == rendered.to_pil().size
    assert Image.open(rendered.save(tmp_path / "one.jpg", 0)).size == (48, 48)
    shown = []
    monkeypatch.setattr(Image.Image, "show", lambda self, *a, **k: shown.append(self.size))
    rendered.show()  # no notebook: the system's image viewer
    assert shown == [rendered.to_pil().size]
    with pytest.raises(dreamviz.UsageError, match="index"):
        rendered.to_pil(5)


def test_large_results_are_shown_small(lite0):
    big = dreamviz.render(lite0, "blocks.1:0", size=(40, 1100), steps=0, progress=False)
    assert png(big._repr_png_()).size[0] <= display.DISPLAY["max_side"] + 64
    assert big.to_pil().size == (1100, 40)  # full size where asked for


@pytest.mark.parametrize(
    "objective, n, labels",
    [
        (lambda: channel("blocks.3", 1), 2, ["channel(blocks.3:1)"] * 2),
        (
            lambda: channel("b", 1, image=0) + class_logit("tabby", image=1) - 0.5 * diversity("b"),
            2,
            ["channel(b:1)", "class_logit(tabby)"],
        ),
        (
            lambda: 2 * (channel("b", 1, image=0) + channel("b", 2)),
            1,
            ["2*(channel(b:1) + channel(b:2))"],
        ),
        (
            lambda: channel("b", 1, image=1),
            3,
            ["channel(b:1, image=1)", "channel(b:1)", "channel(b:1, image=1)"],
        ),
        (
            lambda: channel("b", 1, image=0) - (channel("b", 2, image=1) + channel("b", 3)),
            2,
            ["channel(b:1)", "- (channel(b:2) + channel(b:3))"],
        ),
    ],
)
def test_each_image_is_captioned_with_its_own_terms(objective, n, labels):
    """The objective says each image's label (Objective.labels), read from its terms, not
    from its printed name."""
    assert objective().labels(n) == labels


def test_a_dream_shows_itself(lite0, assets_dir):
    photo = Image.open(assets_dir / "chelsea.jpg").resize((96, 64))
    result = dreamviz.dream(lite0, photo, "blocks.4", octaves=1, steps=2, progress=False)
    page = check_html(result._repr_html_())
    assert "layer(blocks.4)" in " ".join(page.text) and "seen as" in " ".join(page.text)
    assert png(result._repr_png_()).size[0] >= 96
    assert result.to_pil().size == (96, 64)
    assert "DreamResult(3 x 64 x 96 image" in repr(result)


def test_saliency_result_is_the_maps_with_panels(lite0, assets_dir):
    photo = assets_dir / "chelsea.jpg"
    plain = dreamviz.saliency(lite0, photo, "tabby", method="gradient")
    result = dreamviz.saliency(lite0, photo, "tabby", method="gradient", result=True)
    assert torch.equal(result.maps, plain)
    # tensor-like reading, as code written for the plain tensor does
    assert result.shape == plain.shape and len(result) == 1
    assert torch.equal(result[0], plain[0]) and torch.equal(next(iter(result)), plain[0])
    assert np.array_equal(np.asarray(result), plain.numpy())
    assert result.info.targets == ["tabby (281)"] and result.info.internal_batch_size >= 1
    p = result.probabilities[0]
    with torch.no_grad():
        logits = lite0(dreamviz.io.as_batch(photo, lite0))
    assert p == pytest.approx(float(logits.softmax(1)[0, 281]), rel=1e-5)
    page = check_html(result._repr_html_())
    assert len(page.images) == 3  # photo, map, overlay
    text = " ".join(page.text)
    assert "gradient: tabby (281)" in text and f"p = {p:.1%}" in text
    h, w = plain.shape[-2:]
    assert result.to_pil(0).size[1] == h and result.overlay().size == (w, h)
    assert result.heatmap().size == (w, h)
    assert png(result._repr_png_()).size[1] > 64
    maps, info = dreamviz.saliency(lite0, photo, "tabby", method="gradient", return_info=True)
    assert torch.equal(maps, plain) and info.targets == result.info.targets


def test_saliency_result_of_raw_maps_and_units(lite0, assets_dir):
    photo = Image.open(assets_dir / "chelsea.jpg").resize((96, 64))
    raw = dreamviz.saliency(lite0, photo, "blocks.4:3", "smoothgrad", reduce=None, samples=2)
    result = dreamviz.saliency(
        lite0, photo, "blocks.4:3", "smoothgrad", reduce=None, samples=2, result=True
    )
    assert torch.equal(result.maps, raw) and result.shape == (1, 3, 64, 96)
    assert result.probabilities == [None]
    text = " ".join(check_html(result._repr_html_()).text)
    assert "channel(blocks.4:3)" in text and "seen as" in text


# --------------------------------------------------------------------------- progress, preview


class FakeNotebook:
    """IPython.display stand-in: records every picture shown and every in-place update."""

    def __init__(self, monkeypatch):
        self.shown, self.updates = [], []
        ipython = types.ModuleType("IPython")
        shell = types.SimpleNamespace(kernel=object())
        ipython.get_ipython = lambda: shell
        disp = types.ModuleType("IPython.display")
        disp.display = self.display
        ipython.display = disp
        monkeypatch.setitem(sys.modules, "IPython", ipython)
        monkeypatch.setitem(sys.modules, "IPython.display", disp)
        monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))

    def display(self, obj, display_id=False):
        self.shown.append(obj)
        notebook = self

        class Handle:
            def update(self, obj):
                notebook.updates.append(obj)

        return Handle() if display_id else None


def test_in_notebook_and_interactive(monkeypatch):
    assert not display.in_notebook() and not display.interactive()
    assert display.wants_progress(None) is False  # pytest is a script: no bar by default
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    assert display.interactive() and display.wants_progress(None) is True
    assert display.wants_progress(False) is False
    monkeypatch.delattr(sys, "ps1")
    FakeNotebook(monkeypatch)
    assert display.in_notebook() and display.interactive()
    with pytest.raises(dreamviz.UsageError, match="progress"):
        display.wants_progress("yes")
    with pytest.raises(dreamviz.UsageError, match="preview"):
        display.preview_every(-1)


def test_render_progress_and_preview_change_no_pixel(lite0, monkeypatch, capsys):
    kw = dict(size=40, steps=6, batch=2, seed=3)
    quiet = dreamviz.render(lite0, "blocks.2:4", progress=False, **kw)
    assert capsys.readouterr().err == ""
    nb = FakeNotebook(monkeypatch)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # no widgets: the text bar
    monkeypatch.setattr(display, "DISPLAY", {**display.DISPLAY, "progress_delay": 0})
    watched = dreamviz.render(lite0, "blocks.2:4", progress=True, preview=2, **kw)
    assert torch.equal(watched.images, quiet.images)
    assert torch.equal(watched.history, quiet.history)
    assert len(nb.shown) == 1 and len(nb.updates) == 3  # steps 4 and 6, then the result
    assert all(isinstance(p, Image.Image) for p in nb.shown + nb.updates[:-1])
    assert nb.updates[-1] is watched  # the preview became the result, with its captions
    assert "6/6" in capsys.readouterr().err  # the bar counted every step


def test_dream_and_saliency_progress_change_nothing(lite0, assets_dir, monkeypatch, capsys):
    photo = Image.open(assets_dir / "chelsea.jpg").resize((90, 60))
    kw = dict(octaves=2, steps=2, octave_scale=1.2)
    quiet = dreamviz.dream(lite0, photo, "blocks.4", progress=False, **kw)
    maps = dreamviz.saliency(lite0, photo, method="smoothgrad", samples=3, progress=False)
    nb = FakeNotebook(monkeypatch)
    monkeypatch.setattr(display, "DISPLAY", {**display.DISPLAY, "progress_delay": 0})
    watched = dreamviz.dream(lite0, photo, "blocks.4", progress=True, preview=1, **kw)
    assert torch.equal(watched.image, quiet.image)
    assert len(nb.shown) == 1 and len(nb.updates) >= 4  # one handle, redrawn in place
    assert nb.updates[-1] is watched and isinstance(nb.updates[-2], Image.Image)
    shown = dreamviz.saliency(lite0, photo, method="smoothgrad", samples=3, progress=True)
    assert torch.equal(shown, maps)
    err = capsys.readouterr().err
    assert "dream" in err and "smoothgrad" in err and "3/3" in err


def test_previews_are_quiet_outside_a_notebook(lite0):
    assert display.make_preview(4, "render") is None
    quiet = dreamviz.render(lite0, "blocks.2:4", size=32, steps=2, progress=False)
    shown = dreamviz.render(lite0, "blocks.2:4", size=32, steps=2, progress=False, preview=1)
    assert torch.equal(quiet.images, shown.images)


def test_importing_dreamviz_imports_no_notebook_machinery(tmp_path):
    """Where IPython and matplotlib are installed, importing dreamviz still loads neither."""
    script = """
import sys
import dreamviz, dreamviz.display, dreamviz.gallery
heavy = ("IPython", "ipywidgets", "ipykernel", "matplotlib")
loaded = [m for m in sys.modules if m.split(".")[0] in heavy]
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_dreamviz_needs_neither_ipython_nor_matplotlib(tmp_path):
    """Import, render, save and draw the reprs with IPython, ipywidgets and matplotlib made
    unimportable; none of them is imported along the way."""
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("IPython", "ipywidgets", "matplotlib", "ipykernel"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import torch
torch.set_num_threads(1)
import dreamviz
model = dreamviz.load_model(device="cpu")
r = dreamviz.render(model, "blocks.1:0", size=32, steps=2, progress=True, preview=1)
assert r._repr_png_().startswith(b"\\x89PNG") and "<img" in r._repr_html_()
r.save({str(tmp_path / "r.png")!r})
s = dreamviz.saliency(model, torch.rand(1, 3, 32, 32), method="gradient", result=True)
assert "<img" in s._repr_html_()
bad = [m for m in sys.modules if m.split(".")[0] in ("IPython", "ipywidgets", "matplotlib")]
assert not bad, bad
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the dreamviz under test, not a checkout in the working directory
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_a_gallery_shows_its_first_units_and_links_its_page(lite0, tmp_path, monkeypatch):
    out = tmp_path / "gal"
    kw = dict(size=32, steps=2, progress=False, natural=None, out=out)
    result = dreamviz.gallery.build(lite0, "blocks.3", "0-4", **kw)
    page = check_html(result._repr_html_())
    assert len(page.images) == 5
    text = " ".join(page.text)
    assert "blocks.3:0" in text and "objective" in text and "5 units (5 rendered" in text
    assert 'href="' + str(out / "index.html") in result._repr_html_()
    assert png(result._repr_png_()).size[0] > 5 * 32
    monkeypatch.setattr(display, "DISPLAY", {**display.DISPLAY, "max_images": 2})
    page = check_html(result._repr_html_())
    assert len(page.images) == 2 and "(first 2 of 5)" in " ".join(page.text)
    assert "GalleryResult(out=" in repr(result)
    (out / "blocks.3" / "0000.png").unlink()  # a deleted PNG is left out, not an error
    assert len(check_html(result._repr_html_()).images) == 2


def test_predictions_is_one_attribute_and_the_old_calls_still_work(rendered, lite0, assets_dir):
    """predictions: an attribute on every result; RenderResult.predictions() and
    DreamResult.prediction(), the spellings before, warn for one release."""
    top = rendered.predictions
    with pytest.warns(DeprecationWarning, match="attribute"):
        assert rendered.predictions() == top
    photo = dreamviz.io.resize(dreamviz.io.as_image(assets_dir / "chelsea.jpg"), (48, 64))
    dreamed = dreamviz.dream(lite0, photo, octaves=1, steps=1, tile=None, progress=False)
    assert len(dreamed.predictions) == 1 and 0 < dreamed.predictions[0][1] <= 1
    with pytest.warns(DeprecationWarning, match=r"predictions\[0\]"):
        assert dreamed.prediction() == dreamed.predictions[0]
    maps = dreamviz.saliency(lite0, photo[None], method="gradient", result=True, progress=False)
    assert isinstance(maps.predictions, list) and 0 < maps.predictions[0][1] <= 1
