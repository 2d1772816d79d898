"""Do explain's channel rankings predict ablation? Zero the top-k channels and watch the logit.

On every photo of scripts/data/photoset.json (each with its own class), at ``blocks.3``
(early), ``blocks.7`` and ``blocks.10`` (middle), ``blocks.12`` and ``head``, each ranking of
:data:`dreamviz.explain.METHODS` (``ig``: Integrated Gradients from a zeroed layer;
``ig_blur``: from the layer on a blurred copy; ``grad_x_act``; ``ablation``: the exact
single-channel drop) is scored by the drop of the target logit when its top-k channels
(k = 1, 4, 16) are zeroed together, next to k random channels (median of 20 draws) and the k
most active channels (largest mean activation). A ranking that predicts ablation drops the
logit most.

The rule that picks the default, written before any ranking was run on the photo set: on the
**choice** part only, the method with the most (layer, k) cells where its mean drop is larger
than both the mean random-k and the mean most-active-k drop; ties: the larger mean drop over
all cells. The report part is then reported as it comes.

One JSON line per (photo, layer) is appended to ``--out``; a rerun skips what is there.

    nohup python scripts/eval_explain.py --part choice --out explain_eval.jsonl &
    python scripts/eval_explain.py --table explain_eval.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

import dreamviz
from dreamviz.explain import METHODS, ablate_many, channel_ablation, layer_attribution
from dreamviz.hooks import Capture, as_nchw, check_layer
from dreamviz.models import model_guard

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photoset  # noqa: E402
from photoset import read_rows  # noqa: E402

LAYERS = ("blocks.3", "blocks.7", "blocks.10", "blocks.12", "head")
KS = (1, 4, 16)
DRAWS = 20


def scores(model, x, target: int, layer: str) -> dict[str, torch.Tensor]:
    """Every ranking's per-channel values, and the mean activation (``active``)."""
    layout = check_layer(model, layer).layout
    out = {}
    for method in METHODS:
        if method == "ablation":
            out[method] = channel_ablation(model, x, target, layer)
            continue
        attr, _, _, _ = layer_attribution(model, x, target, layer, method)
        out[method] = as_nchw(attr, layout).flatten(2).sum(2)[0].float().cpu()
    with Capture(model, [layer]) as cap, torch.no_grad():
        act = as_nchw(cap(x)[layer], layout)
    out["active"] = act.flatten(2).mean(2)[0].float().cpu()
    return out


def row(model, case, layer: str, ks=KS, draws: int = DRAWS, seed: int = 0) -> dict:
    """One (photo, layer): the logit drop for each ranking's top-k, most-active-k and random-k
    (the median over ``draws`` draws), all in one batch of ablations."""
    t0 = time.perf_counter()
    x = case.image[None].to(model.device)
    t = case.target
    with model_guard(model), torch.no_grad():
        logit = float(model(x)[0, t])
    ranked = scores(model, x, t, layer)
    n = len(ranked["active"])
    g = torch.Generator().manual_seed(seed)
    sets, names = [], []
    for k in (k for k in ks if k < n):
        for name, values in ranked.items():
            sets.append(values.topk(k).indices)
            names.append((name, k))
        for _ in range(draws):
            sets.append(torch.randperm(n, generator=g)[:k])
            names.append(("random", k))
    keep = torch.ones(len(sets), n)
    for i, idx in enumerate(sets):
        keep[i, idx] = 0
    drops = (logit - ablate_many(model, x, t, layer, keep)).tolist()
    out: dict[str, dict[str, float]] = {}
    for (name, k), d in zip(names, drops):
        out.setdefault(name, {}).setdefault(str(k), []).append(d)
    out = {m: {k: statistics.median(v) for k, v in per.items()} for m, per in out.items()}
    return {
        "case": case.name,
        "part": case.part,
        "layer": layer,
        "target": t,
        "logit": logit,
        "drops": out,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def run(out, model, cases, layers=LAYERS, ks=KS, draws: int = DRAWS) -> int:
    """Append a line per (photo, layer) not yet in ``out``; returns how many it wrote."""
    done = {(r["case"], r["layer"]) for r in read_rows(out)}
    made = 0
    for case in cases:
        for layer in layers:
            if (case.name, layer) in done:
                continue
            line = json.dumps(row(model, case, layer, ks, draws))
            with open(out, "a") as f:
                f.write(line + "\n")
            made += 1
            print(f"{case.name} {layer}", flush=True)
    return made


def cells(rows: list[dict]) -> dict:
    """{(layer, k): {method: mean drop}} over ``rows``."""
    acc: dict = {}
    for r in rows:
        for m, per in r["drops"].items():
            for k, d in per.items():
                acc.setdefault((r["layer"], int(k)), {}).setdefault(m, []).append(d)
    return {key: {m: sum(v) / len(v) for m, v in per.items()} for key, per in acc.items()}


def choose(rows: list[dict], methods=METHODS) -> str:
    """The rule of the module docstring, on ``rows`` (the choice part's)."""
    table = cells(rows)

    def score(m):
        wins = sum(c[m] > max(c["random"], c["active"]) for c in table.values())
        return wins, sum(c[m] for c in table.values()) / len(table)

    return max(methods, key=score)


def table(rows: list[dict], part: str, methods=METHODS) -> str:
    rows = [r for r in rows if r["part"] == part]
    data = cells(rows)
    cols = [*methods, "active", "random"]
    n = len({r["case"] for r in rows})
    lines = [
        f"{part} part, {n} photos: mean logit drop when the top-k channels are zeroed "
        "(★: larger than both most-active-k and random-k)",
        "",
        "| layer | k | " + " | ".join(cols) + " |",
        "|---|---:|" + "---:|" * len(cols),
    ]
    order = {layer: i for i, layer in enumerate(dict.fromkeys(r["layer"] for r in rows))}
    for (layer, k), c in sorted(data.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        best = max(c["random"], c["active"])
        cell = [f"{c[m]:.2f}{' ★' if m in methods and c[m] > best else ''}" for m in cols]
        lines.append(f"| {layer} | {k} | " + " | ".join(cell) + " |")
    return "\n".join(lines)


def per_photo(rows: list[dict], part: str, method: str) -> str:
    """Per (layer, k), out of the part's photos: how often ``method``'s top-k drop the logit
    more than both most-active-k and random-k, and how often zeroing them raises it."""
    acc: dict = {}
    for r in rows:
        if r["part"] != part:
            continue
        d = r["drops"]
        for k, drop in d[method].items():
            wins, raises, n = acc.get((r["layer"], int(k)), (0, 0, 0))
            best = max(d["active"][k], d["random"][k])
            acc[(r["layer"], int(k))] = (wins + (drop > best), raises + (drop < 0), n + 1)
    lines = [
        f"{part} part, {method}, photo by photo:",
        "",
        "| layer | k | photos where the top-k drop more than both | photos where zeroing them "
        "raises the logit |",
        "|---|---:|---:|---:|",
    ]
    order = {layer: i for i, layer in enumerate(dict.fromkeys(r["layer"] for r in rows))}
    for (layer, k), (wins, raises, n) in sorted(
        acc.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])
    ):
        lines.append(f"| {layer} | {k} | {wins}/{n} | {raises}/{n} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = photoset.eval_arguments(__doc__, "explain_eval.jsonl")
    ap.add_argument("--layers", default=",".join(LAYERS))
    args = ap.parse_args(argv)
    if args.table:
        rows = read_rows(args.table)
        photoset.print_tables(rows, choose, table)
        for part in ("choice", "report"):
            for method in METHODS:
                if rows_of(rows, part):
                    print(per_photo(rows, part, method) + "\n")
        return
    torch.set_num_threads(args.threads)
    model = dreamviz.load_model(device="cpu")
    run(args.out, model, photoset.load(args.part), args.layers.split(","))


def rows_of(rows: list[dict], part: str) -> list[dict]:
    return [r for r in rows if r["part"] == part]


if __name__ == "__main__":
    main()
