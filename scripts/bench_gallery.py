"""Gallery throughput: units per minute at batch 1, 8, 16 and "auto" on EfficientNet-Lite0, 128 and
224 px.

Each measurement renders the same ``--units`` channels of one layer (default 16 of blocks.8, the
middle of the network) through :func:`dreamviz.gallery.build` into a fresh folder, ``batch`` at
a time (``auto``: the library's default, :func:`dreamviz.batching.rows_per_pass`), for a few
steps per unit (default 8: the cost per step does not depend on the step count, so units/min at
S steps is this figure x 8 / S). The time is the render loop's own (``seconds`` per unit in the
manifest, summed), so model loading and page writing are not counted.

Interleaved: after one warm-up round, every round runs each (size, batch) case once, in an
order that rotates from round to round; a case's figure is the median over rounds. The
speed-up is units/min at batch B over units/min at batch 1, from the same rounds.

    python scripts/bench_gallery.py                       # 3 rounds, 8 steps, 2 threads
    python scripts/bench_gallery.py --threads 1 --batches 1 8 16 auto --write table.md
    python scripts/bench_gallery.py --device cuda --batches 1 16 auto --amp
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

import dreamviz
from dreamviz import gallery
from dreamviz.io import write_text


def one(model, layer, size, batch, units, steps, offset, device, amp=False) -> tuple[float, int]:
    """Render ``units`` units ``batch`` at a time; the render loop's seconds and the largest
    batch it used."""
    with tempfile.TemporaryDirectory() as tmp:
        result = gallery.build(
            model,
            [layer],
            channels=f"{offset}-{offset + units - 1}",
            size=size,
            steps=steps,
            batch=batch,
            out=tmp,
            natural=None,
            progress=False,
            amp=amp,
        )
        assert len(result.rendered) == units
        with open(os.path.join(tmp, "manifest.json")) as f:
            records = json.load(f)["units"]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sum(r["seconds"] for r in records), max(r["batch_size"] for r in records)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    p.add_argument("--batches", nargs="+", default=["1", "8", "16", "auto"])
    p.add_argument("--units", type=int, default=16, help="units per measurement (default 16)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--layer", default="blocks.8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--write", metavar="MD", help="also write the table as a markdown fragment")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = dreamviz.load_model(device=args.device)
    dev = model.device
    batches = [b if b == "auto" else int(b) for b in args.batches]
    cases = [(s, b) for s in args.sizes for b in batches]
    times: dict[tuple, list[float]] = {c: [] for c in cases}
    used: dict[tuple, int] = {}
    load = [os.getloadavg()[0]]
    t0 = time.perf_counter()
    for r in range(args.rounds + 1):  # round 0 warms up
        order = cases[r % len(cases) :] + cases[: r % len(cases)]
        for size, batch in order:
            sec, used[(size, batch)] = one(
                model, args.layer, size, batch, args.units, args.steps, r % 4, dev, args.amp
            )
            if r > 0:
                times[(size, batch)].append(sec)
            print(f"round {r} size {size} batch {batch}: {sec:.2f} s", file=sys.stderr)
        load.append(os.getloadavg()[0])
    wall = time.perf_counter() - t0
    upm = {c: args.units * 60.0 / statistics.median(v) for c, v in times.items()}
    if dev.type == "cuda":
        machine = torch.cuda.get_device_name(dev)
    else:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)"
    cmd = "python scripts/bench_gallery.py " + " ".join(argv if argv is not None else sys.argv[1:])
    amp = ", bf16 autocast" if args.amp and dev.type == "cuda" else ""
    lines = [
        f"Units per minute, EfficientNet-Lite0 `{args.layer}` channels, {args.units} units of "
        f"{args.steps} steps per measurement, median of {args.rounds} interleaved rounds; "
        f"{dev.type}{amp}, {args.threads} threads; load average {min(load):.1f}-{max(load):.1f}.",
        "",
        "| size | batch | s per unit | units/min | speed-up vs batch 1 |",
        "|---:|---|---:|---:|---:|",
    ]
    for size in args.sizes:
        base = upm.get((size, batches[0]))
        for batch in batches:
            sec = statistics.median(times[(size, batch)]) / args.units
            shown = f"auto ({used[(size, batch)]})" if batch == "auto" else str(batch)
            lines.append(
                f"| {size} | {shown} | {sec:.3f} | {upm[(size, batch)]:.1f} | "
                f"{upm[(size, batch)] / base:.2f}x |"
            )
    lines += [
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {machine}; torch {torch.__version__}; wall time {wall:.0f} s.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_text(args.write, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
