"""`dreamviz render`: defaults, recipe and --from, batches, errors, NaN and Ctrl-C (in-process)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import dreamviz.engine as render_module
from dreamviz.cli import main
from dreamviz.defaults import RENDER
from dreamviz.defaults import RENDER_UNIT as DEFAULT_UNIT
from dreamviz.errors import NonFiniteError
from dreamviz.io import read_recipe

SMALL = ["--size", "40", "--steps", "4", "--device", "cpu"]


def _run(capsys, *args):
    try:
        rc = main(["render", *args])
    except SystemExit as e:  # argparse rejects a flag value
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err


def _pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_defaults_recipe_and_from_bit_for_bit(tmp_path, capsys):
    first = tmp_path / "first.png"
    rc, out, err = _run(capsys, *SMALL, "-o", str(first))
    assert rc == 0 and out == [str(first)], err
    recipe = read_recipe(first)
    assert recipe["objective"] == f"channel({DEFAULT_UNIT})"
    assert recipe["model"] == "efficientnet_lite0"
    s = recipe["settings"]
    assert s["size"] == [40, 40] and s["steps"] == 4 and s["seed"] == 0
    assert s["param"] == "fft" and s["decorrelate"] is True
    assert s["transforms"] == RENDER["transforms"] and s["crops"] == RENDER["crops"]
    assert set(recipe["versions"]) >= {"dreamviz", "torch"}

    again = tmp_path / "again.png"
    rc, out, _ = _run(capsys, "--from", str(first), "-o", str(again))
    assert rc == 0 and out == [str(again)]
    assert np.array_equal(_pixels(first), _pixels(again))
    assert read_recipe(again)["settings"] == s

    other = tmp_path / "other.png"  # an explicit flag overrides the recipe
    rc, _, _ = _run(capsys, "--from", str(first), "--seed", "1", "-o", str(other))
    assert rc == 0 and read_recipe(other)["settings"]["seed"] == 1
    assert not np.array_equal(_pixels(first), _pixels(other))


def test_batch_of_units_and_classes_with_frames(tmp_path, capsys):
    out_dir = tmp_path / "many"
    rc, out, err = _run(
        capsys,
        *SMALL,
        "--unit",
        "blocks.3:1",
        "--class",
        "tabby",
        "--thresholds",
        "2",
        "--out",
        str(out_dir),
    )
    assert rc == 0, err
    names = [p.rsplit("/", 1)[1] for p in out]
    assert names == ["0_blocks.3_1_0002.png", "0_blocks.3_1.png", "1_tabby_0002.png", "1_tabby.png"]
    for path in out:
        assert _pixels(path).shape == (40, 40, 3)
    recipe = read_recipe(out_dir / "1_tabby.png")
    assert recipe["objective"] == "channel(blocks.3:1, image=0) + class_logit(tabby, image=1)"
    assert recipe["index"] == 1 and read_recipe(out[0])["frame"] == 2

    # --from one image of a batch re-renders the batch and writes that image
    again = tmp_path / "tabby.png"
    rc, out, _ = _run(capsys, "--from", str(out_dir / "1_tabby.png"), "-o", str(again))
    assert rc == 0 and out == [str(again)]
    assert np.array_equal(_pixels(again), _pixels(out_dir / "1_tabby.png"))


def test_diversity_and_non_square_size(tmp_path, capsys):
    rc, out, err = _run(
        capsys,
        "--size",
        "48x32",
        "--steps",
        "3",
        "--unit",
        "blocks.3:1",
        "--batch",
        "2",
        "--diversity",
        "0.5",
        "--out",
        str(tmp_path),
        "--param",
        "pixel",
        "--tv",
        "0.1",
    )
    assert rc == 0, err
    assert len(out) == 2 and _pixels(out[0]).shape == (32, 48, 3)
    assert "diversity(blocks.3)" in read_recipe(out[0])["objective"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--unit", "blocks.99:1"], "unknown layer"),
        (["--unit", "blocks.3:400"], "out of range"),
        (["--unit", "blocks.3:x"], "not an integer"),
        (["--class", "tabbyy"], "unknown class"),
        (["--class", "1000"], "out of range"),
        (["--steps", "0"], "--steps"),
        (["--size", "big"], "--size"),
        (["--lr", "-1"], "--lr"),
        (["--optimizer", "lbfgs"], "--optimizer"),
        (["--thresholds", "a,b"], "--thresholds"),
        (["--thresholds", "8"], "beyond --steps"),
        (["--unit", "blocks.3:1", "--unit", "blocks.3:2", "-o", "x.png"], "--out DIR"),
        (["--unit", "blocks.3:1", "--class", "tabby", "--diversity", "1"], "--diversity"),
        (["-o", "x.jpg"], ".png"),
        (["--from", "missing.png"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _run(capsys, *SMALL, *args)
    assert rc == 2
    assert out == []
    assert len(err.strip().splitlines()) == 1 and words in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_nan_saves_the_last_good_image_then_exits_1(tmp_path, monkeypatch, capsys):
    def nan_render(model, objective, **kw):
        raise NonFiniteError(
            "the objective became NaN at step 3", torch.full((1, 3, 40, 40), 0.25), 3
        )

    monkeypatch.setattr(render_module, "render", nan_render)
    path = tmp_path / "nan.png"
    rc, out, err = _run(capsys, *SMALL, "-o", str(path))
    assert rc == 1 and out == [str(path)]
    assert "NaN" in err and len(err.strip().splitlines()) == 1
    assert _pixels(path).max() == 64 and "step 3" in read_recipe(path)["stopped"]


def test_ctrl_c_saves_what_it_has_and_exits_130(tmp_path, monkeypatch, capsys):
    real = render_module.render

    def interrupted(model, objective, **kw):
        def stop(step, steps, values):
            if step == 2:
                raise KeyboardInterrupt

        return real(model, objective, **{**kw, "callback": stop})

    monkeypatch.setattr(render_module, "render", interrupted)
    path = tmp_path / "stopped.png"
    rc, out, err = _run(capsys, *SMALL, "-o", str(path))
    assert rc == 130 and out == [str(path)] and "interrupted" in err
    assert "after 2 steps" in read_recipe(path)["stopped"]
