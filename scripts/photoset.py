"""The photo set of scripts/data/photoset.json: 224 x 224 photos with hand-drawn object boxes,
an ImageNet class each, and a part (``choice``: methods are chosen on it; ``report``: the
figures are reported on it, never tuned on), made deterministically from the photos in assets/.

    python scripts/photoset.py --sheet photoset.png     # look at every photo and its box
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.transforms.v2.functional import center_crop, resize

from dreamviz.io import read_image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "scripts" / "data" / "photoset.json"
SIZE = 224


@dataclass
class Case:
    name: str
    part: str  # "choice" or "report"
    image: torch.Tensor  # 3 x 224 x 224 in [0, 1]
    target: int  # ImageNet class
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the 224 px image
    obj: str  # cat, cup, uniform, tie


def _carry(box, crop, size_from, size_to, flip: bool):
    """``box`` (photo px) after cropping to ``crop``, resizing ``size_from`` -> ``size_to``
    (w, h) and an optional horizontal flip."""
    x0, y0, x1, y1 = (
        max(box[0], crop[0]) - crop[0],
        max(box[1], crop[1]) - crop[1],
        min(box[2], crop[2]) - crop[0],
        min(box[3], crop[3]) - crop[1],
    )
    sx, sy = size_to[0] / size_from[0], size_to[1] / size_from[1]
    x0, y0, x1, y1 = x0 * sx, y0 * sy, x1 * sx, y1 * sy
    if flip:
        x0, x1 = size_to[0] - x1, size_to[0] - x0
    return x0, y0, x1, y1


def _photo(data, entry) -> tuple[torch.Tensor, tuple]:
    ph = data["photos"][entry["photo"]]
    image = read_image(ROOT / "assets" / ph["file"])
    h, w = image.shape[-2:]
    crop = entry.get("crop", [0, 0, w, h])
    image = image[:, crop[1] : crop[3], crop[0] : crop[2]]
    if entry.get("flip"):
        image = image.flip(-1)
    ch, cw = image.shape[-2:]
    scale = SIZE / min(ch, cw)
    rw, rh = round(cw * scale), round(ch * scale)
    image = center_crop(resize(image, [rh, rw], antialias=True), [SIZE, SIZE])
    x0, y0, x1, y1 = _carry(ph["boxes"][entry["object"]], crop, (cw, ch), (rw, rh), False)
    if entry.get("flip"):
        x0, x1 = rw - x1, rw - x0
    dx, dy = (rw - SIZE) // 2, (rh - SIZE) // 2
    box = (x0 - dx, y0 - dy, x1 - dx, y1 - dy)
    return image, box


def _region(data, name: str, crop, size) -> torch.Tensor:
    image = read_image(ROOT / "assets" / data["photos"][name]["file"])
    part = image[:, crop[1] : crop[3], crop[0] : crop[2]]
    return resize(part, [size[1], size[0]], antialias=True)


def _paste(data, entry) -> tuple[torch.Tensor, tuple]:
    bg = data["backgrounds"][entry["background"]]
    if bg is None:
        image = torch.full((3, SIZE, SIZE), 0.5)
    else:
        image = _region(data, bg["photo"], bg["crop"], (SIZE, SIZE))
    box = None
    for obj, (w, h), x, y, flip in entry["items"]:
        spec = data["objects"][obj]
        patch = _region(data, spec["photo"], spec["crop"], (w, h))
        image[:, y : y + h, x : x + w] = patch.flip(-1) if flip else patch
        if obj == entry["object"] and box is None:
            crop = spec["crop"]
            own = data["photos"][spec["photo"]]["boxes"][obj]
            size = (crop[2] - crop[0], crop[3] - crop[1])
            bx0, by0, bx1, by1 = _carry(own, crop, size, (w, h), flip)
            box = (x + bx0, y + by0, x + bx1, y + by1)
    return image, box


def load(part: str | None = None, path: Path = DATA) -> list[Case]:
    """The photo set's cases, in file order; ``part``: only ``choice`` or ``report``."""
    data = json.loads(Path(path).read_text())
    cases = []
    for entry in data["set"]:
        if part is not None and entry["part"] != part:
            continue
        image, box = (_paste if "background" in entry else _photo)(data, entry)
        box = tuple(int(round(min(max(v, 0), SIZE))) for v in box)
        target = data["classes"][entry["object"]]
        cases.append(Case(entry["name"], entry["part"], image, target, box, entry["object"]))
    return cases


def sheet(cases: list[Case], tile: int = 160):
    """Every case with its box in green and its part in the caption, in rows of six."""
    from PIL import Image, ImageDraw, ImageFont

    from dreamviz.io import to_pil

    font = ImageFont.load_default(size=12)
    cols, cap = 6, 18
    rows = -(-len(cases) // cols)
    out = Image.new("RGB", (cols * (tile + 4) + 4, rows * (tile + cap + 4) + 4), "white")
    draw = ImageDraw.Draw(out)
    for k, c in enumerate(cases):
        pic = to_pil(c.image).resize((tile, tile))
        s = tile / SIZE
        ImageDraw.Draw(pic).rectangle([round(v * s) for v in c.box], outline=(0, 255, 0), width=2)
        x0, y0 = 4 + (k % cols) * (tile + 4), 4 + (k // cols) * (tile + cap + 4)
        out.paste(pic, (x0, y0))
        draw.text((x0 + 2, y0 + tile + 2), f"{c.part[0]}: {c.name}", fill=(0, 0, 0), font=font)
    return out


def read_rows(path) -> list[dict]:
    """The JSON lines an eval wrote so far (none if the file is not there yet)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def eval_arguments(doc: str, out: str) -> argparse.ArgumentParser:
    """The options every photo-set eval takes: --part, --out, --table, --threads."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--part", choices=("choice", "report"), default=None)
    ap.add_argument("--out", default=out)
    ap.add_argument("--table", default=None, help="print the tables of this JSONL file")
    ap.add_argument("--threads", type=int, default=1)
    return ap


def print_tables(rows: list[dict], choose, table) -> None:
    """The method ``choose`` picks on the choice part, then ``table(rows, part)`` per part."""
    choice = [r for r in rows if r["part"] == "choice"]
    print(f"default by the rule, on the choice part: {choose(choice)}\n")
    for part in ("choice", "report"):
        if any(r["part"] == part for r in rows):
            print(table(rows, part) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sheet", default="photoset.png")
    args = p.parse_args(argv)
    cases = load()
    for part in ("choice", "report"):
        print(part, sum(c.part == part for c in cases))
    sheet(cases).save(args.sheet)


if __name__ == "__main__":
    main()
