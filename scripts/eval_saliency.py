"""Saliency faithfulness on lite0 and the assets/ photos, as markdown tables.

* ``ig``: Integrated Gradients completeness error per quadrature rule and step count;
* ``sanity``: cascading randomization (Adebayo et al. 2018): re-initialize lite0 top-down, one
  stage at a time, and report the Spearman rank correlation of each method's |map| with the
  original one (a faithful method decorrelates);
* ``deletion``: deletion and insertion AUC (Petsiuk et al. 2018) for every method and for a
  random pixel order. Deletion sets the most salient pixels to 0 in normalized space (the
  model's mean colour); insertion restores them onto a blurred copy (kernel 11, sigma 5). The
  score is the softmax probability of the original top-1 class; AUC = (sum s - s0/2 - sn/2) / n.

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
from dreamviz.visualize import overlay, panel

ASSETS = Path(__file__).resolve().parent.parent / "assets"
RULES = ("adaptive", "gausslegendre", "riemann_left", "trapezoid")


def load_photos(names: list[str], size: int) -> torch.Tensor:
    return torch.stack([center_crop(resize(read_image(ASSETS / n), [size]), [size]) for n in names])


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
        tiles.append((m.replace("_", " "), overlay(small, heat)))
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
    p.add_argument("--sections", default="ig,sanity,deletion")
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
    if not {"sanity", "deletion"} & set(sections) and not args.panels:
        return
    x = load_photos(args.images, args.size)
    opts = {"smoothgrad": {"samples": args.samples}, "integrated_gradients": {"steps": args.steps}}
    with model_guard(model), torch.no_grad():
        classes = model(x).argmax(1).tolist()
    original = all_maps(model, x, classes, opts)
    print(f"\n{args.size} px, smoothgrad samples {args.samples}, IG steps {args.steps}")
    if args.panels:
        out = Path(args.panels)
        for m, maps in original.items():
            picture = panel(x[0], maps[0], model=model, caption=f"{m} ({args.images[0]})")
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
