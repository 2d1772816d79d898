"""Saliency speed: images/s per method, and its ratio to the bare passes the method needs.

For each method the bare baseline is ``passes`` plain forward+backward passes of the same batch
(1 for gradient, ``samples`` for SmoothGrad, ``steps`` for Integrated Gradients), timed in the
same run, interleaved with the method (which goes first alternates), median of ``--rounds``;
"paired ratios" is the median (and range) of method / bare within each round. Goal: <= 1.1.

    python scripts/bench_saliency.py                      # lite0, 224 px, batch 16
    python scripts/bench_saliency.py --samples 4 --steps 16 --rounds 3   # what fits 2 CPU cores
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dreamviz import load_model
from dreamviz.attribution import saliency
from dreamviz.models import model_guard


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_passes(model, x: torch.Tensor, classes: torch.Tensor, passes: int) -> None:
    """What a method cannot avoid: ``passes`` forward+backward passes to the input."""
    with model_guard(model):
        for _ in range(passes):
            xi = x.detach().requires_grad_(True)
            score = model(xi).gather(1, classes[:, None]).sum()
            torch.autograd.grad(score, xi)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--samples", type=int, default=8, help="SmoothGrad samples")
    p.add_argument("--steps", type=int, default=16, help="Integrated Gradients steps")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--methods", default="gradient,smoothgrad,integrated_gradients", help="comma-separated"
    )
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    dev = model.device
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    x = x.to(dev)
    with torch.no_grad():
        classes = model(x).argmax(1)
    plan = []
    for name in args.methods.split(","):
        opts = {"smoothgrad": {"samples": args.samples}}.get(name, {})
        if name == "integrated_gradients":
            opts = {"steps": args.steps}
        passes = opts.get("samples", opts.get("steps", 1))
        plan.append((name, opts, passes))

    def timed(fn, *a, **kw) -> float:
        sync(dev)
        t = time.perf_counter()
        fn(*a, **kw)
        sync(dev)
        return time.perf_counter() - t

    def method(name, opts, passes):
        return timed(saliency, model, x, None, name, internal_batch_size=args.batch, **opts)

    def bare(name, opts, passes):
        return timed(bare_passes, model, x, classes, passes)

    for name, opts, _ in plan:  # warm-up, untimed
        saliency(model, x, None, name, internal_batch_size=args.batch, **opts)
    bare_passes(model, x, classes, 1)
    times = {name: ([], []) for name, _, _ in plan}
    for r in range(args.rounds):
        for job in plan:
            first, second = (method, bare) if r % 2 == 0 else (bare, method)  # alternate
            a, b = first(*job), second(*job)
            m, t = (a, b) if first is method else (b, a)
            times[job[0]][0].append(m)
            times[job[0]][1].append(t)
    print(
        f"model {args.model}, {args.size} px, batch {args.batch}, device {dev}, "
        f"threads {torch.get_num_threads()}, rounds {args.rounds} (medians)\n"
    )
    print("| method | passes | method s | bare passes s | images/s | ratio | paired ratios |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, _, passes in plan:
        m, b = (statistics.median(t) for t in times[name])
        paired = sorted(x / y for x, y in zip(*times[name]))
        spread = f"{statistics.median(paired):.3f} ({paired[0]:.3f}-{paired[-1]:.3f})"
        print(
            f"| {name} | {passes} | {m:.2f} | {b:.2f} | {args.batch / m:.2f} | {m / b:.3f} "
            f"| {spread} |"
        )


if __name__ == "__main__":
    main()
