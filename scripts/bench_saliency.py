"""Saliency speed: each method against the bare forward+backward passes it cannot avoid.

For each method the bare baseline is ``passes`` plain forward+backward passes of the same batch
(1 for gradient, ``samples`` for SmoothGrad, ``steps`` for Integrated Gradients), each pass the
whole batch, timed in the same run. Each method runs with ``internal_batch_size`` set to each
value of ``--internal`` (default: ``auto``, the library's default, and 64, which puts a batch
of 4 photos' 16 noise samples in one pass); every round runs every variant and the bare passes,
in an order that rotates from round to round. Reported: medians over the rounds, the median
(and range) of variant / bare paired within each round, and best / best (the least disturbed
runs on a shared machine). Goal, issue "right-sized work": <= 1.1 with the default settings.

    python scripts/bench_saliency.py                     # 4 photos, 224 px, 16 samples, 32 steps
    python scripts/bench_saliency.py --threads 1 --rounds 5 --internal auto 8 64
    python scripts/bench_saliency.py --device cuda --batch 16
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from dreamviz import load_model
from dreamviz.attribution import saliency
from dreamviz.io import read_image, resize, sample_photos
from dreamviz.models import model_guard


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def photos(n: int, size: int) -> torch.Tensor:
    """``n`` crops of the sample photos (the whole photo and its halves, mirrored), size x size."""
    images = [read_image(p) for p in sample_photos()] or [torch.rand(3, 300, 450)]
    crops = []
    while len(crops) < n:
        for img in images:
            h, w = img.shape[-2:]
            side = min(h, w)
            for x0 in (0, (w - side) // 2, w - side):
                crops.append(resize(img[:, :side, x0 : x0 + side], (size, size)))
        images = [img.flip(-1) for img in images]
    return torch.stack(crops[:n])


def bare_passes(model, x: torch.Tensor, classes: torch.Tensor, passes: int) -> None:
    """What a method cannot avoid: ``passes`` forward+backward passes of the batch to the input."""
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
    p.add_argument("--batch", type=int, default=4, help="photos per call (default 4)")
    p.add_argument("--samples", type=int, default=16, help="SmoothGrad samples (default 16)")
    p.add_argument("--steps", type=int, default=32, help="Integrated Gradients steps (default 32)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--methods", default="gradient,smoothgrad,integrated_gradients")
    p.add_argument(
        "--internal",
        nargs="+",
        default=["auto", "64"],
        help="internal_batch_size values to compare (default: auto 64)",
    )
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    dev = model.device
    x = photos(args.batch, args.size).to(dev)
    with torch.no_grad():
        classes = model(x).argmax(1)
    sizes = [s if s == "auto" else int(s) for s in args.internal]
    counts = {
        "smoothgrad": {"samples": args.samples},
        "integrated_gradients": {"steps": args.steps},
    }
    plan = []  # (method, options, passes, internal batch size or None for the bare passes)
    for name in args.methods.split(","):
        opts = counts.get(name, {})
        passes = opts.get("samples", opts.get("steps", 1))
        plan += [(name, opts, passes, size) for size in sizes] + [(name, opts, passes, None)]

    def run(job) -> float:
        name, opts, passes, size = job
        sync(dev)
        t = time.perf_counter()
        if size is None:
            bare_passes(model, x, classes, passes)
        else:
            saliency(model, x, None, name, internal_batch_size=size, progress=False, **opts)
        sync(dev)
        return time.perf_counter() - t

    for job in plan:  # warm-up, untimed (also fills the policy's probe cache)
        run(job)
    times: dict[tuple, list[float]] = {(job[0], job[3]): [] for job in plan}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        order = plan[r % len(plan) :] + plan[: r % len(plan)]
        for job in order:
            times[(job[0], job[3])].append(run(job))
        load.append(os.getloadavg()[0])
    auto = {
        name: saliency(
            model, x, None, name, return_info=True, progress=False, **counts.get(name, {})
        )[1].internal_batch_size
        for name in args.methods.split(",")
    }
    machine = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"{platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        f"{args.model}, {args.batch} photos at {args.size} px, device {dev} ({machine}), "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.rounds} rounds; "
        f"load average {min(load):.1f}-{max(load):.1f}\n"
    )
    print(
        "| method | passes | internal batch | method s | bare s | ratio (paired median, range) "
        "| best / best |"
    )
    print("|---|---:|---|---:|---:|---|---:|")
    for name, _, passes, size in plan:
        if size is None:
            continue
        m, b = times[(name, size)], times[(name, None)]
        paired = sorted(a / c for a, c in zip(m, b))
        shown = f"auto ({auto[name]} rows)" if size == "auto" else str(size)
        print(
            f"| {name} | {passes} | {shown} | {statistics.median(m):.2f} | "
            f"{statistics.median(b):.2f} | {statistics.median(paired):.3f} "
            f"({paired[0]:.2f}-{paired[-1]:.2f}) | {min(m) / min(b):.3f} |"
        )


if __name__ == "__main__":
    main()
