"""The gallery's ``index.html``: a static page that opens from disk.

No server and nothing fetched: the CSS and JS (``page.css``, ``page.js``, package data beside
this module) are inlined into the template ``page.html``, the units' data is a JSON script
element, and images are relative paths. A grid per layer; a click opens a larger view with the
unit's numbers, its settings and, when the build was given ``reproduce``, the commands that
render it again. ``index.html#selftest`` checks the page itself (see tests/test_gallery_browser).
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Callable
from importlib import resources
from string import Template
from urllib.parse import quote

from ..hooks import LOGITS
from .store import safe_name
from .units import Unit, recipe

EXAMPLES_SHOWN = 4  # dataset examples under each unit's image


@functools.cache
def asset(name: str) -> str:
    """The text of a package data file of the page: ``page.html``, ``page.css`` or ``page.js``."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _commands(text: str | None) -> tuple[str | None, str | None]:
    """``reproduce``'s text -> (the first command, the other ones)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return (lines[0] if lines else None), ("\n".join(lines[1:]) or None)


def _examples(items: list[dict]) -> str:
    """A strip of a unit's dataset examples (the crops that drive it most) under its image."""
    esc = html.escape
    imgs = "".join(
        f'<img loading="lazy" decoding="async" src="{esc(quote(e["src"]))}" '
        f'alt="{esc(e.get("image", ""))}" title="{esc(e.get("image", ""))} '
        f'activation {e["activation"]:.4g}">'
        for e in items[:EXAMPLES_SHOWN]
    )
    return f'<div class="ex">{imgs}</div>' if imgs else ""


def _tile(i: int, r: dict, src: str, size: tuple[int, int], examples: list | None = None) -> str:
    esc = html.escape
    h, w = size
    tip = f"{r['unit']}  objective {r.get('objective')}"
    ratio = r.get("activation_ratio")
    if ratio is not None:
        tip += f"  ({ratio:.3g}x natural max)"
    if r.get("status") != "ok":
        tip += f"  [{r.get('status')}]"
    return (
        f'<button class="tile" data-i="{i}" title="{esc(tip)}">'
        f'<img loading="lazy" decoding="async" width="{w}" height="{h}" '
        f'src="{esc(src)}" alt="{esc(r["unit"])}">'
        f"{_examples(examples or [])}"
        f'<div class="cap"><b>{r["index"]}</b><span>{esc(r["class_name"] or "")}</span></div>'
        "</button>"
    )


def _unit_data(r: dict, s: dict, src: str, reproduce) -> dict:
    """What the page's script knows of one unit (its large view)."""
    text = None
    if reproduce is not None:
        unit = Unit(r["layer"], r["index"])
        text = reproduce(recipe(s, unit, seed=r["seed"], key=r["key"], file=r["file"]))
    first, others = _commands(text)
    return {
        "unit": r["unit"],
        "src": src,
        "class_name": r.get("class_name"),
        "objective": r.get("objective"),
        "activation_ratio": r.get("activation_ratio"),
        "seed": r["seed"],
        "seconds": r.get("seconds"),
        "status": r.get("status"),
        "from": first,
        "command": others,
    }


def _sections(sections: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """The navigation links and the section of each layer's tiles."""
    esc = html.escape
    nav, parts = [], []
    for layer, tiles in sections.items():
        anchor = "sec-" + safe_name(layer)
        title = "classes" if layer == LOGITS else layer
        nav.append(f'<a href="#{esc(anchor)}">{esc(title)} ({len(tiles)})</a>')
        parts.append(
            f'<section id="{esc(anchor)}"><h2>{esc(title)} <small>{len(tiles)} units</small></h2>'
            f'<div class="grid">{"".join(tiles)}</div></section>'
        )
    return nav, parts


def render_html(
    manifest: dict,
    total: int | None = None,
    reproduce: Callable[[dict], str] | None = None,
    examples: dict[str, list[dict]] | None = None,
) -> str:
    """The static ``index.html`` for a manifest (self-contained: inline CSS and JS).

    ``reproduce(recipe)``, given a unit's PNG recipe, returns the commands shown in its large
    view, one per line: the first under "Render it again" (the Copy button copies it), the
    others as alternatives. Without it the view shows the unit's settings only. ``total``: how
    many units the gallery has when the manifest is incomplete. ``examples``: per unit name,
    its dataset examples (``{"src": path relative to the page, "activation", "image"}``,
    highest first, as :func:`dreamviz.dataset.page_examples` gives them), shown under its image.
    """
    esc = html.escape
    s = manifest["settings"]
    records = manifest["units"]
    h, w = s["size"]
    units_js = []
    sections: dict[str, list[str]] = {}
    for i, r in enumerate(records):
        src = quote(r["file"]) + "?v=" + r["key"][:8]  # a re-render busts the browser cache
        units_js.append(_unit_data(r, s, src, reproduce))
        shown = (examples or {}).get(r["unit"])
        sections.setdefault(r["layer"], []).append(_tile(i, r, src, (h, w), shown))
    nav, parts = _sections(sections)
    done = len(records)
    status = "" if manifest.get("complete") else f" (incomplete: {done} of {total} rendered)"
    shared = {k: v for k, v in s.items() if k != "weights_default"}
    data = json.dumps({"units": units_js, "settings": shared}, sort_keys=True).replace("</", "<\\/")
    command = manifest.get("command")
    built_with = f"<br>\nbuilt with <code>{esc(command)}</code>" if command else ""
    return Template(asset("page.html")).substitute(
        model=esc(s["model"]),
        weights=esc(str(s["weights"])),
        css=asset("page.css"),
        js=asset("page.js"),
        w=w,
        h=h,
        done=done,
        status=esc(status),
        steps=s["steps"],
        lr=f"{s['lr']:g}",
        optimizer=esc(s["optimizer"]),
        param=esc(s["param"]),
        transforms=esc(s["transforms"]),
        seed=s["seed"],
        version=esc(s["dreamviz"]),
        built_with=built_with,
        nav="".join(nav),
        sections="".join(parts),
        data=data,
    )


__all__ = ["asset", "render_html"]
