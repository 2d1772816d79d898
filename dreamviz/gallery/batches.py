"""Rendering one batch of units: one pass of :func:`dreamviz.engine.render`, then a PNG (with
its recipe) and a record per unit.

A batch optimizes ``sum_i objective_i`` with image i aimed at unit i and seeded by the unit's
own seed, so a unit comes out the same whichever batch it is in, up to float rounding of
batched convolutions. A batch that goes non-finite is rendered again one unit at a time, so one
bad unit does not take its batch down.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import engine, recipes
from ..display import Bar
from ..errors import NonFiniteError
from ..io import save_png, write_json
from ..models import VisionModel
from .natural import Maxima
from .store import Plan
from .units import Unit, recipe, render_settings


class Progress:
    """The progress bar (:class:`dreamviz.display.Bar`) counting units, moved per optimization
    step so the ETA is smooth."""

    def __init__(self, total: int, enabled: bool, desc: str = "gallery"):
        self.bar = Bar(total, desc, "unit", delay=0, counts=True) if enabled and total else None
        self.done = 0

    def step(self, n_units: int, step: int, steps: int) -> None:
        if self.bar is not None:
            self.bar.move_to(self.done + n_units * step / max(steps, 1))

    def finish_batch(self, n_units: int) -> None:
        self.done += n_units
        if self.bar is not None:
            self.bar.move_to(self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _round(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.6g}")


def _class_name(model: VisionModel, unit: Unit) -> str | None:
    if unit.is_class and model.classes and unit.index < len(model.classes):
        return model.classes[unit.index]
    return None


def render_batch(
    model: VisionModel,
    group: Sequence[Plan],
    settings: dict,
    maxima: Maxima,
    bar: Progress | None = None,
) -> list[dict]:
    """Render the units of ``group`` together; save each one's PNG and then its record (the
    mark that it is done). Returns the records."""
    bar = bar or Progress(0, False)
    objective, _ = recipes.objective(model, [p.unit.target for p in group])
    kwargs = recipes.render_kwargs(render_settings(settings, 0))
    kwargs["seed"] = [p.seed for p in group]
    try:
        res = engine.render(
            model,
            objective,
            batch=len(group),
            callback=lambda step, steps, _v: bar.step(len(group), step, steps),
            progress=False,  # the gallery's own bar counts units
            **kwargs,
        )
    except NonFiniteError as e:
        if len(group) > 1:
            return [r for p in group for r in render_batch(model, [p], settings, maxima)]
        images, finals, status = e.last_good, [None], f"non-finite at step {e.step}"
        seconds = 0.0
    else:
        if res.interrupted:
            raise KeyboardInterrupt
        images, finals, status = res.images, res.final.tolist(), "ok"
        seconds = res.seconds
    records = []
    for i, p in enumerate(group):
        value = None if finals[i] is None else float(finals[i])
        nat = maxima.of(p.unit)
        ratio = value / nat if value is not None and nat is not None and nat > 1e-8 else None
        save_png(p.png, images[i], recipe(settings, p.unit, seed=p.seed, key=p.key, file=p.rel))
        record = {
            "unit": p.unit.name,
            "layer": p.unit.layer,
            "index": p.unit.index,
            "kind": "class" if p.unit.is_class else "channel",
            "class_name": _class_name(model, p.unit),
            "file": p.rel,
            "key": p.key,
            "seed": p.seed,
            "settings": settings,
            "objective": _round(value),
            "natural_max": _round(nat),
            "activation_ratio": _round(ratio),
            "status": status,
            "batch_size": len(group),
            "seconds": round(seconds / len(group), 4),
            "batch_seconds": round(seconds, 4),
        }
        write_json(p.record, record)  # last: marks the unit as done
        records.append(record)
    return records


__all__ = ["Progress", "render_batch"]
