"""Which saliency method points at the object? Localization on the photo set, by part.

On every photo of scripts/data/photoset.json (224 px, its own class and hand-drawn box), each
candidate's map is scored by the pointing game (is the map's maximum within 15 px of the box,
Zhang et al. 2016's tolerance) and by the mass in the box: the share of the map's positive mass
inside the box divided by the box's share of the image (1 is chance). Candidates: every method
of :data:`dreamviz.attribution.METHODS` with its defaults (Grad-CAM and guided Grad-CAM at
their default layer, ``head``: 7 x 7 on EfficientNet-Lite0), and Grad-CAM and guided Grad-CAM
at a finer layer (``blocks.10``: 14 x 14).

The rule that picks the default, written before any method was run on the photo set: on the
**choice** part only, the candidate with the most photos within 15 px; ties: the higher mean
mass ratio. The report part is then reported as it comes; the goal there is >= 90 % within
15 px and a mean mass ratio >= 1.5.

One JSON line per (photo, candidate) is appended to ``--out``; a rerun skips what is there.

    nohup python scripts/eval_localization.py --out localization.jsonl &
    python scripts/eval_localization.py --table localization.jsonl
    python scripts/eval_localization.py --part report --sheet docs/images/saliency_localization.png
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import dreamviz
from dreamviz.attribution import METHODS, saliency
from dreamviz.defaults import SALIENCY

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photoset  # noqa: E402
from eval_saliency import localization_sheet, pointing_and_mass  # noqa: E402
from photoset import read_rows  # noqa: E402

FINE = "blocks.10"  # 14 x 14 on EfficientNet-Lite0 at 224 px
TOLERANCE = 15  # px


def candidates(fine: str | None = FINE) -> dict[str, tuple[str, dict]]:
    """label -> (method, options)."""
    out = {m: (m, {}) for m in METHODS}
    if fine:
        out[f"gradcam@{fine}"] = ("gradcam", {"layer": fine})
        out[f"guided_gradcam@{fine}"] = ("guided_gradcam", {"layer": fine})
    return out


def run(out, model, cases, cands: dict) -> int:
    """Append a line per (photo, candidate) not yet in ``out``; returns how many it wrote."""
    done = {(r["case"], r["method"]) for r in read_rows(out)}
    made = 0
    for case in cases:
        for label, (method, options) in cands.items():
            if (case.name, label) in done:
                continue
            t0 = time.perf_counter()
            m = saliency(model, case.image[None], case.target, method, **options)[0]
            distance, ratio = pointing_and_mass(m.cpu(), case.box)
            rec = {"case": case.name, "part": case.part, "method": label, "distance": distance}
            rec.update(mass=ratio, seconds=round(time.perf_counter() - t0, 2))
            with open(out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            made += 1
        print(case.name, flush=True)
    return made


def summary(rows: list[dict], part: str) -> dict[str, tuple[int, int, float, float]]:
    """method -> (photos within TOLERANCE, photos, mean mass ratio, min mass ratio)."""
    per: dict = {}
    for r in rows:
        if r["part"] == part:
            per.setdefault(r["method"], []).append(r)
    out = {}
    for m, rs in per.items():
        mass = np.array([r["mass"] for r in rs], dtype=float)
        hits = sum(r["distance"] <= TOLERANCE for r in rs)
        out[m] = (hits, len(rs), float(np.nanmean(mass)), float(np.nanmin(mass)))
    return out


def choose(rows: list[dict]) -> str:
    """The rule of the module docstring, on the choice part of ``rows`` (others are ignored)."""
    s = summary(rows, "choice")
    return max(s, key=lambda m: (s[m][0], s[m][2]))


def table(rows: list[dict], part: str) -> str:
    s = summary(rows, part)
    lines = [
        f"| method | within {TOLERANCE} px ({part}) | mass in box ÷ box share: mean | min |",
        "|---|---:|---:|---:|",
    ]
    for m, (hits, n, mean, low) in sorted(s.items(), key=lambda kv: (-kv[1][0], -kv[1][2])):
        lines.append(f"| {m} | {hits}/{n} ({hits / n:.0%}) | {mean:.2f} | {low:.2f} |")
    return "\n".join(lines)


def sheet(model, cases, method: str, path) -> None:
    """``method``'s map on each case, its box in green (PNG at ``path``)."""
    x = torch.stack([c.image for c in cases])
    maps = saliency(model, x, [c.target for c in cases], method)
    tuples = [(c.name, c.image, c.target, c.box) for c in cases]
    picture = localization_sheet(tuples, {method: maps}, method)
    picture.quantize(256, dither=0).save(path, optimize=True)


def main(argv=None) -> None:
    ap = photoset.eval_arguments(__doc__, "localization.jsonl")
    ap.add_argument("--sheet", help="write the default method's maps on --part here (PNG)")
    args = ap.parse_args(argv)
    if args.sheet:
        torch.set_num_threads(args.threads)
        model = dreamviz.load_model(device="cpu")
        sheet(model, photoset.load(args.part), SALIENCY["method"], args.sheet)
        return
    if args.table:
        photoset.print_tables(read_rows(args.table), choose, table)
        return
    torch.set_num_threads(args.threads)
    model = dreamviz.load_model(device="cpu")
    run(args.out, model, photoset.load(args.part), candidates())


if __name__ == "__main__":
    main()
