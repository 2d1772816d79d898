"""Unit galleries: files and recipes, no-op reruns, resume, changed settings, batched vs single,
2-process torchrun vs 1 process, CLI errors. Tiny sizes and few steps keep it fast."""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dreamviz
from dreamviz import defaults, engine, gallery, io
from dreamviz.cli import build_parser, main
from dreamviz.commands import gallery as gallery_command
from dreamviz.errors import NonFiniteError, UsageError
from dreamviz.io import read_recipe

REPO = Path(__file__).resolve().parent.parent
FAST = dict(size=32, steps=4, progress=False)
CLI = dict(reproduce=gallery_command.reproduce)  # the page's commands, as the CLI shows them
LAYERS = ["blocks.3", "blocks.8"]


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def _records(out: Path) -> dict[str, dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {r["unit"]: r for r in manifest["units"]}


class _Counting:
    """Wraps the render engine and counts the units it is asked to render."""

    def __init__(self, monkeypatch, fail: bool = False):
        self.real = engine.render
        self.units = 0
        self.calls = 0
        self.fail = fail
        monkeypatch.setattr(engine, "render", self)

    def __call__(self, model, objective, **kw):
        if self.fail:
            raise AssertionError("render was called on a no-op rerun")
        self.calls += 1
        self.units += kw["batch"]
        return self.real(model, objective, **kw)


@pytest.fixture(scope="module")
def base(lite0, tmp_path_factory) -> Path:
    """2 layers x 2 channels + 1 class, batch 3 (so one batch mixes layers)."""
    out = tmp_path_factory.mktemp("gal") / "base"
    gallery.build(lite0, LAYERS, "0-1", classes="1", batch=3, out=out, **FAST, **CLI)
    return out


def _copy(base: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "g"))


def test_build_writes_pngs_with_recipes_manifest_and_page(base):
    recs = _records(base)
    assert list(recs) == ["blocks.3:0", "blocks.3:1", "blocks.8:0", "blocks.8:1", "logits:1"]
    manifest = json.loads((base / "manifest.json").read_text())
    assert manifest["complete"] is True
    for unit, r in recs.items():
        png = base / r["file"]
        assert Image.open(png).size == (32, 32)
        recipe = read_recipe(png)
        assert recipe["command"] == "render" and recipe["settings"]["seed"] == r["seed"]
        assert recipe["settings"]["size"] == [32, 32] and recipe["settings"]["steps"] == 4
        assert recipe["gallery"]["unit"] == unit and recipe["gallery"]["key"] == r["key"]
        assert r["settings"]["model"] == "efficientnet_lite0" and r["settings"]["steps"] == 4
        assert np.isfinite(r["objective"]) and r["seconds"] >= 0 and r["status"] == "ok"
        assert r["seed"] == gallery.unit_seed(0, gallery.Unit(r["layer"], r["index"]))
    # the activation ratio is the objective over the natural max, for channels only
    ch = recs["blocks.8:1"]
    assert ch["natural_max"] > 0
    assert ch["activation_ratio"] == pytest.approx(ch["objective"] / ch["natural_max"], rel=1e-4)
    assert recs["logits:1"]["activation_ratio"] is None
    assert recs["logits:1"]["class_name"] == "goldfish"
    assert len({r["seed"] for r in recs.values()}) == 5
    page = (base / "index.html").read_text()
    for r in recs.values():
        assert f'src="{r["file"]}?v=' in page  # relative paths: opens from disk
    assert page.count('loading="lazy"') == 5
    assert "goldfish" in page and "blocks.8" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "dreamviz render --from blocks.3/0001.png" in page
    assert _tmp_files(base) == []


def test_rerun_is_a_noop_that_rebuilds_the_pages(base, lite0, tmp_path, monkeypatch):
    out = _copy(base, tmp_path)
    (out / "index.html").unlink()
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    _Counting(monkeypatch, fail=True)
    result = gallery.build(lite0, LAYERS, "0-1", classes="1", batch=3, out=out, **FAST, **CLI)
    assert result.rendered == [] and len(result.skipped) == 5
    assert (out / "index.html").exists()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == mtimes
    assert _records(out) == _records(base)


def test_changed_settings_rerender_only_what_changed(base, lite0, tmp_path, monkeypatch):
    out = _copy(base, tmp_path)
    count = _Counting(monkeypatch)
    # one more channel per layer: only those 2 render; a different --batch changes no key
    result = gallery.build(lite0, LAYERS, "0-2", classes="1", batch=2, out=out, **FAST)
    assert sorted(result.rendered) == ["blocks.3:2", "blocks.8:2"] and count.units == 2
    assert len(_records(out)) == 7
    # other steps: every unit's key changes, so all render again
    count.units = 0
    kw = {**FAST, "steps": 5}
    result = gallery.build(lite0, LAYERS[:1], "0-1", batch=4, out=out, **kw)
    assert sorted(result.rendered) == ["blocks.3:0", "blocks.3:1"] and count.units == 2
    assert read_recipe(out / "blocks.3/0000.png")["settings"]["steps"] == 5
    assert list(_records(out)) == ["blocks.3:0", "blocks.3:1"]  # the manifest is this request


def test_interrupted_run_resumes_where_it_stopped(lite0, tmp_path, monkeypatch):
    out = tmp_path / "g"
    batches = []

    def stop_after_first(records):
        batches.append([r["unit"] for r in records])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gallery.build(lite0, "blocks.3", "0-5", batch=2, out=out, callback=stop_after_first, **FAST)
    assert batches == [["blocks.3:0", "blocks.3:1"]]
    assert sorted(p.name for p in (out / "blocks.3").iterdir()) == [
        "0000.json",
        "0000.png",
        "0001.json",
        "0001.png",
    ]
    partial = json.loads((out / "manifest.json").read_text())
    assert partial["complete"] is False and len(partial["units"]) == 2
    assert _tmp_files(out) == []

    # Ctrl-C inside a batch: render returns interrupted; nothing of that batch is saved
    real = engine.render

    def interrupted_render(model, objective, **kw):
        def cb(step, steps, values):
            if step == 2:
                raise KeyboardInterrupt

        return real(model, objective, **{**kw, "callback": cb})

    monkeypatch.setattr(engine, "render", interrupted_render)
    with pytest.raises(KeyboardInterrupt):
        gallery.build(lite0, "blocks.3", "0-5", batch=2, out=out, **FAST)
    assert not (out / "blocks.3/0002.png").exists() and _tmp_files(out) == []

    (out / "blocks.3/.0002.png.x1y2.tmp").write_bytes(b"half a png")  # left by a SIGKILL
    count = _Counting(monkeypatch)
    count.real = real
    result = gallery.build(lite0, "blocks.3", "0-5", batch=2, out=out, **FAST)
    assert result.rendered == [f"blocks.3:{c}" for c in range(2, 6)] and count.units == 4
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
    assert len(_records(out)) == 6 and _tmp_files(out) == []


def test_batched_units_match_single_renders(lite0, tmp_path):
    """ "Match": pixel correlation > 0.95 and final objective within 10 % at 48 px, 12 steps.

    Seeds make start and transforms identical; only the float rounding of batched convolutions
    differs, and gradient ascent amplifies it a little (most for class logits, which also jump
    when the transforms stop for the last steps). Two different units of one batch correlate
    far less, so the check can fail."""
    # single-view transforms: crops put N x 4 rows through each convolution, whose rounding
    # then differs more between batch sizes; the seeds match either way
    kw = dict(size=48, steps=12, progress=False, natural=None, transforms="standard", settle=0.15)
    units = dict(layers=["blocks.3", "blocks.8"], channels="4-5", classes="207")
    gallery.build(lite0, batch=5, out=tmp_path / "b", **units, **kw)
    gallery.build(lite0, batch=1, out=tmp_path / "s", **units, **kw)
    batched, single = _records(tmp_path / "b"), _records(tmp_path / "s")
    assert {r["batch_size"] for r in batched.values()} == {5}
    for unit, rb in batched.items():
        rs = single[unit]
        assert rb["seed"] == rs["seed"]
        assert abs(rb["objective"] - rs["objective"]) <= 0.1 * abs(rs["objective"]), unit
        a, b = _pixels(tmp_path / "b" / rb["file"]), _pixels(tmp_path / "s" / rs["file"])
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95, unit
    a = _pixels(tmp_path / "b" / batched["blocks.3:4"]["file"])
    b = _pixels(tmp_path / "b" / batched["blocks.3:5"]["file"])
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.5


def test_png_renders_again_from_its_recipe(lite0, tmp_path):
    """The page's `dreamviz render --from PNG` command gives the same pixels (batch 1)."""
    out = tmp_path / "g"
    gallery.build(lite0, "blocks.3", "7", classes="1", batch=1, out=out, natural=None, **FAST)
    for rel in ("blocks.3/0007.png", "logits/0001.png"):
        again = tmp_path / "again.png"
        assert main(["render", "--from", str(out / rel), "-o", str(again)]) == 0
        assert np.array_equal(_pixels(out / rel), _pixels(again)), rel


def test_one_nonfinite_unit_does_not_sink_its_batch(lite0, tmp_path, monkeypatch):
    bad = gallery.unit_seed(0, gallery.Unit("blocks.3", 1))
    real = engine.render

    def render(model, objective, **kw):
        if bad in kw["seed"]:
            raise NonFiniteError("nan", last_good=torch.full((kw["batch"], 3, 32, 32), 0.5), step=3)
        return real(model, objective, **kw)

    monkeypatch.setattr(engine, "render", render)
    gallery.build(lite0, "blocks.3", "0-2", batch=3, out=tmp_path, natural=None, **FAST)
    recs = _records(tmp_path)
    assert [r["status"] for r in recs.values()] == ["ok", "non-finite at step 3", "ok"]
    assert recs["blocks.3:1"]["objective"] is None and recs["blocks.3:0"]["batch_size"] == 1
    assert (tmp_path / "blocks.3/0001.png").exists()


def test_unit_selection(lite0):
    sel = gallery.select_units(lite0, ["blocks.3"], "random:5", classes="goldfish,3-4", seed=7)
    chans = [u.index for u in sel if u.layer == "blocks.3"]
    assert len(chans) == 5 and chans == sorted(chans) and all(0 <= c < 40 for c in chans)
    assert sel == gallery.select_units(lite0, ["blocks.3"], "random:5", "goldfish,3-4", seed=7)
    assert chans != [u.index for u in gallery.select_units(lite0, ["blocks.3"], "random:5")]
    assert [u.index for u in sel if u.is_class] == [1, 3, 4]
    assert len(gallery.select_units(lite0, ["blocks.3"], "all")) == 40
    for spec, msg in [
        ("0-40", "channel 40 is out of range for blocks.3; use 0..39"),
        ("5-3", "backwards"),
        ("random:41", "has 40"),
        ("x", "bad channel"),
    ]:
        with pytest.raises(UsageError, match=msg):
            gallery.select_units(lite0, ["blocks.3"], spec)
    with pytest.raises(UsageError, match="unknown layer"):
        gallery.select_units(lite0, ["blocks.99"], "0")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layer", "blocks.3", "--channels", "0-99"], "out of range for blocks.3"),
        (["--layer", "blocks.nope"], "unknown layer"),
        (["--layer", "blocks.3", "--channels", "1,,2"], "--channels '1,,2' has an empty entry"),
        (["--classes", "1,"], "--classes '1,' has an empty entry"),
        (["--layer", "blocks.3", "--natural", "/no/photos"], "'/no/photos' does not exist"),
        ([], "nothing to render; give --layer LAYER and/or --classes 0-15"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    rc = main(["gallery", "--device", "cpu", "--out", str(tmp_path / "g"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_cli_prints_the_paths_it_writes(tmp_path, capsys):
    out = tmp_path / "g"
    argv = ["gallery", "--device", "cpu", "--layer", "blocks.3", "--channels", "0-1"]
    argv += ["--size", "32", "--steps", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out.split()
    assert printed[-2:] == [str(out / "manifest.json"), str(out / "index.html")]
    assert str(out / "blocks.3/0001.png") in printed
    assert main(argv) == 0  # rerun: nothing rendered, pages still printed
    assert capsys.readouterr().out.split() == printed[-2:]


def test_page_css_and_js_are_package_data(base):
    """The page inlines page.css and page.js, files of the package (installed with the
    wheel), into the page.html template; no copy of them lives in Python code."""
    page = (base / "index.html").read_text()
    data = resources.files("dreamviz.gallery")
    for name in ("page.css", "page.js"):
        text = data.joinpath(name).read_text(encoding="utf-8")
        assert len(text) > 1000 and text in page, name
    template = data.joinpath("page.html").read_text(encoding="utf-8")
    assert template.startswith("<!DOCTYPE html>") and "${css}" in template
    code = "".join(p.read_text() for p in Path(gallery.__file__).parent.glob("*.py"))
    for fragment in ("grid-template-columns", "querySelector", "<!DOCTYPE", "<div id="):
        assert fragment not in code, fragment


def test_natural_auto_uses_the_sample_photos_inside_the_package(base):
    """natural="auto" (the default) reads the CC0 samples shipped in dreamviz/data/photos, so an
    installed wheel has its activation ratios without the repository's assets/."""
    photos = io.sample_photos()
    assert [p.name for p in photos] == ["chelsea.jpg", "coffee.jpg"]
    package = Path(dreamviz.__file__).resolve().parent
    assert all(p.resolve().is_relative_to(package) for p in photos)
    assert (package / "data/photos/LICENSE.txt").is_file()
    assert gallery.photos("auto") == photos
    channels = [r for r in _records(base).values() if r["kind"] == "channel"]
    assert len(channels) == 4 and all(r["activation_ratio"] is not None for r in channels)


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_natural_folder_without_photos_is_a_usage_error(lite0, tmp_path, kind, assets_dir):
    folder = tmp_path / "photos"
    if kind == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("not a photo")
    out = tmp_path / "g"
    with pytest.raises(UsageError, match=re.escape(repr(str(folder)))) as e:
        gallery.build(lite0, "blocks.3", "0", out=out, natural=folder, **FAST)
    assert len(str(e.value).splitlines()) == 1
    assert not out.exists()  # refused before anything is written
    assert gallery.photos(None) == [] and gallery.photos(assets_dir) == sorted(
        assets_dir.glob("*.jpg")
    )
    assert gallery.photos(assets_dir / "coffee.jpg") == [assets_dir / "coffee.jpg"]


def test_reproduce_and_command_are_the_callers(lite0, tmp_path):
    """Without ``reproduce`` the page shows the settings only; with it, its text for each
    unit's recipe (first line: the copied command); ``command`` goes to header and manifest."""
    plain = tmp_path / "plain"
    gallery.build(lite0, "blocks.3", "2", out=plain, natural=None, **FAST)
    page = (plain / "index.html").read_text()
    assert "dreamviz render" not in page and "built with" not in page
    assert json.loads((plain / "manifest.json").read_text())["command"] is None

    seen = []

    def reproduce(recipe):
        seen.append(recipe)
        return f"first {recipe['gallery']['file']}\nsecond {recipe['settings']['seed']}"

    out = tmp_path / "g"
    gallery.build(lite0, "blocks.3", "2", out=out, natural=None, reproduce=reproduce,
                  command="make it so", **FAST)  # fmt: skip
    assert seen == [read_recipe(out / "blocks.3/0002.png")]  # the PNG's own recipe
    page = (out / "index.html").read_text()
    assert '"from": "first blocks.3/0002.png"' in page
    assert f'"command": "second {seen[0]["settings"]["seed"]}"' in page
    assert "built with <code>make it so</code>" in page
    assert json.loads((out / "manifest.json").read_text())["command"] == "make it so"


def test_the_page_commands_render_the_unit_again(base):
    """The CLI's ``reproduce``: ``render --from`` the PNG, then the explicit command, whose
    flags give back the recipe's settings."""
    recipe = read_recipe(base / "blocks.8/0001.png")
    short, explicit = gallery_command.reproduce(recipe).splitlines()
    assert short == "dreamviz render --from blocks.8/0001.png -o blocks.8_1.png"
    args = build_parser().parse_args(shlex.split(explicit)[1:])
    assert args.targets == [["unit", "blocks.8:1"]] and args.output == "blocks.8_1.png"
    for key, value in recipe["settings"].items():
        if getattr(args, key, None) is not None:
            assert getattr(args, key) == value, key
    assert args.seed == recipe["settings"]["seed"] != 0


def test_gallery_command_line_parses_back_to_the_same_gallery():
    argv = ["gallery", "--model", "resnet18", "--weights", "w.pt", "--layer", "layer2"]
    argv += ["--layer", "layer3", "--channels", "random:8", "--classes", "tabby,3"]
    argv += ["--size", "96x64", "--steps", "9", "--lr", "0.02", "--optimizer", "sgd"]
    argv += ["--param", "pixel", "--no-decorrelate", "--transforms", "none", "--settle", "0"]
    argv += ["--amp", "--seed", "5", "--batch", "3", "--natural", "none", "--out", "a b"]
    parser = build_parser()
    args = parser.parse_args(argv)
    line = gallery_command.command_line(args)
    assert line.startswith("dreamviz gallery ") and "'a b'" in line
    again = parser.parse_args(shlex.split(line)[1:])
    assert vars(again) == vars(args)


def test_defaults_come_from_defaults_py():
    """build() and ``dreamviz gallery`` take their defaults from defaults.GALLERY, then RENDER:
    build's render keywords default to None, which means the settings' value, itself the
    defaults'."""
    params = inspect.signature(gallery.build).parameters
    used = gallery._render_settings(None)
    args = build_parser().parse_args(["gallery"])
    api_names = {"param": "param_kind"}
    for key, value in {**defaults.RENDER, **defaults.GALLERY}.items():
        name = api_names.get(key, key)
        if key in used and key not in ("batch", "size"):
            assert used[key] == value, key
        if name in params and key not in used:
            assert params[name].default == value, key
        if key in vars(args):
            assert getattr(args, key) == value, key
    size = defaults.GALLERY["size"]
    assert used.size == (size, size) and args.size == size
    assert used.batch == 1  # one image per unit; GALLERY's batch is units per pass
    assert params["batch"].default == defaults.GALLERY["batch"]


def test_every_render_setting_is_in_the_gallery_key(lite0):
    """The resume key hashes every field of the render settings: crops and crop_scale were
    once left out, and a subclass with a new field changes it too."""
    import dataclasses

    from dreamviz.gallery import store
    from dreamviz.settings import RenderSettings

    unit = gallery.Unit("blocks.3", 0)
    base = RenderSettings.make(size=32)

    def key(render):
        return store.unit_key(store.settings(lite0, render), unit, 0)

    for name, other in [("crops", 2), ("crop_scale", (0.3, 0.5)), ("lr_schedule", "constant"),
                        ("crop_scale_end", (0.2, 0.3)), ("tv", 0.1)]:  # fmt: skip
        assert key(base.replace(**{name: other})) != key(base), name
    assert key(base.replace(steps=base.steps)) == key(base)
    Extended = dataclasses.make_dataclass(
        "Extended", [("new_knob", int, dataclasses.field(default=0))], bases=(RenderSettings,),
        frozen=True,
    )  # fmt: skip
    assert key(Extended(size=32, new_knob=1)) != key(Extended(size=32, new_knob=2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_equal_one(lite0, tmp_path):
    args = ["--layer", "blocks.3", "--layer", "blocks.8", "--channels", "0-2", "--classes", "1"]
    args += ["--size", "32", "--steps", "3", "--batch", "2", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    cmd += [f"--master_port={_free_port()}", str(REPO / "scripts/make_gallery.py")]
    two = tmp_path / "two"
    proc = subprocess.run(
        [*cmd, *args, "--out", str(two)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = tmp_path / "one"
    gallery.build(
        lite0, LAYERS, "0-2", classes="1", size=32, steps=3, batch=2, out=one, progress=False
    )
    pngs = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(pngs) == 7 and pngs == sorted(p.relative_to(two) for p in two.rglob("*.png"))
    for rel in pngs:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel

    def strip(records):
        return {
            u: {k: v for k, v in r.items() if k not in gallery.TIMING_FIELDS}
            for u, r in records.items()
        }

    assert strip(_records(one)) == strip(_records(two))
    # each PNG was written (and printed) once, by one rank; rank 0 wrote the pages once
    # (the two ranks share stdout, so lines may interleave: count names, not lines)
    assert proc.stdout.count(".png") == 7
    assert proc.stdout.count("index.html") == 1 and proc.stdout.count("manifest.json") == 1
