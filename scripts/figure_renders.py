"""The README's render figures, made with today's defaults on the bundled model (CPU, ~5 min):

* ``docs/images/render_classes.png``: report-set classes of scripts/eval_transfer.py (none of
  them chose the defaults), one render each at 224 px, captioned with the class and the
  probability the studied model gives it;
* ``docs/images/gallery_vs_render.png``: the same units as a gallery tile (128 px) and as a
  render (224 px), each with its activation ratio (objective over the largest spatial mean of
  that channel on natural crops of the sample photos).

    python scripts/figure_renders.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from PIL import Image

import dreamviz
from dreamviz import display, gallery, recipes
from dreamviz.engine import render
from dreamviz.gallery.natural import Maxima
from dreamviz.io import to_pil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["flamingo", "zebra", "ladybug", "violin", "school bus", "teapot", "strawberry", "alp"]
UNITS = ["blocks.3:10", "blocks.8:0", "blocks.8:20", "blocks.14:10", "blocks.14:20"]


def grid(tiles: list[tuple[Image.Image, str]], cols: int, side: int) -> Image.Image:
    """The project's captioned grid (:func:`dreamviz.display.grid`) of tiles ``side`` px."""
    images = [tile.resize((side, side), Image.LANCZOS) for tile, _ in tiles]
    return display.grid(images, [text.split("\n") for _, text in tiles], cols=cols)


def classes_figure(model, out: str) -> None:
    obj, _ = recipes.objective(model, [["class", c] for c in CLASSES])
    kw = recipes.render_kwargs(recipes.settings(), model)
    images = render(model, obj, batch=len(CLASSES), progress=False, **kw).images
    with torch.no_grad():
        p = model(images).softmax(1)
    tiles = [
        (to_pil(im), f"{c}\np = {float(p[i, model.class_index(c)]):.3f}")
        for i, (c, im) in enumerate(zip(CLASSES, images))
    ]
    grid(tiles, 4, 200).save(os.path.join(out, "render_classes.png"), optimize=True)


def ratio(maxima: Maxima, unit: gallery.Unit, value: float) -> str:
    """The activation ratio as the gallery computes it: none where the channel's largest mean
    on the natural crops is not positive (a block's linear output can be negative throughout,
    and a ratio to it means nothing)."""
    maxima.need([unit])
    nat = maxima.of(unit)
    return f"ratio {value / nat:.1f}x" if nat and nat > 1e-8 else "natural max <= 0"


def gallery_vs_render(model, out: str) -> None:
    units = [gallery.Unit(u.rsplit(":", 1)[0], int(u.rsplit(":", 1)[1])) for u in UNITS]
    with tempfile.TemporaryDirectory() as tmp:
        layers = sorted({u.layer for u in units})
        chans = ",".join(sorted({str(u.index) for u in units}))
        res = gallery.build(model, layers, chans, out=tmp, natural=None, progress=False)
        tiles_g = {r["unit"]: r for r in res.records}
        pics_g = {n: Image.open(os.path.join(tmp, r["file"])).convert("RGB") for n, r in
                  tiles_g.items()}  # fmt: skip
    maxima_g = Maxima(model, [128, 128], gallery.photos("auto"))
    maxima_r = Maxima(model, list(model.input_size), gallery.photos("auto"))
    obj, _ = recipes.objective(model, [["unit", u] for u in UNITS])
    kw = recipes.render_kwargs(recipes.settings(), model)
    r = render(model, obj, batch=len(UNITS), progress=False, **kw)
    tiles = []
    for u in units:
        rec = tiles_g[u.name]
        rg = ratio(maxima_g, u, rec["objective"])
        tiles.append((pics_g[u.name], f"{u.name} gallery\n128 px, {rg}"))
    for i, u in enumerate(units):
        rr = ratio(maxima_r, u, float(r.final[i]))
        tiles.append((to_pil(r.images[i]), f"{u.name} render\n224 px, {rr}"))
    grid(tiles, len(units), 180).save(os.path.join(out, "gallery_vs_render.png"), optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "images"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="classes,gallery", help="which figures (comma list)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = dreamviz.load_model(device="cpu")
    if "classes" in args.only:
        classes_figure(model, args.out)
        print("wrote render_classes.png", flush=True)
    if "gallery" not in args.only:
        return
    gallery_vs_render(model, args.out)
    print("wrote gallery_vs_render.png", flush=True)


if __name__ == "__main__":
    main()
