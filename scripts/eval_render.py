"""Quality of ``dreamviz render`` on EfficientNet-Lite0 at 224 px, 256 steps, the defaults.

* Classes: the softmax probability of the target class on the final image as it is (no
  transforms), for 8 classes. Goal: median >= 0.99.
* Channels: the activation reached (mean of the channel over the map, the render objective),
  divided by the largest value that channel reaches over natural-image crops of ``assets/``
  (random crops and scales of both photos, resized to 224), for channels of an early, a middle
  and a late block. Goal: median >= 8x, and better than a Lucid-style render.
* Three recipes on the same channels and seeds: the defaults (Fourier, decorrelated colour,
  standard transforms, the last 15 % of steps without transforms: ``settle``), Lucid-style
  (the same without ``settle``), and pixel + no transforms (plain RGB pixels through a sigmoid).
* Transfer: the same score measured on the final image under 8 draws of the standard
  transforms (pad, jitter, scale, rotate): how well the image survives small changes, the
  difference between a picture of a feature and an adversarial pattern.

Writes a contact sheet (``--sheet``) and prints markdown tables.

    python scripts/eval_render.py                     # 10-25 min on 2 shared cores
    python scripts/eval_render.py --quick             # 128 px, 96 steps: a few minutes
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import dreamviz
from dreamviz import transforms as T
from dreamviz.engine import render
from dreamviz.hooks import Capture
from dreamviz.io import read_image, to_pil
from dreamviz.objectives import channel, class_logit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = [
    "goldfish",
    "tabby",
    "pizza",
    "daisy",
    "lemon",
    "jellyfish",
    "volcano",
    "espresso",
]
BLOCKS = [("early", "blocks.3"), ("middle", "blocks.8"), ("late", "blocks.14")]
CHANNELS = [0, 10, 20]  # fixed, not picked by looking
RECIPES = {
    "defaults": dict(),
    "lucid-style": dict(settle=0.0),
    "pixel, no transforms": dict(
        param_kind="pixel", decorrelate=False, transforms="none", settle=0.0
    ),
}


def natural_crops(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` random crops (10-100 % of the short side, anywhere) of the sample photos."""
    g = torch.Generator().manual_seed(seed)
    photos = [read_image(os.path.join(ROOT, "assets", f)) for f in ("chelsea.jpg", "coffee.jpg")]
    crops = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[-2:]
        side = int(min(h, w) * (0.1 + 0.9 * torch.rand(1, generator=g).item()))
        y = int(torch.randint(0, h - side + 1, (1,), generator=g))
        x = int(torch.randint(0, w - side + 1, (1,), generator=g))
        crop = img[:, y : y + side, x : x + side][None]
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True))
    return torch.cat(crops).clamp(0, 1)


@torch.no_grad()
def channel_means(model, images: torch.Tensor, layers: list[str], chunk: int = 16) -> dict:
    out = {layer: [] for layer in layers}
    with Capture(model, layers) as cap:
        for i in range(0, len(images), chunk):
            acts = cap(images[i : i + chunk])
            for layer in layers:
                out[layer].append(acts[layer].flatten(2).mean(2))
    return {layer: torch.cat(v) for layer, v in out.items()}


@torch.no_grad()
def under_transforms(images: torch.Tensor, draws: int, seed: int = 123) -> torch.Tensor:
    """``draws`` standard-transformed copies of each image, resized back: (draws*N) x 3 x H x W."""
    t = T.standard()
    h, w = images.shape[-2:]
    out = []
    for d in range(draws):
        gens = [torch.Generator().manual_seed(seed + 1000 * d + i) for i in range(len(images))]
        out.append(F.interpolate(t(images, gens), size=(h, w), mode="bilinear"))
    return torch.cat(out)


def sheet(rows: list[tuple[str, torch.Tensor]], thumb: int, path: str) -> None:
    label_w = 150
    cols = max(len(ims) for _, ims in rows)
    img = Image.new("RGB", (label_w + cols * thumb, len(rows) * thumb), "white")
    draw = ImageDraw.Draw(img)
    for r, (label, ims) in enumerate(rows):
        draw.text((6, r * thumb + thumb // 2 - 6), label, fill="black")
        for c, im in enumerate(ims):
            small = F.interpolate(im[None], size=(thumb, thumb), mode="area")[0]
            img.paste(to_pil(small), (label_w + c * thumb, r * thumb))
    img.quantize(256).save(path, optimize=True)  # a palette keeps the sheet small


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="128 px, 96 steps, 4 classes")
    ap.add_argument("--crops", type=int, default=192, help="natural crops for the channel max")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--sheet", default=os.path.join(ROOT, "docs/images/render_sheet.png"))
    ap.add_argument("--thumb", type=int, default=72)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    classes = CLASSES
    if args.quick:
        args.size, args.steps, classes = 128, 96, CLASSES[:4]
    model = dreamviz.load_model(device="cpu")
    started = time.perf_counter()
    layers = [layer for _, layer in BLOCKS]
    units = [(pos, layer, c) for pos, layer in BLOCKS for c in CHANNELS]

    natural = channel_means(model, natural_crops(args.crops, args.size), layers)
    nat_max = {(layer, c): natural[layer][:, c].max().item() for _, layer, c in units}

    sheet_rows = []
    # ---- classes (defaults only: one batch)
    obj = sum(class_logit(name, image=i) for i, name in enumerate(classes))
    r = render(model, obj, size=args.size, steps=args.steps, batch=len(classes), seed=0)
    idx = torch.tensor([model.class_index(c) for c in classes])
    with torch.no_grad():
        plain = model(r.images).softmax(1)[torch.arange(len(classes)), idx]
        moved = model(under_transforms(r.images, 8)).softmax(1)
        moved = moved.view(8, len(classes), -1)[:, torch.arange(len(classes)), idx].mean(0)
        top1 = model(r.images).argmax(1) == idx
    print(f"classes done in {time.perf_counter() - started:.0f} s", flush=True)
    class_rows = list(zip(classes, plain.tolist(), moved.tolist(), top1.tolist()))
    sheet_rows.append(("classes (defaults)", r.images))

    # ---- channels, three recipes
    results = {}
    for name, kw in RECIPES.items():
        obj = sum(channel(layer, c, image=i) for i, (_, layer, c) in enumerate(units))
        r = render(model, obj, size=args.size, steps=args.steps, batch=len(units), seed=0, **kw)
        reached = channel_means(model, r.images, layers)
        moved = channel_means(model, under_transforms(r.images, 8), layers)
        ratios, transfer = [], []
        for i, (_, layer, c) in enumerate(units):
            ratios.append(reached[layer][i, c].item() / nat_max[(layer, c)])
            m = moved[layer].view(8, len(units), -1)[:, i, c].mean().item()
            transfer.append(m / nat_max[(layer, c)])
        results[name] = (ratios, transfer)
        sheet_rows.append((name, r.images))
        print(f"{name} done in {time.perf_counter() - started:.0f} s", flush=True)

    # ---- report
    print(f"\nEfficientNet-Lite0, {args.size} px, {args.steps} steps, seed 0\n")
    print("| class | p(class), final image | p(class), under transforms | top-1 |")
    print("|---|---|---|---|")
    for c, p, m, t in class_rows:
        print(f"| {c} | {p:.4f} | {m:.4f} | {'yes' if t else 'no'} |")
    med_p = statistics.median(p for _, p, _, _ in class_rows)
    med_m = statistics.median(m for _, _, m, _ in class_rows)
    print(f"| **median** | **{med_p:.4f}** | **{med_m:.4f}** | |")

    print("\nActivation reached / max over natural crops (under transforms in brackets):\n")
    head = " | ".join(RECIPES)
    print(f"| block | unit | {head} |")
    print("|---|---|" + "---|" * len(RECIPES))
    for i, (pos, layer, c) in enumerate(units):
        cells = " | ".join(f"{results[n][0][i]:.1f}x ({results[n][1][i]:.1f}x)" for n in RECIPES)
        print(f"| {pos} | {layer}:{c} | {cells} |")
    meds = " | ".join(
        f"**{statistics.median(results[n][0]):.1f}x** ({statistics.median(results[n][1]):.1f}x)"
        for n in RECIPES
    )
    print(f"| **median** | | {meds} |")
    os.makedirs(os.path.dirname(args.sheet), exist_ok=True)
    sheet(sheet_rows, args.thumb, args.sheet)
    print(f"\ncontact sheet: {args.sheet} ({os.path.getsize(args.sheet) // 1024} KB)")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    print(f"total {time.perf_counter() - started:.0f} s on {machine}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
