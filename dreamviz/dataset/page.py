"""``index.html`` of a dataset-examples folder: a static page that opens from disk.

The template ``page.html`` is package data beside this module; images are relative paths to
the crops; nothing is fetched. After loading, the page records the images that failed in its
``data-broken`` attribute (tests read it with headless Chromium's ``--dump-dom``).
"""

from __future__ import annotations

import functools
import html
from importlib import resources
from string import Template
from urllib.parse import quote

SIDE = 96  # px of each crop on the page


@functools.cache
def template() -> str:
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


def figure(item: dict, src: str) -> str:
    """One example as a figure: its crop, its activation, and its image in the tooltip."""
    esc = html.escape
    level = f"q{item['quantile']:g} " if "quantile" in item else ""
    tip = f"{item['image']} box {item['box']} activation {item['activation']:.4g}"
    return (
        f'<figure title="{esc(tip)}"><img decoding="async" src="{esc(quote(src))}" '
        f'alt="{esc(item["image"])}"><figcaption>{esc(level)}{item["activation"]:.3g}'
        "</figcaption></figure>"
    )


def render_html(data: dict, command: str | None = None) -> str:
    """The page of an examples.json ``data``."""
    esc = html.escape
    units = []
    for c, items in data["channels"].items():
        lower = data["quantile_examples"].get(c, [])
        strip = [figure(i, i["crop"]) for i in items]
        if lower:
            strip.append('<div class="sep"></div>')
            strip += [f'<div class="q">{figure(i, i["crop"])}</div>' for i in lower]
        units.append(
            f'<section class="unit" id="c{esc(c)}"><h2>{esc(data["layer"])}:{esc(c)}</h2>'
            f'<div class="strip">{"".join(strip)}</div></section>'
        )
    found = data["images"]
    skipped = len(found["skipped"])
    summary = (
        f"{data['model']} ({data['weights']}), layer {data['layer']}: {len(units)} channels, "
        f"top {data['top']} of {found['read']} images read"
        + (f", {skipped} skipped (unreadable)" if skipped else "")
    )
    return Template(template()).substitute(
        title=esc(f"{data['model']} {data['layer']}"),
        side=SIDE,
        summary=esc(summary),
        preprocess=esc(data["preprocess"]["text"]),
        command=f"<pre>{esc(command)}</pre>" if command else "",
        units="\n".join(units),
    )


__all__ = ["SIDE", "figure", "render_html"]
