"""Forward+backward cost of capturing an early, a middle and the last block of EfficientNet-Lite0.

For each batch size it times, per step: ``x`` (requires grad) -> capture one layer ->
``mean(activation).backward()``, with early stop (the default) and without it
(``Capture(..., stop_early=False)``), and a full forward+backward of the whole model
(``model(x).mean().backward()``) as the reference. Parameters are frozen in every case, as in
rendering, so only the input gradient is computed.

Measurements are interleaved: after warm-up, every round runs each case once, in an order that
rotates from round to round, and each case's time is the median over rounds. With ``--runs N``
that is repeated N times (a pause in between) and the table reports the median of the N run
medians, which damps other load on a shared machine.

    python scripts/bench_hooks.py                      # batch 1 and 8, 2 threads, 3 runs
    python scripts/bench_hooks.py --write table.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

import dreamviz
from dreamviz.hooks import Capture

LAYERS = [("early", "blocks.1"), ("middle", "blocks.8"), ("last", "blocks.15")]


def _step(model, x, layer, stop_early) -> float:
    """One forward+backward; returns its wall time in ms (Capture set-up not included)."""
    x = x.detach().clone().requires_grad_(True)
    if layer is None:
        start = time.perf_counter()
        model(x).mean().backward()
        return (time.perf_counter() - start) * 1e3
    with Capture(model, [layer], stop_early=stop_early) as cap:
        start = time.perf_counter()
        cap(x)[layer].mean().backward()
        elapsed = time.perf_counter() - start
    assert x.grad is not None
    return elapsed * 1e3


def _cases():
    cases = [("full", None, False)]
    for _, layer in LAYERS:
        cases += [(f"{layer} early-stop", layer, True), (f"{layer} no-early-stop", layer, False)]
    return cases


def run_once(model, x, warmup: int, rounds: int) -> list[dict[str, float]]:
    """Times of every case, one dict per timed round."""
    cases = _cases()
    out = []
    for r in range(warmup + rounds):
        shift = r % len(cases)
        times = {
            name: _step(model, x, layer, se) for name, layer, se in cases[shift:] + cases[:shift]
        }
        if r >= warmup:
            out.append(times)
    return out


def summarize(runs: list[list[dict[str, float]]]) -> dict[str, tuple[float, float, float]]:
    """Per case: (median of the run medians, lowest and highest run median) in ms.

    Ratios are paired: taken within each round, whose cases ran seconds apart, then the median
    over all rounds of all runs. That cancels most of the drift from other load.
    """
    stats = {}
    for name in runs[0][0]:
        medians = [statistics.median(r[name] for r in run) for run in runs]
        stats[name] = (statistics.median(medians), min(medians), max(medians))
    rounds = [r for run in runs for r in run]
    for _, layer in LAYERS:
        early, late = f"{layer} early-stop", f"{layer} no-early-stop"
        stats[f"{layer} early/full"] = statistics.median(r[early] / r["full"] for r in rounds)
        stats[f"{layer} no-early/full"] = statistics.median(r[late] / r["full"] for r in rounds)
        stats[f"{layer} early/no-early"] = statistics.median(r[early] / r[late] for r in rounds)
    return stats


def _ms(stat) -> str:
    mid, lo, hi = stat
    return f"{mid:.1f} ({lo:.1f}-{hi:.1f})"


def table(results: dict[int, dict]) -> str:
    lines = [
        "| batch | layer | position | early stop ms | no early stop ms | early / full "
        "| no-early / full | early / no-early |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch, st in results.items():
        lines.append(f"| {batch} | full model | reference | {_ms(st['full'])} | | 1.00 | 1.00 | |")
        for position, layer in LAYERS:
            lines.append(
                f"| {batch} | `{layer}` | {position} | {_ms(st[f'{layer} early-stop'])} "
                f"| {_ms(st[f'{layer} no-early-stop'])} | {st[f'{layer} early/full']:.2f} "
                f"| {st[f'{layer} no-early/full']:.2f} | {st[f'{layer} early/no-early']:.2f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=3, help="warm-up rounds per run")
    p.add_argument("--rounds", type=int, default=10, help="timed rounds per run")
    p.add_argument("--runs", type=int, default=3, help="independent runs; report their median")
    p.add_argument("--pause", type=float, default=2.0, help="seconds between runs")
    p.add_argument("--write", help="also write the markdown fragment to this path")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = dreamviz.load_model(device=args.device)
    load_before = os.getloadavg()[0]
    results = {}
    for batch in args.batch:
        x = torch.rand(batch, 3, args.size, args.size, device=model.device)
        runs = []
        for i in range(args.runs):
            if i:
                time.sleep(args.pause)
            runs.append(run_once(model, x, args.warmup, args.rounds))
            full = statistics.median(r["full"] for r in runs[-1])
            print(f"batch {batch} run {i + 1}: full pass {full:.1f} ms", file=sys.stderr)
        results[batch] = summarize(runs)
    load_after = os.getloadavg()[0]

    command = "python scripts/bench_hooks.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    cpu = platform.processor() or platform.machine()
    header = (
        f"efficientnet_lite0 (bundled weights), {args.size} px, device {args.device}, "
        f"torch {torch.__version__}, torch threads: {args.threads}, {cpu}, "
        f"{os.cpu_count()} logical CPUs; load average {load_before:.1f} before, "
        f"{load_after:.1f} after.\n"
        f"Times: median over {args.rounds} interleaved rounds (after {args.warmup} warm-up "
        f"rounds) per run, then the median of {args.runs} runs; in brackets the lowest and "
        "highest run median. Ratios: paired within each round, median over all rounds."
    )
    text = table(results)
    print(header)
    print()
    print(text)
    if args.write:
        fragment = (
            "## Capture hooks: early stop\n\n"
            f"Measured with `{command.strip()}`.\n\n{header}\n\n{text}\n"
        )
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(fragment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
