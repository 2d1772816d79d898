"""The units of a gallery: what a unit is, its seed, its recipe, and which units a request names.

A unit is one channel of a layer, or one class (layer ``logits``). Its seed hashes the base seed
and its name, so it does not depend on the batch the unit is rendered in; its recipe, stored in
its PNG renders it again (:func:`dreamviz.recipes.make`; ``dreamviz render --from PNG``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from .. import defaults, recipes
from ..errors import UsageError, split_list
from ..hooks import LOGITS, check_layer, num_channels
from ..models import VisionModel
from ..objectives import parse
from ..settings import RenderSettings


@dataclass(frozen=True)
class Unit:
    """One channel of a layer, or one class (``layer == "logits"``)."""

    layer: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.index}"

    @property
    def is_class(self) -> bool:
        return self.layer == LOGITS

    @property
    def target(self) -> list[str]:
        """The unit as a recipe target: ``["unit", "blocks.3:5"]`` or ``["class", "207"]``."""
        return ["class", str(self.index)] if self.is_class else ["unit", self.name]

    def objective(self, image: int | None = None):
        kind, text = self.target
        return parse(text, image=image, kind=kind)


def _hash_int(*parts) -> int:
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def unit_seed(seed: int, unit: Unit) -> int:
    """The seed of one unit: a hash of the base seed and the unit, independent of batching."""
    return _hash_int("dreamviz-gallery", seed, unit.name)


def parse_indices(
    spec, n: int | None, *, what: str, where: str, seed: int = 0, resolve: Callable | None = None
) -> list[int]:
    """``"all"``, ``"0-63"``, ``"0,5,9-12"``, ``"random:32"`` (or ints / a list) -> indices.

    ``random:K`` draws K distinct indices, sorted, from a generator seeded by ``seed`` and
    ``where``, so the same command picks the same units. ``resolve`` maps other tokens (class
    names) to an index.
    """
    if spec is None:
        spec = "all"
    if isinstance(spec, int):
        tokens: list = [spec]
    elif isinstance(spec, str):
        tokens = split_list(spec, what, "0,5,9-12")  # "1,,2" is a typo, not "1,2"
    else:
        tokens = list(spec)
    if not tokens:
        raise UsageError(f"empty {what} list for {where}; use all, 0-15 or random:16")
    top = f"0..{n - 1}" if n else "a non-negative index"
    out: list[int] = []
    for tok in tokens:
        if isinstance(tok, bool):
            raise UsageError(f"{what} {tok!r} is not an index")
        if isinstance(tok, int):
            out.append(tok)
            continue
        tok = str(tok).strip()
        low = tok.lower()
        if low == "all":
            if n is None:
                raise UsageError(f"{where} has no channel dimension; give {what}s explicitly")
            out.extend(range(n))
        elif low.startswith("random:"):
            k_text = tok.split(":", 1)[1]
            if not k_text.strip().isdigit() or int(k_text) < 1:
                raise UsageError(f"{tok!r}: write random:K with K >= 1, e.g. random:16")
            k = int(k_text)
            if n is None:
                raise UsageError(f"{where} has no channel dimension; give {what}s explicitly")
            if k > n:
                raise UsageError(f"{tok} asks for {k} {what}s but {where} has {n}; use K <= {n}")
            g = torch.Generator().manual_seed(_hash_int("random", seed, where))
            out.extend(sorted(torch.randperm(n, generator=g)[:k].tolist()))
        elif re.fullmatch(r"\d+\s*-\s*\d+", tok):
            a, b = (int(x) for x in tok.split("-"))
            if b < a:
                raise UsageError(f"{what} range {tok!r} is backwards; write {b}-{a}")
            out.extend(range(a, b + 1))
        elif tok.isdigit():
            out.append(int(tok))
        elif resolve is not None:
            out.append(resolve(tok))
        else:
            raise UsageError(f"bad {what} {tok!r} for {where}; use all, 0-15, 3,7,9 or random:16")
    for i in out:
        if i < 0 or (n is not None and i >= n):
            raise UsageError(f"{what} {i} is out of range for {where}; use {top}")
    return list(dict.fromkeys(out))


def select_units(
    model: VisionModel,
    layers: Iterable[str],
    channels=defaults.GALLERY["channels"],
    classes=None,
    seed: int = defaults.RENDER["seed"],
) -> list[Unit]:
    """The units of a gallery, in page order: each layer's channels, then the classes."""
    units: list[Unit] = []
    for layer in layers:
        if layer == LOGITS:
            units += select_units(model, [], classes=channels, seed=seed)
            continue
        n = num_channels(check_layer(model, layer))
        for c in parse_indices(channels, n, what="channel", where=layer, seed=seed):
            units.append(Unit(layer, c))
    if classes is not None:
        n = model.num_classes
        picks = parse_indices(
            classes, n, what="class", where=model.name, seed=seed, resolve=model.class_index
        )
        units += [Unit(LOGITS, c) for c in picks]
    return list(dict.fromkeys(units))


def render_settings(settings: dict, seed: int) -> RenderSettings:
    """The render settings of one unit (its recipe's): the gallery's render settings, one
    image, the unit's own seed."""
    return RenderSettings.from_recipe(settings).replace(batch=1, seed=seed)


def weights_to_load(settings: dict) -> str | None:
    """The weights a recipe names to load the model again (None: the model's default)."""
    if settings["weights"] in ("bundled", None) or settings["weights_default"]:
        return None
    return settings["weights"]


def recipe(settings: dict, unit: Unit, *, seed: int, key: str, file: str) -> dict:
    """The recipe stored in a unit's PNG: a one-image render of the unit with its own seed, so
    that the PNG renders it again alone (``dreamviz render --from PNG``). ``gallery``
    records where it came from: the unit, the base seed, its key and its ``file`` inside the
    gallery."""
    return recipes.make(
        model=settings["model"],
        weights=weights_to_load(settings),
        objective=unit.objective(),
        targets=[unit.target],
        labels=[unit.target[1]],
        index=0,
        settings=render_settings(settings, seed),
        gallery={
            "unit": unit.name,
            "seed": settings["seed"],
            "key": key,
            "weights_sha256": settings["weights_sha256"],
            "file": file,
        },
    )


__all__ = [
    "Unit",
    "parse_indices",
    "recipe",
    "render_settings",
    "select_units",
    "unit_seed",
    "weights_to_load",
]
