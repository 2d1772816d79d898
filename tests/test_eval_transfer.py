"""scripts/eval_transfer.py: the resumable judge table, on a tiny model (no judge weights)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import dreamviz

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "eval_transfer.py"


@pytest.fixture(scope="module")
def ev_mod():
    spec = importlib.util.spec_from_file_location("eval_transfer", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def tiny(tiny_net):
    return dreamviz.VisionModel(tiny_net(), input_size=32)


FLAGS = "--steps 2 --size 32 --transforms none"


def test_eval_writes_a_line_per_image_and_skips_them_on_rerun(ev_mod, tiny, tmp_path):
    out = str(tmp_path / "t.jsonl")
    ev = ev_mod.Eval(out, tiny, tiny, chunk=2, thumbs=str(tmp_path / "th"))
    made = ev.run("choice", "r", FLAGS, ["1", "2", "3"], [("3", 0)])
    rows = ev_mod.read_rows(out)
    assert made == 4 and len(rows) == 4
    assert {r["target"] for r in rows} == {"1", "2", "3", "3:0"}
    assert all((tmp_path / "th" / r["thumb"]).exists() for r in rows)
    assert all(0 <= r["judge_p"] <= 1 for r in rows if r["kind"] == "class")
    assert [r for r in rows if r["kind"] == "unit"][0]["ratio"] > 0
    # a fresh process (a new Eval) renders nothing that is already there
    again = ev_mod.Eval(out, tiny, tiny, chunk=2)
    assert again.run("choice", "r", FLAGS, ["1", "2", "3"], [("3", 0)]) == 0
    assert len(ev_mod.read_rows(out)) == 4
    # other flags are another recipe: all rendered
    assert again.run("choice", "r", FLAGS + " --lr 0.1", ["1"], []) == 1


def test_a_line_cut_short_by_a_kill_is_rendered_again(ev_mod, tiny, tmp_path):
    out = tmp_path / "t.jsonl"
    ev_mod.Eval(str(out), tiny, tiny, chunk=1).run("report", "r", FLAGS, ["1", "2"], [])
    lines = out.read_text().splitlines()
    out.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed mid-write
    made = ev_mod.Eval(str(out), tiny, tiny, chunk=1).run("report", "r", FLAGS, ["1", "2"], [])
    assert made == 1
    assert sorted(r["target"] for r in ev_mod.read_rows(str(out))) == ["1", "2"]


def test_summary_goals_and_the_choice_rule(ev_mod):
    table = {ev_mod.OLD: "a", "fast": "b", "slow": "c"}
    rows = []
    for name, flags, p, secs in (
        (ev_mod.OLD, "a", 0.5, 10.0),
        ("fast", "b", 0.995, 8.0),
        ("slow", "c", 0.999, 12.0),
    ):
        for s, spec in ev_mod.SETS.items():
            for c in spec["classes"]:
                rows.append(
                    dict(set=s, recipe=name, flags=flags, kind="class", target=c, judge_p=p,
                         judge_top1=True, own_p=p, own_top1=True, seconds=1.0)
                )  # fmt: skip
            for la, c in spec["units"]:
                rows.append(
                    dict(set=s, recipe=name, flags=flags, kind="unit", target=f"{la}:{c}",
                         ratio=20.0, seconds=1.0)
                )  # fmt: skip
        rows.append(dict(kind="time", recipe=name, flags=flags, round=0, seconds=secs))
    summary = ev_mod.summarize(rows, table)
    assert summary["report", "fast"]["time_ratio"] == pytest.approx(0.8)
    assert set(ev_mod.goals_met(summary["choice", "fast"])) == {
        "judge top-1",
        "judge median",
        "own min",
        "ratio",
        "time",
    }
    # "slow" has the higher p but misses the time goal: the rule never picks it
    assert ev_mod.choose(summary) == "fast"
    text = ev_mod.report(rows, table)
    assert "fast **(chosen)**" in text and "0.80x" in text
