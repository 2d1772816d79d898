"""How the cost of a forward+backward pass per row (per image) depends on the rows per pass: the
measurement behind ``defaults.BATCHING`` (see :mod:`dreamviz.batching`).

For each image size, ``--total`` rows go through the network (to the input gradient, as saliency
does; ``--layer`` truncates the pass as render and gallery do) in chunks of each ``--rows`` value.
Every round runs every chunk size once, in an order that rotates from round to round; the table
gives ms per row (best and median over the rounds), the speed relative to one row a pass, the
largest activation of the chunk (the policy's measure, in MiB) and the chunk the policy picks.

    python scripts/bench_batching.py                                  # CPU, 128 and 224 px
    python scripts/bench_batching.py --threads 1 --sizes 128 224 320 --rounds 5
    python scripts/bench_batching.py --device cuda --rows 1 8 32 128 --total 128
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

import dreamviz
from dreamviz import batching
from dreamviz.hooks import LOGITS, Capture
from dreamviz.models import model_guard


def per_row(model, layer: str, x: torch.Tensor, rows: int) -> float:
    """Seconds per row for ``x`` in chunks of ``rows``: forward to ``layer``, backward to x."""
    dev = x.device
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    with model_guard(model), Capture(model, [layer]) as cap:
        for r0 in range(0, x.shape[0], rows):
            xi = x[r0 : r0 + rows].detach().requires_grad_(True)
            out = cap(xi)[layer].float()
            torch.autograd.grad(out.flatten(1).mean(1).sum(), xi)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / x.shape[0]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 6, 8, 12, 16, 32])
    p.add_argument("--total", type=int, default=48, help="rows per measurement (default 48)")
    p.add_argument("--layer", default=LOGITS, help="where the pass stops (default: logits)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = dreamviz.load_model(device=args.device)
    dev = model.device
    g = torch.Generator().manual_seed(0)
    inputs = {s: torch.rand(args.total, 3, s, s, generator=g).to(dev) for s in args.sizes}
    cases = [(s, r) for s in args.sizes for r in args.rows]
    for s, r in cases:  # warm-up
        per_row(model, args.layer, inputs[s][: max(r, 1)], r)
    times: dict[tuple[int, int], list[float]] = {c: [] for c in cases}
    load = [os.getloadavg()[0]]
    for k in range(args.rounds):
        for s, r in cases[k % len(cases) :] + cases[: k % len(cases)]:
            times[(s, r)].append(per_row(model, args.layer, inputs[s], r))
        load.append(os.getloadavg()[0])
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.machine()
    print(
        f"efficientnet_lite0 to {args.layer}, {args.total} rows per measurement, {dev} ({where}, "
        f"{os.cpu_count()} cores), torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds; load average {min(load):.1f}-{max(load):.1f}\n"
    )
    print(
        "| size | rows a pass | largest activation MiB | ms/row best | ms/row median | "
        "speed vs 1 row (best) | policy |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for s in args.sizes:
        largest, _ = batching.row_bytes(model, (s, s), [args.layer])
        pick = batching.rows_per_pass(model, s, [args.layer], rows=args.total)
        one = min(times[(s, args.rows[0])])
        for r in args.rows:
            t = times[(s, r)]
            print(
                f"| {s} | {r} | {r * largest / 2**20:.0f} | {min(t) * 1e3:.1f} | "
                f"{statistics.median(t) * 1e3:.1f} | {one / min(t):.2f}x | "
                f"{'<- the policy' if r == pick else ''} |"
            )
        print(
            f"|  | policy: {pick} rows a pass ({pick * largest / 2**20:.0f} MiB) |  |  |  |  |  |"
        )


if __name__ == "__main__":
    main()
