"""Schedules over a render: the learning rate (warm-up, cosine decay) and the crop scale."""

from __future__ import annotations

import math

import pytest
import torch

from dreamviz import defaults, optim, recipes
from dreamviz.commands.recipe import command_line
from dreamviz.engine import render
from dreamviz.errors import UsageError
from dreamviz.transforms import Crops


def test_cosine_factor_warms_up_peaks_and_decays_to_the_floor():
    steps = 100
    f = [optim.lr_factor("cosine", s, steps) for s in range(1, steps + 1)]
    warm = round(defaults.LR_SCHEDULE["warmup"] * steps)
    assert f[0] == pytest.approx(1 / warm)
    assert f[warm - 1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:warm], f[1:warm]))  # rising
    assert all(a >= b for a, b in zip(f[warm:], f[warm + 1 :]))  # falling
    assert f[-1] == pytest.approx(defaults.LR_SCHEDULE["floor"])
    mid = warm + (steps - warm) // 2
    assert f[mid - 1] == pytest.approx(
        defaults.LR_SCHEDULE["floor"] + (1 - defaults.LR_SCHEDULE["floor"]) * 0.5, abs=0.03
    )
    assert all(optim.lr_factor("constant", s, steps) == 1.0 for s in range(1, steps + 1))
    assert optim.lr_factor("cosine", 1, 1) == 1.0  # one step: the full rate
    assert not any(math.isnan(x) for x in f)


def test_the_optimizer_sees_the_scheduled_rate(lite0):
    seen = []
    opt_cls = torch.optim.Adam

    class Spy(opt_cls):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    render(lite0, "blocks.3:0", size=32, steps=10, lr=0.2, lr_schedule="cosine", optimizer=Spy,
           transforms="none")  # fmt: skip
    expected = [0.2 * optim.lr_factor("cosine", s, 10) for s in range(1, 11)]
    assert seen == pytest.approx(expected)
    with pytest.raises(UsageError, match="lr_schedule"):
        render(lite0, "blocks.3:0", size=32, steps=1, lr_schedule="linear")


def test_crop_scale_moves_from_start_to_end_and_the_callers_crops_stay_as_they_were(lite0):
    c = Crops(views=2, scale=(0.8, 1.0), scale_end=(0.2, 0.4))
    assert c.current_scale() == (0.8, 1.0)
    c.progress = 1.0
    assert c.current_scale() == pytest.approx((0.2, 0.4))
    c.progress = 0.5
    assert c.current_scale() == pytest.approx((0.5, 0.7))
    gens = [torch.Generator().manual_seed(0)]
    sides = c.boxes(gens)[0, :, 2]
    assert bool(((sides >= 0.5) & (sides <= 0.7)).all())

    mine = Crops(views=2, scale=(0.6, 1.0), scale_end=(0.3, 0.5))
    render(lite0, "blocks.3:0", size=48, steps=3, transforms=mine)
    assert mine.size is None and mine.progress == 0.0  # the engine worked on a copy


def test_a_shrinking_crop_scale_changes_the_picture(lite0):
    plain = Crops(views=2, scale=(0.6, 1.0))
    moving = Crops(views=2, scale=(0.6, 1.0), scale_end=(0.2, 0.3))
    a = render(lite0, "blocks.3:0", size=48, steps=4, transforms=plain).images
    b = render(lite0, "blocks.3:0", size=48, steps=4, transforms=moving).images
    assert not torch.allclose(a, b)


def test_the_recipe_and_its_command_carry_both_schedules():
    s = recipes.settings(lr_schedule="cosine", transforms="crops", crop_scale_end=(0.3, 0.5))
    kw = recipes.render_kwargs({**s, "size": 32})
    assert kw["lr_schedule"] == "cosine"
    assert kw["transforms"].scale_end == (0.3, 0.5)
    line = command_line({"settings": s, "targets": [["class", "1"]]})
    assert "--lr-schedule cosine" in line and "--crop-scale-end 0.3,0.5" in line
