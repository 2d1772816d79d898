"""RenderSettings: one frozen shape for a render's settings, from defaults.RENDER."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dreamviz import defaults, recipes
from dreamviz.errors import UsageError
from dreamviz.settings import RenderSettings


def test_fields_are_exactly_the_defaults_and_start_at_them():
    s = RenderSettings()
    assert list(s) == list(defaults.RENDER)  # no setting lives outside the one table
    for key, value in defaults.RENDER.items():
        assert s[key] == (tuple(value) if isinstance(value, list) else value), key


def test_make_refuses_a_typo_and_names_the_closest_setting():
    with pytest.raises(UsageError, match="'stpes'.*did you mean: steps"):
        RenderSettings.make(stpes=3)
    with pytest.raises(UsageError, match="lr_schedul"):
        recipes.settings(lr_schedul="cosine")


def test_frozen_and_replace_makes_a_changed_copy():
    s = RenderSettings.make(steps=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.steps = 11
    t = s.replace(steps=11, crop_scale=[0.2, 0.4])
    assert (s.steps, t.steps, t.crop_scale) == (10, 11, (0.2, 0.4))
    with pytest.raises(UsageError):
        s.replace(nope=1)


def test_recipe_round_trip_through_json_and_old_recipes_get_todays_defaults():
    s = RenderSettings.make(size=64, crop_scale_end=(0.1, 0.3), lr_schedule="constant")
    stored = json.loads(json.dumps(s.to_recipe()))
    assert stored["size"] == [64, 64] and stored["crop_scale_end"] == [0.1, 0.3]
    assert RenderSettings.from_recipe(stored) == s
    old = {k: v for k, v in stored.items() if k not in ("lr_schedule", "crop_scale_end")}
    old["no_longer_a_setting"] = 1
    back = RenderSettings.from_recipe(old)
    assert back.lr_schedule == defaults.RENDER["lr_schedule"] and back.crop_scale_end is None


def test_key_is_stable_and_changes_with_any_field():
    s = RenderSettings.make(size=64)
    assert s.key() == RenderSettings.make(size=[64, 64]).key()  # one shape whatever the input
    keys = {s.key()}
    for f in dataclasses.fields(RenderSettings):
        value = getattr(s, f.name)
        if isinstance(value, bool):
            other = not value
        elif isinstance(value, (int, float)):
            other = value + 1
        elif isinstance(value, tuple):
            other = tuple(v / 2 for v in value)
        elif value is None:
            other = (0.1, 0.2) if f.name == "crop_scale_end" else "x"
        else:
            other = value + "x"
        keys.add(s.replace(**{f.name: other}).key())
    assert len(keys) == len(dataclasses.fields(RenderSettings)) + 1


def test_it_reads_like_the_dict_recipes_had():
    s = RenderSettings.make(steps=7)
    assert s["steps"] == 7 and s.get("steps") == 7 and "lr" in s and dict(s)["steps"] == 7
    assert {**s}["steps"] == 7
    with pytest.raises(KeyError):
        s["nope"]
