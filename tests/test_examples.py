"""Dataset examples: the streaming top-K equals a brute-force pass, receptive fields are exact
on a stack of convolutions, a killed run resumes, shards merge to one process's result, bad
files are skipped and counted, the page opens in Chromium, and the model is left untouched."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dreamviz.cli import main
from dreamviz.dataset import examples, load, merge, page_examples, receptive_fields, scan
from dreamviz.dataset.images import Geometry, list_images, preprocess
from dreamviz.errors import DreamvizError, UsageError
from dreamviz.hooks import Capture
from dreamviz.io import read_image
from dreamviz.models import VisionModel

SIZE = 32
FAST = dict(workers=0, progress=False)


def _tiny(tiny_net) -> VisionModel:
    return VisionModel(tiny_net(channels=6), input_size=SIZE, name="tiny", weights="seed0")


def _folder(path, n: int = 10, seed: int = 0):
    """``n`` random images of assorted sizes and formats, some in a subfolder."""
    g = np.random.default_rng(seed)
    (path / "sub").mkdir(parents=True)
    for i in range(n):
        h, w = int(g.integers(24, 60)), int(g.integers(24, 60))
        pixels = g.integers(0, 256, (h, w, 3), dtype=np.uint8)
        name = ["a{}.png", "sub/b{}.jpg", "c{}.webp"][i % 3].format(i)
        Image.fromarray(pixels).save(path / name, quality=95)
    return path


def _brute(model, folder, files, layer, channels):
    """Every image alone: (channels x images) spatial maxima and flat positions."""
    values, positions = [], []
    with Capture(model, [layer]) as cap, torch.no_grad():
        for rel in files:
            x = preprocess(read_image(folder / rel), (SIZE, SIZE))[None]
            a = cap(x)[layer][0, channels].flatten(1)
            v, p = a.max(1)
            values.append(v)
            positions.append(p)
    return torch.stack(values, 1), torch.stack(positions, 1)


def test_top_k_equals_a_brute_force_pass(tiny_net, tmp_path):
    model = _tiny(tiny_net)
    folder = _folder(tmp_path / "imgs", 11)
    files = list_images(folder)
    assert len(files) == 11 and any(f.startswith("sub/") for f in files)
    result = examples(model, "3", folder, "0-5", 3, out=tmp_path / "out", batch_size=4, **FAST)
    values, positions = _brute(model, folder, files, "3", list(range(6)))
    for c in range(6):
        order = sorted(range(len(files)), key=lambda i: (-float(values[c, i]), i))[:3]
        got = result.data["channels"][str(c)]
        assert [e["image"] for e in got] == [files[i] for i in order]
        assert [e["activation"] for e in got] == pytest.approx(
            [float(values[c, i]) for i in order], rel=1e-5
        )
        grid = result.data["grid"][1]
        assert [e["position"] for e in got] == [
            list(divmod(int(positions[c, i]), grid)) for i in order
        ]
        for e in got:  # the crop is the field, in the model's pixels
            x0, y0, x1, y1 = e["field"]
            with Image.open(tmp_path / "out" / e["crop"]) as im:
                assert im.size == (x1 - x0, y1 - y0)
    assert (tmp_path / "out" / "index.html").is_file()
    assert result.read == 11 and not result.skipped


def _field(i: int, side: int = SIZE) -> tuple[int, int]:
    """conv3 p1, conv3 s2 p1, conv5 p2: output i sees input 2i-6 .. 2i+6 (by hand)."""
    return max(0, 2 * i - 6), min(side, 2 * i + 7)


@pytest.mark.parametrize("relu", [False, True])
def test_receptive_field_of_a_known_stack_is_exact(relu):
    torch.manual_seed(0)
    act = [nn.ReLU()] if relu else []
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        *act,
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        *act,
        nn.Conv2d(4, 4, 5, padding=2),
    )
    model = VisionModel(net, input_size=SIZE)
    layer = str(len(net) - 1)
    few = [(0, 0), (3, 7), (8, 8), (15, 15), (15, 0), (2, 14)]  # computed one by one
    every = [(y, x) for y in range(16) for x in range(16)]  # a row and a column, checked
    for positions in (few, every):
        fields = receptive_fields(model, layer, positions, (SIZE, SIZE))
        for y, x in positions:
            (x0, x1), (y0, y1) = _field(x), _field(y)
            assert fields[(y, x)] == (x0, y0, x1, y1), (y, x)


def test_a_field_that_is_not_separable_is_computed_exactly():
    """Each output position (y, x) reads input pixel (y, (x + y) mod W) alone: its rows are
    not those of its neighbours' columns, so the check catches the separable guess."""

    class Skew(nn.Module):
        def forward(self, x):
            rows = [x[:, :, y].roll(-y, dims=-1) for y in range(x.shape[2])]
            return torch.stack(rows, 2)

    model = VisionModel(nn.Sequential(nn.Identity(), Skew()), input_size=12)
    positions = [(y, x) for y in range(12) for x in range(12)]
    fields = receptive_fields(model, "1", positions, (12, 12))
    for y, x in positions:
        col = (x + y) % 12
        assert fields[(y, x)] == (col, y, col + 1, y + 1)


def test_a_global_layer_sees_the_whole_image(tiny_net):
    model = _tiny(tiny_net)  # layer 6 (flatten) follows a global average pool
    assert receptive_fields(model, "6", [(0, 0)], (SIZE, SIZE)) == {(0, 0): (0, 0, SIZE, SIZE)}


def test_boxes_map_back_to_the_original_image():
    g = Geometry((100, 200), (50, 50))  # resized to 50 x 100, cropped at x = 25
    assert g.resized == (50, 100) and g.offset == (0, 25)
    assert g.to_original([0, 0, 50, 50]) == [50, 0, 150, 100]
    assert g.to_original([10, 5, 11, 6]) == [70, 10, 72, 12]


def test_shards_merge_to_one_process_result(tiny_net, tmp_path):
    model = _tiny(tiny_net)
    folder = _folder(tmp_path / "imgs", 13, seed=1)
    files = list_images(folder)
    kw = dict(top=4, sample=5, batch_size=3)
    one = scan(model, "3", folder, files, range(6), **kw)
    shards = [scan(model, "3", folder, files, range(6), rank=r, world=3, **kw) for r in range(3)]
    assert sorted(s.read for s in shards) != [0, 0, 13]  # every rank had work
    merged = merge(shards)
    for name in ("values", "ids", "pos", "sample_keys", "sample_ids", "sample_values"):
        assert torch.equal(getattr(merged, name), getattr(one, name)), name
    assert merged.read == one.read == 13
    assert len(one.sample_ids) == 5


def test_a_killed_run_resumes_where_it_stopped(tiny_net, tmp_path):
    model = _tiny(tiny_net)
    folder = _folder(tmp_path / "imgs", 12, seed=2)
    kw = dict(top=2, batch_size=2, checkpoint_every=4, **FAST)
    whole = examples(model, "3", folder, "0-2", out=tmp_path / "whole", **kw)

    class Killed(Exception):
        pass

    def kill_after_5(state):
        if state.batches == 5:  # 10 images done, the checkpoint holds 8
            raise Killed

    out = tmp_path / "out"
    with pytest.raises(Killed):
        examples(model, "3", folder, "0-2", out=out, callback=kill_after_5, **kw)
    assert not (out / "examples.json").exists()
    assert list((out / ".checkpoint").iterdir())
    (out / ".checkpoint" / ".rank0-of-1.pt.x.tmp").write_bytes(b"half")  # SIGKILL mid-write
    seen = []
    again = examples(
        model, "3", folder, "0-2", out=out, callback=lambda s: seen.append(s.read), **kw
    )
    assert seen == [10, 12]  # resumed after image 8: two batches
    assert again.data["channels"] == whole.data["channels"]
    assert again.data["quantile_examples"] == whole.data["quantile_examples"]
    assert not (out / ".checkpoint").exists()
    seen.clear()
    rerun = examples(model, "3", folder, "0-2", out=out, callback=lambda s: seen.append(1), **kw)
    assert rerun.up_to_date and not seen  # no model work
    (folder / "new.png").write_bytes((folder / "a0.png").read_bytes())
    changed = examples(model, "3", folder, "0-2", out=out, **kw)
    assert not changed.up_to_date and changed.read == 13


def test_bad_files_are_skipped_and_counted(tiny_net, tmp_path):
    model = _tiny(tiny_net)
    folder = _folder(tmp_path / "imgs", 4)
    good = (folder / "a0.png").read_bytes()
    (folder / "empty.png").write_bytes(b"")
    (folder / "sub" / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "text.jpg").write_text("not an image\n")
    result = examples(model, "3", folder, "0", 2, out=tmp_path / "out", **FAST)
    assert result.read == 4
    assert sorted(p for p, _ in result.skipped) == ["empty.png", "sub/truncated.png", "text.jpg"]
    assert "skipped 3 unreadable" in result.summary()
    data = load(tmp_path / "out")
    assert len(data["images"]["skipped"]) == 3 and data["images"]["read"] == 4


def test_one_line_errors_and_nothing_written(tiny_net, tmp_path):
    model = _tiny(tiny_net)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_text("no")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    with pytest.raises(DreamvizError, match="none of the 1 images"):
        examples(model, "3", bad, out=out, **FAST)
    with pytest.raises(UsageError, match="holds no images"):
        examples(model, "3", tmp_path / "empty", out=out, **FAST)
    with pytest.raises(UsageError, match="does not exist"):
        examples(model, "3", tmp_path / "nope", out=out, **FAST)
    folder = _folder(tmp_path / "imgs", 2)
    with pytest.raises(UsageError, match="out of range"):
        examples(model, "3", folder, "0-99", out=out, **FAST)
    with pytest.raises(UsageError, match="top"):
        examples(model, "3", folder, top=0, out=out, **FAST)
    assert not out.exists()


def test_the_model_is_left_untouched(tiny_net, tmp_path):
    model = _tiny(tiny_net)
    model.train()
    model.net[0].weight.requires_grad_(True)
    before = [(m.training, len(m._forward_hooks)) for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    folder = _folder(tmp_path / "imgs", 3)
    examples(model, "3", folder, "0", out=tmp_path / "out", **FAST)

    def interrupt(state):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        examples(model, "3", folder, "1", out=tmp_path / "o2", callback=interrupt, **FAST)
    assert [(m.training, len(m._forward_hooks)) for m in model.modules()] == before
    assert [p.requires_grad for p in model.parameters()] == grads
    assert not (tmp_path / "o2" / "examples.json").exists()  # Ctrl-C: a checkpoint only


def test_cli_on_the_bundled_model(lite0, assets_dir, tmp_path, monkeypatch, capsys):
    import dreamviz.dataset

    monkeypatch.setattr(dreamviz.dataset, "load_model", lambda *a, **k: lite0)
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = Image.open(assets_dir / "chelsea.jpg").convert("RGB")
    photo.crop((0, 0, 300, 300)).save(folder / "left.jpg")
    photo.crop((150, 0, 451, 300)).resize((120, 120)).save(folder / "right.png")
    (folder / "zero.webp").write_bytes(b"")
    out = tmp_path / "ex"
    argv = ["examples", "--layer", "blocks.4", "--images", str(folder), "--channels", "0-3",
            "--top", "2", "--workers", "0", "--quiet", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    stdout, err = capsys.readouterr()
    assert stdout.split() == [str(out / "examples.json"), str(out / "index.html")]
    assert err.strip() == "dreamviz: read 2 images, skipped 1 unreadable (zero.webp)"
    data = json.loads((out / "examples.json").read_text())
    assert data["layer"] == "blocks.4" and data["preprocess"]["size"] == [224, 224]
    assert set(data["channels"]) == {"0", "1", "2", "3"}
    for items in data["channels"].values():
        acts = [e["activation"] for e in items]
        assert acts == sorted(acts, reverse=True) and len(items) == 2
        for e in items:
            w, h = (300, 300) if e["image"] == "left.jpg" else (120, 120)
            x0, y0, x1, y1 = e["box"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert x1 - x0 < w  # blocks.4 sees a part of the photo, not all of it
    assert "--layer blocks.4" in data["command"]
    page = (out / "index.html").read_text()
    assert page.count("<img") == sum(map(len, data["channels"].values())) + sum(
        map(len, data["quantile_examples"].values())
    )
    items = page_examples(out, tmp_path / "elsewhere")
    assert items["blocks.4:0"][0]["src"] == "../ex/" + data["channels"]["0"][0]["crop"]


def test_page_opens_in_chromium_without_broken_images(tiny_net, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("Chromium not found: install it (apt-get install chromium)")
    folder = _folder(tmp_path / "imgs", 6)
    result = examples(_tiny(tiny_net), "3", folder, "0-2", 2, out=tmp_path / "out", **FAST)
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
           "--dump-dom", result.index.as_uri()]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert 'data-broken="[]"' in dom, dom[-500:]
    assert dom.count("<img") >= 6


def _srcs(page) -> list:
    """The files the example strips of a page link, resolved beside the page."""
    import re

    strips = re.findall(r'<div class="ex">(.*?)</div>', page.read_text(), re.S)
    return [page.parent / s for strip in strips for s in re.findall(r'src="([^"]+)"', strip)]


def test_the_gallery_shows_each_units_examples(tiny_net, tmp_path):
    from dreamviz import gallery

    model = _tiny(tiny_net)
    folder = _folder(tmp_path / "imgs", 5)
    examples(model, "3", folder, "0-2", 2, out=tmp_path / "ex", **FAST)
    shown = page_examples(tmp_path / "ex", tmp_path / "gal", model="tiny")
    result = gallery.build(model, ["3"], "1-3", size=32, steps=1, natural=None, progress=False,
                           out=tmp_path / "gal", examples=shown)  # fmt: skip
    srcs = _srcs(result.index)
    assert len(srcs) == 4  # channels 1 and 2 have examples, 3 has none
    assert all(s.is_file() for s in srcs)
    with pytest.raises(UsageError, match="are of tiny, not lite"):
        page_examples(tmp_path / "ex", tmp_path / "gal", model="lite")
    with pytest.raises(UsageError, match="no examples.json"):
        page_examples(tmp_path / "imgs", tmp_path / "gal")


def test_explain_shows_the_ranked_channels_examples(lite0, assets_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = Image.open(assets_dir / "chelsea.jpg").convert("RGB")
    photo.crop((0, 0, 300, 300)).save(folder / "left.jpg")
    photo.crop((150, 0, 451, 300)).save(folder / "right.jpg")
    photo.resize((120, 80)).save(tmp_path / "cat.jpg")
    common = ["--workers", "0", "--quiet", "--device", "cpu"]
    made = ["examples", "--layer", "blocks.4", "--images", str(folder), "--top", "1",
            "--quantiles", "none", "--out", str(tmp_path / "ex"), *common[:3]]  # fmt: skip
    assert main(made) == 0
    explain = ["explain", str(tmp_path / "cat.jpg"), "--examples", str(tmp_path / "ex"), "--top",
               "2", "--steps", "2", "--render-steps", "1", "--render-size", "16",
               "--device", "cpu", "--out", str(tmp_path / "e")]  # fmt: skip
    assert main(explain) == 0
    srcs = _srcs(tmp_path / "e" / "index.html")
    assert len(srcs) == 2 and all(s.is_file() for s in srcs)  # one example per ranked channel
    data = json.loads((tmp_path / "e" / "explain.json").read_text())
    assert data["layer"] == "blocks.4"  # the examples' layer is the default
    capsys.readouterr()
    assert main([*explain[:-1], str(tmp_path / "e2"), "--layer", "blocks.10"]) == 2
    assert "are of blocks.4, not blocks.10" in capsys.readouterr().err
    assert not (tmp_path / "e2").exists()


def test_torchrun_two_processes_equal_one(tmp_path):
    import os
    import socket
    import sys

    folder = _folder(tmp_path / "imgs", 7)
    (folder / "empty.png").write_bytes(b"")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["examples", "--layer", "blocks.1", "--images", str(folder), "--channels", "0-3",
            "--top", "3", "--sample", "4", "--batch-size", "2", "--workers", "0", "--quiet",
            "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={port}", "-m", "dreamviz.cli"]  # fmt: skip
    two = subprocess.run([*run, *args, "--out", str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("examples.json") == 1  # rank 0 alone writes and prints
    one = subprocess.run([sys.executable, "-m", "dreamviz.cli", *args, "--out",
                          str(tmp_path / "one")], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = load(tmp_path / "one"), load(tmp_path / "two")
    for key in ("channels", "quantile_examples", "images"):
        assert a[key] == b[key], key
    assert len(a["images"]["skipped"]) == 1
    crops = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert crops and crops == sorted(
        p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.png")
    )
    for rel in crops:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    assert not (tmp_path / "two" / ".checkpoint").exists()


def test_receptive_field_passes_halve_when_they_run_out_of_memory(tiny_net):
    """The field passes go through the batching chunker: a pass out of memory is halved and
    redone, and the fields are those of passes that fit."""

    class Tight(torch.nn.Module):  # before the layer: cannot take more than 2 rows at once
        def forward(self, x):
            if x.shape[0] > 2:
                raise torch.OutOfMemoryError("CPU out of memory (simulated)")
            return x

    tight = tiny_net()
    tight.insert(1, Tight())
    positions = [(y, x) for y in range(3) for x in range(3)]
    got = receptive_fields(VisionModel(tight, input_size=16), "4", positions, (16, 16), 8, True)
    want = receptive_fields(
        VisionModel(tiny_net(), input_size=16), "3", positions, (16, 16), 1, True
    )
    assert got == want and len(got) == 9
