"""Saliency faithfulness on lite0 and the assets/ photos, as markdown tables.

* ``ig``: Integrated Gradients completeness error per quadrature rule and step count;
* ``sanity``: cascading randomization (Adebayo et al. 2018): re-initialize lite0 top-down, one
  stage at a time, and report the Spearman rank correlation of each method's |map| with the
  original one (a faithful method decorrelates);
* ``deletion``: deletion and insertion AUC (Petsiuk et al. 2018) for every method and for a
  random pixel order. Deletion sets the most salient pixels to 0 in normalized space (the
  model's mean colour); insertion restores them onto a blurred copy (kernel 11, sigma 5). The
  score is the softmax probability of the original top-1 class; AUC = (sum s - s0/2 - sn/2) / n;
* ``localization``: on the sample photos with hand-drawn boxes around the object, and on
  composites of them (a crop of the cat's head or of the cup pasted on a plain or a textured
  background at a known place, alone or side by side, which gives the box), the pointing game
  (is the map's maximum inside the box? also within 15 px of it, Zhang et al. 2016's tolerance) and
  the share of the map's positive mass inside the box divided by the box's share of the image
  (1 is chance; the ideal is 1 / the box's share).

    python scripts/eval_saliency.py --threads 1 --panels docs/images
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.v2.functional import center_crop, resize

from dreamviz import load_model
from dreamviz._lite0 import STAGES
from dreamviz.attribution import METHODS, blur, saliency
from dreamviz.io import read_image, to_pil
from dreamviz.models import model_guard
from dreamviz.visualize import display_map, overlay, panel

ASSETS = Path(__file__).resolve().parent.parent / "assets"
RULES = ("adaptive", "gausslegendre", "riemann_left", "trapezoid")
CAT, CUP = 285, 967  # Egyptian cat, espresso
# These twelve pictures chose the old default (Grad-CAM); the default is now chosen on the
# photo set by scripts/eval_localization.py, which draws docs/images/saliency_localization.png.
#: hand-drawn boxes (x0, y0, x1, y1) in the photos' own pixels: the cat's face (eyes to chin;
#: the head fills the whole frame) and the cup (with its handle; not the saucer)
PHOTO_BOXES = {"chelsea.jpg": (115, 55, 365, 290), "coffee.jpg": (170, 15, 412, 308)}
#: the crops pasted into composites: the cat's head, the cup (and a little saucer)
CROPS = {CAT: ("chelsea.jpg", (75, 0, 375, 300)), CUP: ("coffee.jpg", (150, 0, 440, 320))}
#: plain and textured backgrounds: grey; wood (a corner of coffee.jpg); fur (of chelsea.jpg)
BACKGROUNDS = {
    "wood": ("coffee.jpg", (470, 0, 600, 120)),
    "fur": ("chelsea.jpg", (0, 170, 130, 300)),
}
#: composites: (name, background, [(class, side, x, y, flipped)], the classes scored)
COMPOSITES = [
    ("cat on grey", "grey", [(CAT, 112, 16, 20, False)], [CAT]),
    ("cat on wood", "wood", [(CAT, 112, 100, 96, True)], [CAT]),
    ("cup on grey", "grey", [(CUP, 112, 96, 24, False)], [CUP]),
    ("cup on fur", "fur", [(CUP, 112, 20, 100, True)], [CUP]),
    ("small cat on wood", "wood", [(CAT, 72, 132, 20, False)], [CAT]),
    ("small cup on wood", "wood", [(CUP, 80, 24, 132, False)], [CUP]),
    (
        "cat + cup on grey",
        "grey",
        [(CAT, 104, 8, 60, False), (CUP, 104, 116, 60, False)],
        [CAT, CUP],
    ),
    ("cup + cat on wood", "wood", [(CUP, 96, 10, 110, True), (CAT, 96, 118, 18, True)], [CAT, CUP]),
]


def load_photos(names: list[str], size: int) -> torch.Tensor:
    return torch.stack([center_crop(resize(read_image(ASSETS / n), [size]), [size]) for n in names])


def photo_box(name: str, size: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """A photo as load_photos makes it, and its hand-drawn box moved into the centre square."""
    image = read_image(ASSETS / name)
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    dx, dy = (round(w * scale) - size) // 2, (round(h * scale) - size) // 2
    x0, y0, x1, y1 = (round(v * scale) for v in PHOTO_BOXES[name])
    box = (max(0, x0 - dx), max(0, y0 - dy), min(size, x1 - dx), min(size, y1 - dy))
    return load_photos([name], size)[0], box


def _region(name: str, box, side: int | tuple[int, int]) -> torch.Tensor:
    x0, y0, x1, y1 = box
    side = [side, side] if isinstance(side, int) else list(side)
    return resize(read_image(ASSETS / name)[:, y0:y1, x0:x1], side, antialias=True)


def composite(background: str, items, size: int = 224):
    """Crops pasted on a background at known places (224 px coordinates): the image and
    {class: box}."""
    if background == "grey":
        image = torch.full((3, size, size), 0.5)
    else:
        image = _region(*BACKGROUNDS[background], size)
    boxes = {}
    for cls, side, x, y, flipped in items:
        patch = _region(*CROPS[cls], side)
        image[:, y : y + side, x : x + side] = patch.flip(-1) if flipped else patch
        boxes[cls] = (x, y, x + side, y + side)
    return image, boxes


def localization_cases():
    """(name, image, class, box) for the photos and the composites, all 224 x 224."""
    cases = []
    for name, cls in (("chelsea.jpg", CAT), ("coffee.jpg", CUP)):
        image, box = photo_box(name, 224)
        cases.append((name, image, cls, box))
    for name, background, items, scored in COMPOSITES:
        image, boxes = composite(background, items)
        for cls in scored:
            label = name if len(scored) == 1 else f"{name}: {'cat' if cls == CAT else 'cup'}"
            cases.append((label, image, cls, boxes[cls]))
    return cases


def pointing_and_mass(saliency_map: torch.Tensor, box) -> tuple[float, float]:
    """How far the map's maximum is from the box (px, 0 inside), and the share of the map's
    positive mass inside the box divided by the box's share of the image."""
    m = np.asarray(saliency_map, dtype=np.float64)
    x0, y0, x1, y1 = box
    inside = np.zeros(m.shape, bool)
    inside[y0:y1, x0:x1] = True
    y, x = np.unravel_index(np.argmax(m), m.shape)
    distance = float(np.hypot(max(x0 - x, 0, x - x1 + 1), max(y0 - y, 0, y - y1 + 1)))
    pos = np.clip(m, 0, None)
    total = pos.sum()
    ratio = float(pos[inside].sum() / total / inside.mean()) if total > 0 else float("nan")
    return distance, ratio


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation with average ranks for ties (Grad-CAM has many zeros)."""

    def ranks(x: torch.Tensor) -> torch.Tensor:
        x = x.flatten().double()
        order = x.argsort()
        _, inverse, counts = torch.unique_consecutive(
            x[order], return_inverse=True, return_counts=True
        )
        ends = counts.cumsum(0).double()
        avg = ends - (counts.double() - 1) / 2  # mean rank of each tie group (1-based)
        out = torch.empty_like(x)
        out[order] = avg[inverse]
        return out

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else float("nan")


def lite0_cascade() -> list[tuple[str, list[str]]]:
    """Top-down groups: fc, head, then each stage of blocks, then the stem."""
    stages, start = [], 0
    for k, (_, _, repeats, _, _) in enumerate(STAGES):
        stages.append((f"stage {k + 1}", [f"blocks.{i}" for i in range(start, start + repeats)]))
        start += repeats
    return [("fc", ["fc"]), ("head", ["head"]), *reversed(stages), ("stem", ["stem"])]


def reinit(model, names: list[str], seed: int) -> None:
    torch.manual_seed(seed)
    modules = dict(model.net.named_modules())
    with torch.no_grad():
        for name in names:
            for m in modules[name].modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()


def all_maps(model, x, classes, opts) -> dict[str, torch.Tensor]:
    return {m: saliency(model, x, classes, m, **opts.get(m, {})) for m in METHODS}


def methods_grid(photo: torch.Tensor, maps: dict, tile: int = 140) -> Image.Image:
    """The photo and each method's overlay, captioned, in rows of four."""
    small = resize(photo, [tile], antialias=True)
    tiles = [("photo", to_pil(small))]
    for m, saliency_map in maps.items():
        heat = resize(saliency_map[None], [tile], antialias=True)[0]
        tiles.append((m.replace("_", " "), overlay(small, heat, method=m)))
    font = ImageFont.load_default(size=13)
    cols, cap = 4, 20
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * (tile + 4) + 4, rows * (tile + cap + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (label, img) in enumerate(tiles):
        x0, y0 = 4 + (k % cols) * (tile + 4), 4 + (k // cols) * (tile + cap + 4)
        sheet.paste(img, (x0, y0))
        draw.text((x0 + 2, y0 + tile + 3), label, fill=(0, 0, 0), font=font)
    return sheet


def section_ig(args, model) -> str:
    lines = [
        "| image | px | rule | " + " | ".join(f"{s} steps" for s in args.ig_steps) + " |",
        "|---|---:|---|" + "---:|" * len(args.ig_steps),
    ]
    for size in args.ig_sizes:
        x = load_photos(args.images, size)
        for rule in RULES:
            errs = []
            for steps in args.ig_steps:
                _, info = saliency(
                    model,
                    x,
                    None,
                    "integrated_gradients",
                    steps=steps,
                    quadrature_rule=rule,
                    return_info=True,
                )
                errs.append(info.relative_error.tolist())
            for i, name in enumerate(args.images):
                cells = " | ".join(f"{e[i]:.2%}" for e in errs)
                lines.append(f"| {name} | {size} | {rule} | {cells} |")
    return "\n".join(lines)


def section_sanity(args, model, x, classes, opts, original) -> str:
    steps = lite0_cascade()
    rows = {m: [] for m in METHODS}
    fresh = load_model(args.model, device=model.device)
    for k, (_, names) in enumerate(steps):
        reinit(fresh, names, seed=1000 + k)
        maps = all_maps(fresh, x, classes, opts)
        for m in METHODS:
            rs = [spearman(original[m][i].abs(), maps[m][i].abs()) for i in range(len(x))]
            rs = [r for r in rs if not np.isnan(r)]
            rows[m].append(float(np.mean(rs)) if rs else float("nan"))
    head = "| method | " + " | ".join(f"+{label}" for label, _ in steps) + " |"
    lines = [head, "|---|" + "---:|" * len(steps)]
    for m in METHODS:
        cells = ("blank" if np.isnan(r) else f"{r:.2f}" for r in rows[m])
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve(model, start, fill, order, cls, n: int, batch: int) -> np.ndarray:
    """Scores after replacing the first k * ceil(HW / n) pixels of ``order`` by ``fill``."""
    hw = order.numel()
    per = math.ceil(hw / n)
    rank = torch.empty(hw, dtype=torch.long)
    rank[order] = torch.arange(hw)
    rank = rank.view(1, 1, *start.shape[-2:])
    scores = []
    with torch.no_grad():
        for k0 in range(0, n + 1, batch):
            ks = torch.arange(k0, min(k0 + batch, n + 1)).view(-1, 1, 1, 1)
            images = torch.where(rank < ks * per, fill, start)
            scores.append(model(images).softmax(1)[:, cls])
    return torch.cat(scores).double().numpy()


def auc(s: np.ndarray) -> float:
    n = len(s) - 1
    return float((s.sum() - s[0] / 2 - s[-1] / 2) / n)


def section_deletion(args, model, x, classes, original) -> str:
    mean = model.mean.view(1, 3, 1, 1).to(x.dtype)
    blurred = blur(x, 11, 5.0)
    gen = torch.Generator().manual_seed(0)
    results = {}
    orders = {m: [(-original[m][i]).flatten().numpy() for i in range(len(x))] for m in METHODS}
    for name, per_image in orders.items():
        dels, ins = [], []
        for i, values in enumerate(per_image):
            perm = torch.randperm(values.size, generator=gen)  # random tie-breaking
            order = perm[torch.as_tensor(values[perm.numpy()]).argsort(stable=True)]
            c = classes[i]
            dels.append(auc(curve(model, x[i : i + 1], mean, order, c, args.n, args.batch)))
            ins.append(
                auc(curve(model, blurred[i : i + 1], x[i : i + 1], order, c, args.n, args.batch))
            )
        results[name] = (dels, ins)
    dels, ins = [], []
    for i in range(len(x)):
        for _ in range(args.random_orders):
            order = torch.randperm(x.shape[-1] * x.shape[-2], generator=gen)
            c = classes[i]
            dels.append(auc(curve(model, x[i : i + 1], mean, order, c, args.n, args.batch)))
            ins.append(
                auc(curve(model, blurred[i : i + 1], x[i : i + 1], order, c, args.n, args.batch))
            )
    results["random order"] = (dels, ins)
    lines = [
        "| method | deletion AUC (lower is better) | insertion AUC (higher is better) |",
        "|---|---:|---:|",
    ]
    for name, (d, s) in results.items():
        lines.append(f"| {name} | {np.mean(d):.3f} | {np.mean(s):.3f} |")
    return "\n".join(lines)


def localization_maps(model, opts) -> tuple[list, dict[str, torch.Tensor]]:
    cases = localization_cases()
    x = torch.stack([image for _, image, _, _ in cases])
    classes = [cls for _, _, cls, _ in cases]
    return cases, all_maps(model, x, classes, opts)


def section_localization(model, cases, maps) -> str:
    x = torch.stack([image for _, image, _, _ in cases])
    with model_guard(model), torch.no_grad():
        probs = model(x).softmax(1)
    scores = {}  # method -> [(distance, distance as drawn, mass ratio)] per case
    for m in METHODS:
        rows = []
        for i, (_, _, _, box) in enumerate(cases):
            distance, ratio = pointing_and_mass(maps[m][i], box)
            drawn = display_map(maps[m][i], m, clip=100.0)  # sign and smoothing, no clipping
            rows.append((distance, pointing_and_mass(drawn, box)[0], ratio))
        scores[m] = rows
    n = len(cases)
    lines = [
        "| method | pointing game | within 15 px | as drawn | mass in box ÷ box share: "
        "mean | min |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m, rows in scores.items():
        distance, drawn, ratios = (np.array(c) for c in zip(*rows))
        lines.append(
            f"| {m} | {(distance == 0).sum()}/{n} | {(distance <= 15).sum()}/{n} | "
            f"{(drawn == 0).sum()}/{n} | {np.nanmean(ratios):.2f} | {np.nanmin(ratios):.2f} |"
        )
    lines += [
        "",
        "| case | target, p | box share | ideal | "
        + " | ".join(m.replace("_", " ") for m in METHODS)
        + " |",
        "|---|---|---:|---:|" + "---:|" * len(METHODS),
    ]
    for i, (name, _, cls, (x0, y0, x1, y1)) in enumerate(cases):
        share = (x1 - x0) * (y1 - y0) / (x.shape[-1] * x.shape[-2])
        label = model.classes[cls]
        cells = " | ".join(
            f"{'✓' if scores[m][i][0] == 0 else '✗'} {scores[m][i][2]:.2f}" for m in METHODS
        )
        lines.append(
            f"| {name} | {label}, {float(probs[i, cls]):.2f} | {share:.2f} | {1 / share:.2f} | "
            f"{cells} |"
        )
    return "\n".join(lines)


def localization_sheet(cases, maps, method: str, tile: int = 160) -> Image.Image:
    """Each case's overlay for ``method`` with its box in green, in rows of four."""
    font = ImageFont.load_default(size=13)
    cols, cap = 4, 20
    rows = -(-len(cases) // cols)
    sheet = Image.new("RGB", (cols * (tile + 4) + 4, rows * (tile + cap + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (name, image, _, box) in enumerate(cases):
        picture = overlay(image, maps[method][k], method=method).resize((tile, tile))
        s = tile / image.shape[-1]
        ImageDraw.Draw(picture).rectangle(
            [round(box[0] * s), round(box[1] * s), round(box[2] * s) - 1, round(box[3] * s) - 1],
            outline=(0, 255, 0),
            width=2,
        )
        x0, y0 = 4 + (k % cols) * (tile + 4), 4 + (k // cols) * (tile + cap + 4)
        sheet.paste(picture, (x0, y0))
        draw.text((x0 + 2, y0 + tile + 3), name, fill=(0, 0, 0), font=font)
    return sheet


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--images", default="chelsea.jpg,coffee.jpg")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--samples", type=int, default=16, help="SmoothGrad samples")
    p.add_argument("--steps", type=int, default=32, help="Integrated Gradients steps")
    p.add_argument("--n", type=int, default=50, help="deletion/insertion steps")
    p.add_argument("--random-orders", type=int, default=3)
    p.add_argument("--batch", type=int, default=17, help="images per forward pass")
    p.add_argument("--sections", default="ig,sanity,deletion,localization")
    p.add_argument("--ig-sizes", default="96,224")
    p.add_argument("--ig-steps", default="16,64,256")
    p.add_argument("--panels", default=None, help="write saliency_<method>.png panels here")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    args.images = args.images.split(",")
    args.ig_sizes = [int(s) for s in args.ig_sizes.split(",")]
    args.ig_steps = [int(s) for s in args.ig_steps.split(",")]
    sections = args.sections.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model(args.model, device="cpu")
    print(f"model {args.model}, images {', '.join(args.images)}, threads {torch.get_num_threads()}")
    if "ig" in sections:
        print("\n### Integrated Gradients completeness error, black baseline\n")
        print("|f(x) - f(0) - sum(attr)| / |f(x) - f(0)|\n")
        print(section_ig(args, model), flush=True)
    opts = {"smoothgrad": {"samples": args.samples}, "integrated_gradients": {"steps": args.steps}}
    if "localization" in sections or args.panels:
        cases, loc_maps = localization_maps(model, opts)
    if "localization" in sections:
        print(f"\n### Localization, 224 px, SmoothGrad {args.samples}, IG {args.steps} steps\n")
        print(section_localization(model, cases, loc_maps), flush=True)
    if not {"sanity", "deletion"} & set(sections) and not args.panels:
        return
    x = load_photos(args.images, args.size)
    with model_guard(model), torch.no_grad():
        classes = model(x).argmax(1).tolist()
    original = all_maps(model, x, classes, opts)
    print(f"\n{args.size} px, smoothgrad samples {args.samples}, IG steps {args.steps}")
    if args.panels:
        out = Path(args.panels)
        for m, maps in original.items():
            caption = f"{m} ({args.images[0]})"
            picture = panel(x[0], maps[0], model=model, caption=caption, method=m)
            picture.quantize(256, dither=0).save(out / f"saliency_{m}.png", optimize=True)
        grid = methods_grid(x[0], {m: maps[0] for m, maps in original.items()})
        grid.quantize(256, dither=0).save(out / "saliency_methods.png", optimize=True)
    if "sanity" in sections:
        print("\n### Sanity check: Spearman rank correlation with the trained model's map\n")
        print("Columns: cumulative re-initialization, top-down; |map|, mean over images.")
        print("'blank': the map is all zeros after that step (rank correlation undefined).\n")
        print(section_sanity(args, model, x, classes, opts, original), flush=True)
    if "deletion" in sections:
        print(f"\n### Deletion and insertion, {args.n} steps, mean over images\n")
        print(section_deletion(args, model, x, classes, original), flush=True)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
