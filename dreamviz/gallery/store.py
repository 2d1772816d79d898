"""A gallery on disk: its settings and unit keys, where each unit's files go, and what is done.

Each unit's key hashes the settings (the model's name, weights and a fingerprint of its
parameters, every field of the :class:`~dreamviz.settings.RenderSettings` and the dreamviz
version), the unit and its seed: a setting added to the render settings is in the key at once. A
unit whose PNG and record exist with the same key is done: a
rerun does not render it again. The record is written after the PNG, so it marks the unit done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .._version import __version__
from ..models import BUNDLED, VisionModel
from ..settings import RenderSettings
from .units import Unit, unit_seed

TIMING_FIELDS = ("seconds", "batch_seconds")  # the only fields that differ between equal runs


def weights_fingerprint(model: VisionModel) -> str:
    """sha256 of every parameter and buffer of the network (names, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in model.net.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _is_default_weights(model: VisionModel) -> bool:
    try:
        import torchvision

        return model.weights == torchvision.models.get_model_weights(model.name).DEFAULT.name
    except Exception:
        return False


def size2(size: int | Sequence[int]) -> list[int]:
    """``N`` or ``(H, W)`` -> ``[H, W]``."""
    if isinstance(size, int):
        return [size, size]
    h, w = size
    return [int(h), int(w)]


def settings(model: VisionModel, render: RenderSettings) -> dict:
    """Everything that shapes a gallery's images, flat (the keys hash it; the manifest and
    every record carry it): the model's name, weights and a fingerprint of its parameters,
    every field of ``render`` (its size as [H, W]) and the dreamviz version."""
    return {
        "model": model.name,
        "weights": model.weights,
        "weights_default": model.name not in BUNDLED and _is_default_weights(model),
        "weights_sha256": weights_fingerprint(model),
        **render.to_recipe(),
        "size": size2(render.size or model.input_size),
        "dreamviz": __version__,
    }


def unit_key(settings: dict, unit: Unit, seed: int) -> str:
    blob = json.dumps({"settings": settings, "unit": unit.name, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def safe_name(name: str) -> str:
    """A layer name as a file or anchor name: characters other than ``A-Za-z0-9._-`` -> ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def unit_paths(out: Path, unit: Unit) -> tuple[str, Path, Path]:
    """(relative PNG path, PNG path, record path) of a unit."""
    rel = f"{safe_name(unit.layer)}/{unit.index:04d}.png"
    png = out / rel
    return rel, png, png.with_suffix(".json")


@dataclass
class Plan:
    """One unit of a build: its seed, key and files."""

    unit: Unit
    seed: int
    key: str
    rel: str
    png: Path
    record: Path

    def is_done(self) -> bool:
        """The PNG and the record exist, and the record has this key."""
        if not self.png.exists() or not self.record.exists():
            return False
        try:
            return json.loads(self.record.read_text()).get("key") == self.key
        except (OSError, ValueError):
            return False


def plan(out: Path, settings: dict, units: Sequence[Unit]) -> list[Plan]:
    """The plan of every unit, in page order."""
    plans = []
    for u in units:
        s = unit_seed(settings["seed"], u)
        rel, png, record = unit_paths(out, u)
        plans.append(Plan(u, s, unit_key(settings, u, s), rel, png, record))
    return plans


def load_records(plans: Sequence[Plan]) -> list[dict]:
    """The records of the units that are done, in page order."""
    return [json.loads(p.record.read_text()) for p in plans if p.is_done()]


def remove_stale_temps(out: Path, plans: Sequence[Plan]) -> None:
    """Delete temporary files a killed run left behind (SIGKILL skips their clean-up)."""
    for folder in {out} | {p.png.parent for p in plans}:
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()


__all__ = [
    "TIMING_FIELDS",
    "Plan",
    "load_records",
    "plan",
    "remove_stale_temps",
    "safe_name",
    "settings",
    "size2",
    "unit_key",
    "unit_paths",
    "weights_fingerprint",
]
