"""Settings objects: every setting of a render in one frozen shape (layer 1).

A :class:`RenderSettings` holds every key of :data:`dreamviz.defaults.RENDER`, built from those
defaults. The same object travels from the command line through the recipe a PNG stores
(:meth:`~RenderSettings.to_recipe`, :meth:`~RenderSettings.from_recipe`) to the engine and the
gallery, whose resume key is :meth:`~RenderSettings.key`: a hash of every field, so a setting
added here can never be left out of it.

It is also a read-only mapping (``s["steps"]``, ``dict(s)``, ``**s``), the shape recipes had
before, so code that reads settings by name keeps working.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from .defaults import RENDER
from .errors import UsageError, suggest


def _pair(value, kind=float):
    return None if value is None else tuple(kind(v) for v in value)


def _size(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        h, w = value
        return (int(h), int(w))
    return (int(value), int(value))


@dataclasses.dataclass(frozen=True)
class RenderSettings(Mapping):
    """Every setting that shapes a rendered image (see :data:`dreamviz.defaults.RENDER`)."""

    size: tuple[int, int] | None = RENDER["size"]
    steps: int = RENDER["steps"]
    lr: float = RENDER["lr"]
    lr_schedule: str = RENDER["lr_schedule"]
    optimizer: str = RENDER["optimizer"]
    param: str = RENDER["param"]
    decorrelate: bool = RENDER["decorrelate"]
    transforms: str = RENDER["transforms"]
    crops: int = RENDER["crops"]
    crop_scale: tuple[float, float] = RENDER["crop_scale"]
    crop_scale_end: tuple[float, float] | None = RENDER["crop_scale_end"]
    settle: float = RENDER["settle"]
    l1: float = RENDER["l1"]
    l2: float = RENDER["l2"]
    tv: float = RENDER["tv"]
    blur: float = RENDER["blur"]
    diversity: float = RENDER["diversity"]
    batch: int = RENDER["batch"]
    seed: int = RENDER["seed"]
    device: str = RENDER["device"]
    amp: bool = RENDER["amp"]
    init: str | None = RENDER["init"]
    accentuate: float = RENDER["accentuate"]
    accentuate_layer: str | None = RENDER["accentuate_layer"]
    spectrum: str | None = RENDER["spectrum"]

    def __post_init__(self):
        # one shape whatever the input: JSON lists and ints become the tuples above
        set_ = object.__setattr__
        set_(self, "size", _size(self.size))
        set_(self, "crop_scale", _pair(self.crop_scale))
        set_(self, "crop_scale_end", _pair(self.crop_scale_end))

    # ------------------------------------------------------------------ building

    @classmethod
    def make(cls, **given) -> RenderSettings:
        """The defaults updated by ``given``; an unknown name is an error (a typo is never
        silently ignored)."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in given:
            if key not in names:
                raise UsageError(
                    f"unknown render setting {key!r}{suggest(key, names)}; use {', '.join(names)}"
                )
        return cls(**given)

    def replace(self, **changes) -> RenderSettings:
        """A copy with ``changes`` (names checked as in :meth:`make`)."""
        return type(self).make(**{**self.to_dict(), **changes})

    @classmethod
    def from_recipe(cls, settings: Mapping) -> RenderSettings:
        """The settings of a stored recipe: the names it knows, today's defaults for the rest
        (a recipe written by an older version lacks the newer settings)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})

    # ------------------------------------------------------------------ reading

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_recipe(self) -> dict[str, Any]:
        """Every field, as JSON stores it (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.to_dict().items()}

    def key(self) -> str:
        """A hash of every field: equal settings, equal keys; any change, another key."""
        blob = json.dumps(self.to_recipe(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    # the read-only mapping
    def __getitem__(self, name: str):
        if name not in self._names():
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))


__all__ = ["RenderSettings"]
