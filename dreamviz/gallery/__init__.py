"""Unit galleries: every channel of a layer (or a set of classes) rendered into a static site.

>>> from dreamviz import gallery
>>> gallery.build("efficientnet_lite0", ["blocks.3", "blocks.8"], channels="0-15", out="gal")

writes into ``out``:

* ``<layer>/<index>.png`` - one image per unit, its recipe in the PNG metadata;
* ``<layer>/<index>.json`` - the unit's record (written after its PNG: the resume marker);
* ``manifest.json`` - every record: unit, settings, seed, final objective, activation ratio
  versus natural images, time;
* ``index.html`` - a static page (no server, inline CSS/JS, relative image paths): a grid per
  layer, a larger view with each image's settings and, given ``reproduce``, the commands that
  render it again.

The modules: :mod:`~dreamviz.gallery.units` (which units, their seeds and recipes),
:mod:`~dreamviz.gallery.store` (settings, keys, files, what is done),
:mod:`~dreamviz.gallery.natural` (the activation ratio's photos),
:mod:`~dreamviz.gallery.batches` (one batch through :func:`dreamviz.engine.render`),
:mod:`~dreamviz.gallery.page` (``index.html``) and :mod:`~dreamviz.gallery.parallel`
(``torchrun``). This module's :func:`build` runs them in order.

Resumable and idempotent: a unit whose PNG and record exist with the same key is not rendered
again, so a rerun with the same settings only rebuilds the pages, an interrupted run continues
where it stopped and changed settings re-render only the units whose key changed. Every file is
written atomically. Under ``torchrun`` the batches are dealt round-robin to the ranks; seeds and
batch composition do not depend on the number of ranks, so the output equals a one-process run.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from .. import defaults
from ..batching import AUTO, Splitter, rows_per_pass
from ..display import Displayable, wants_progress
from ..errors import UsageError, arg, integer, split_list
from ..hooks import LOGITS, check_unit
from ..io import write_json, write_text
from ..models import as_vision_model, load_model
from ..settings import RenderSettings
from . import store
from .batches import Progress, render_batch
from .natural import Maxima, natural_crops, natural_maxima, photos
from .page import render_html
from .parallel import agreed_min, barrier, distributed, rank_and_world
from .store import TIMING_FIELDS, Plan, load_records
from .units import Unit, parse_indices, select_units, unit_seed

GALLERY, RENDER = defaults.GALLERY, defaults.RENDER


@dataclass(repr=False)
class GalleryResult(Displayable):
    """What :func:`build` did. In a notebook it shows its first units (image, unit, objective,
    activation ratio) and links its ``index.html``."""

    out: Path
    index: Path | None  # None on ranks other than 0
    manifest: Path | None
    rendered: list[str] = field(default_factory=list)  # units this process rendered
    skipped: list[str] = field(default_factory=list)  # units already up to date
    written: list[Path] = field(default_factory=list)  # PNGs this process wrote
    records: list[dict] = field(default_factory=list)  # manifest records (rank 0)

    def _tiles(self):
        tiles = []
        for r in self.records[: defaults.DISPLAY["max_images"]]:
            try:
                with Image.open(self.out / r["file"]) as im:
                    image = im.convert("RGB")
            except OSError:  # deleted since: leave it out
                continue
            lines = [r["unit"] + (f" {r['class_name']}" if r.get("class_name") else "")]
            if r.get("objective") is not None:
                lines.append(f"objective {r['objective']:.4g}")
            if r.get("activation_ratio") is not None:
                lines.append(f"{r['activation_ratio']:.3g}x natural")
            tiles.append(([image], lines))
        return tiles

    def _count(self) -> int:
        return len(self.records)

    def _title(self) -> str:
        return (
            f"gallery in {self.out}: {len(self.records)} units ({len(self.rendered)} rendered, "
            f"{len(self.skipped)} up to date)"
        )

    def __repr__(self) -> str:
        return (
            f"GalleryResult(out={str(self.out)!r}, index={self.index and str(self.index)!r}, "
            f"{len(self.rendered)} rendered, {len(self.skipped)} up to date)"
        )

    def _footer(self) -> str | None:
        if self.index is None:
            return None
        href = html.escape(quote(self.index.as_posix()), quote=True)
        return f'the page: <a href="{href}" target="_blank">{html.escape(str(self.index))}</a>'


def _spec_text(spec) -> str | None:
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, int):
        return str(spec)
    return ",".join(str(s) for s in spec)


def _write_pages(
    out: Path,
    plans: list[Plan],
    settings: dict,
    request: dict,
    complete: bool,
    reproduce: Callable[[dict], str] | None,
    command: str | None,
    examples: dict[str, list[dict]] | None = None,
) -> list[dict]:
    records = load_records(plans)
    manifest = {
        "format": "dreamviz-gallery/1",
        "complete": complete and len(records) == len(plans),
        "model": settings["model"],
        "weights": settings["weights"],
        "settings": settings,
        "request": request,
        "command": command,
        "units": records,
    }
    write_json(out / "manifest.json", manifest)
    write_text(out / "index.html", render_html(manifest, len(plans), reproduce, examples))
    return records


def _render_settings(settings: Mapping | None, **given) -> RenderSettings:
    """The gallery's render settings: ``defaults.RENDER`` with GALLERY's size and steps, then
    ``settings`` (its entries that are not None), then the keywords that are not None; one
    image per unit."""
    base = {"size": GALLERY["size"], "steps": GALLERY["steps"]}
    base.update({k: v for k, v in dict(settings or {}).items() if v is not None})
    base.update({k: v for k, v in given.items() if v is not None})
    return RenderSettings.make(**{**base, "batch": 1})


def build(
    model,
    layers: str | Sequence[str] = (),
    channels=GALLERY["channels"],
    classes=None,
    *,
    size: int | Sequence[int] | None = None,
    steps: int | None = None,
    batch: int | str = GALLERY["batch"],
    out: str | os.PathLike = GALLERY["out"],
    settings: Mapping | None = None,
    seed: int | None = None,
    lr: float | None = None,
    optimizer: str | None = None,
    param_kind: str | None = None,
    decorrelate: bool | None = None,
    transforms: str | None = None,
    settle: float | None = None,
    amp: bool | None = None,
    weights: str | None = None,
    device: str | None = RENDER["device"],
    natural=GALLERY["natural"],
    progress: bool | None = defaults.DISPLAY["progress"],
    callback: Callable[[list[dict]], None] | None = None,
    reproduce: Callable[[dict], str] | None = None,
    command: str | None = None,
    examples: dict[str, list[dict]] | None = None,
) -> GalleryResult:
    """Render every requested unit that is not up to date into ``out``, then write the pages.

    ``model``: a name (loaded with ``weights`` on ``device``) or a model. ``layers``: layer
    names, each showing ``channels`` (``"all"``, ``"0-63"``, ``"random:32"``, a list).
    ``classes``: a class gallery (``"0-999"``, ``"random:16"``, indices or names). ``natural``:
    photos for the activation ratio (``"auto"``: the sample photos inside the package; a
    folder, a list of paths, or None for no ratio). ``callback(records)`` runs after each batch;
    raising from it (KeyboardInterrupt included) stops the build, and a rerun continues from
    there. ``reproduce(recipe)``: the commands that render a unit again from its PNG's recipe,
    one per line, shown in the page's large view (None: the view shows the settings only).
    ``command``: the command that built the gallery, shown in the page's header and stored in
    the manifest. ``settings``: the render settings (a
    :class:`~dreamviz.settings.RenderSettings` or a dict of some of its names; the rest are
    ``defaults.RENDER``'s, the size and steps ``defaults.GALLERY``'s); the keywords ``size``,
    ``steps``, ``seed``, ``lr``, ... override it where given (None: not given). ``batch``: units
    optimized together in one pass; ``"auto"`` asks
    :func:`dreamviz.batching.rows_per_pass` (device, size, layers), and a batch that runs out
    of memory is rendered in halves. ``progress``: a bar counting units (None: where a person
    is watching). ``examples``: per unit name, dataset examples to show under its image
    (:func:`dreamviz.dataset.page_examples` reads them from a folder written by
    :func:`dreamviz.examples`). The result shows its first units in a notebook, with a link
    to the page.
    """
    rank, world = rank_and_world()
    if isinstance(model, str):
        model = load_model(model, weights=weights, device=device or "auto")
    else:
        model = as_vision_model(model)
    layers = [layers] if isinstance(layers, str) else list(layers)
    batch = integer("batch", batch, 1, auto=True)
    render = _render_settings(
        settings,
        size=size,
        steps=steps,
        seed=seed,
        lr=lr,
        optimizer=optimizer,
        param=param_kind,
        decorrelate=decorrelate,
        transforms=transforms,
        settle=settle,
        amp=amp,
    )
    units = _units(model, layers, channels, classes, render)
    natural_paths = photos(natural)
    settings = store.settings(model, render)
    out = Path(out)
    plans = store.plan(out, settings, units)
    pending = [p for p in plans if not p.is_done()]
    if rank == 0:
        store.remove_stale_temps(out, plans)
    barrier()  # every rank has listed the same pending units before any writes
    per_pass = _per_pass(model, batch, settings["size"], units, len(pending))
    mine = [pending[i : i + per_pass] for i in range(0, len(pending), per_pass)][rank::world]
    todo = {p.key for p in pending}
    result = GalleryResult(
        out, None, None, skipped=[p.unit.name for p in plans if p.key not in todo]
    )
    request = {
        "layers": layers,
        "channels": _spec_text(channels) if layers else None,
        "classes": _spec_text(classes),
        "batch": batch,
        "out": str(out),
    }
    pages = dict(request=request, reproduce=reproduce, command=command, examples=examples)
    desc = "gallery" if world == 1 else f"gallery rank {rank}/{world}"
    bar = Progress(sum(len(b) for b in mine), wants_progress(progress) and rank == 0, desc)
    maxima = Maxima(model, settings["size"], natural_paths)
    try:
        _render_all(model, mine, settings, maxima, bar, result, callback)
    except KeyboardInterrupt:
        bar.close()
        if world == 1:  # pages for what is done, then stop; a rerun continues
            _write_pages(out, plans, settings, complete=False, **pages)
        raise
    bar.close()
    barrier()  # every rank's records are on disk
    if rank == 0:
        result.records = _write_pages(out, plans, settings, complete=True, **pages)
        result.manifest, result.index = out / "manifest.json", out / "index.html"
    barrier()  # the pages exist before any rank returns
    return result


def _units(model, layers: list[str], channels, classes, render: RenderSettings) -> list[Unit]:
    """The units a request names, each checked (layer, channel range, size)."""
    integer("steps", render.steps, 1)
    if not layers and classes is None:
        raise UsageError(
            f"nothing to render; give {arg('layers', 'LAYER')} and/or {arg('classes', '0-15')}"
        )
    for name, spec in (("channels", channels), ("classes", classes)):
        if isinstance(spec, str):
            split_list(spec, name, "0,5,9-12")  # "1,,2" is a typo, not "1,2"
    units = select_units(model, layers, channels, classes, render.seed)
    for layer in {u.layer for u in units} - {LOGITS}:
        check_unit(model, layer, None)
    if min(store.size2(render.size)) < 16:
        raise UsageError(f"size {render.size} is too small; use 16 px or more")
    return units


def _per_pass(model, batch, size, units: list[Unit], pending: int) -> int:
    """Units per pass: ``batch``, or with "auto" the batching policy's, the same on every
    rank so the batches are the same."""
    if batch != AUTO:
        return batch
    layers_used = sorted({u.layer for u in units})
    return agreed_min(rows_per_pass(model, size, layers_used, rows=max(1, pending)))


def _render_all(model, mine, settings: dict, maxima, bar, result, callback) -> None:
    """Render this rank's batches (a batch out of memory goes in halves), recording each in
    ``result`` and calling ``callback(records)`` after it."""
    split = Splitter(model.device)

    def render_group(group: list) -> list[dict]:
        records = render_batch(model, group, settings, maxima, bar)
        bar.finish_batch(len(group))
        return records

    for group in mine:
        maxima.need(p.unit for p in group)
        records = split(render_group, group)
        result.rendered += [r["unit"] for r in records]
        result.written += [result.out / r["file"] for r in records]
        if callback is not None:
            callback(records)


__all__ = [
    "TIMING_FIELDS",
    "GalleryResult",
    "Unit",
    "build",
    "distributed",
    "natural_crops",
    "natural_maxima",
    "parse_indices",
    "photos",
    "render_html",
    "select_units",
    "unit_seed",
]
