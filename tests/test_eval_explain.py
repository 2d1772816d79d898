"""scripts/eval_explain.py and scripts/eval_localization.py on a tiny model: a line per item,
resumed on rerun, the choice rule applied to the choice part only; and the photo set itself."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import dreamviz

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _module(name: str):
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses and the scripts' own imports look it up
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(SCRIPTS))
    return mod


@pytest.fixture(scope="module")
def mods():
    return _module("photoset"), _module("eval_explain"), _module("eval_localization")


@pytest.fixture
def tiny(tiny_net):
    return dreamviz.VisionModel(tiny_net(channels=8), input_size=32)


def _cases(photoset, n=3):
    g = torch.Generator().manual_seed(0)
    return [
        photoset.Case(f"p{i}", ("choice", "report")[i % 2], torch.rand(3, 32, 32, generator=g),
                      i % 10, (4, 4, 20, 20), "x")
        for i in range(n)
    ]  # fmt: skip


def test_explain_eval_writes_a_line_per_photo_and_layer_and_resumes(mods, tiny, tmp_path):
    photoset, ev, _ = mods
    out = tmp_path / "e.jsonl"
    cases = _cases(photoset)
    assert ev.run(out, tiny, cases, layers=["2", "4"], ks=(1, 4), draws=3) == 6
    assert ev.run(out, tiny, cases, layers=["2", "4"], ks=(1, 4), draws=3) == 0  # resumed
    rows = ev.read_rows(out)
    assert len(rows) == 6 and {r["part"] for r in rows} == {"choice", "report"}
    for r in rows:
        d = r["drops"]
        assert set(d) == {*ev.METHODS, "active", "random"}
        # the exact single-channel drop is the largest single-channel drop there is
        assert d["ablation"]["1"] >= max(d["random"]["1"], d["active"]["1"]) - 1e-6
    assert ev.choose(ev.rows_of(rows, "choice")) in ev.METHODS
    text = ev.table(rows, "report")
    assert "| 2 | 1 |" in text and "| 4 | 4 |" in text


def test_explain_eval_rule_picks_the_method_that_beats_both_baselines(mods):
    _, ev, _ = mods
    drops = {"ig": {"1": 0.1}, "grad_x_act": {"1": 0.5}, "ablation": {"1": 0.4},
             "ig_blur": {"1": 0.0}, "active": {"1": 0.3}, "random": {"1": 0.05}}  # fmt: skip
    rows = [{"case": "a", "part": "choice", "layer": "L", "drops": drops}]
    assert ev.choose(rows) == "grad_x_act"


def test_localization_eval_scores_and_resumes(mods, tiny, tmp_path):
    photoset, _, loc = mods
    out = tmp_path / "l.jsonl"
    cands = {"gradient": ("gradient", {}), "gradcam@2": ("gradcam", {"layer": "2"})}
    assert loc.run(out, tiny, _cases(photoset, 2), cands) == 4
    assert loc.run(out, tiny, _cases(photoset, 2), cands) == 0
    rows = loc.read_rows(out)
    assert all(r["distance"] >= 0 and r["mass"] >= 0 for r in rows)
    assert loc.choose(rows) in cands and "within 15 px (report)" in loc.table(rows, "report")


def test_localization_rule_counts_hits_then_mass(mods):
    _, _, loc = mods
    rows = [
        {"case": "a", "part": "choice", "method": "m1", "distance": 0.0, "mass": 1.1},
        {"case": "b", "part": "choice", "method": "m1", "distance": 30.0, "mass": 1.1},
        {"case": "a", "part": "choice", "method": "m2", "distance": 10.0, "mass": 1.0},
        {"case": "b", "part": "choice", "method": "m2", "distance": 0.0, "mass": 1.0},
        {"case": "c", "part": "report", "method": "m1", "distance": 0.0, "mass": 9.0},
    ]
    assert loc.choose(rows) == "m2"  # two hits beat one; the report row does not count


def test_the_photo_set_has_both_parts_boxes_inside_and_a_class_each(mods):
    photoset, _, _ = mods
    cases = photoset.load()
    assert len(cases) >= 24
    parts = [c.part for c in cases]
    assert parts.count("choice") >= 12 and parts.count("report") >= 12
    assert len({c.name for c in cases}) == len(cases)
    for c in cases:
        x0, y0, x1, y1 = c.box
        assert c.image.shape == (3, 224, 224) and 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224
        assert 0 <= c.target < 1000
