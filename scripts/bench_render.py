"""Cost of one ``render`` step against the bare forward+backward it needs (EfficientNet-Lite0).

For a channel in an early, a middle and a late block, and for a class, at 224 px:

* **render**: the time between consecutive steps of ``dreamviz.render`` with its defaults
  (Fourier image, decorrelated colour, standard transforms, Adam), read from its callback, so
  everything in the loop counts: parameterization, transforms, forward, backward, NaN check,
  optimizer step;
* **bare**: the same network truncated by hand after the same layer (``nn.Sequential`` of
  normalization, stem and the first blocks; the whole model for a class), one forward of an
  input of the size the model sees during render (224 + 12 = 236 px, as the standard transforms
  pad 12 and crop 12; the last ``settle`` steps see 224) and ``out.mean().backward()``, input
  requiring grad and parameters frozen.

The two are interleaved: every round runs one short render and the same number of bare steps,
in an order that alternates; the ratio is median(render step) / median(bare step) over all
rounds. Also prints ms/step at batch 1 and 8.

    python scripts/bench_render.py                 # batch 1 and 8
    python scripts/bench_render.py --quick         # fewer rounds
    python scripts/bench_render.py --write table.md
    python scripts/bench_render.py --device cuda --batches 1,16 --amp   # bf16 autocast on both
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time

import torch
from torch import nn

import dreamviz
from dreamviz.engine import render
from dreamviz.objectives import channel, class_logit

CASES = [
    ("early", "blocks.2", 5),
    ("middle", "blocks.8", 20),
    ("late", "blocks.15", 7),
    ("class", "logits", 281),
]


class _Normalize(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.normalize(x)


def truncated(model, layer: str) -> nn.Module:
    """The network up to and including ``layer``, built by hand (no hooks)."""
    net = model.net
    if layer == "logits":
        return model
    k = int(layer.split(".")[1])
    return nn.Sequential(_Normalize(model), net.stem, *list(net.blocks)[: k + 1])


AMP = False  # --amp: bf16 autocast on CUDA, for render and the bare pass alike


def sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def bare_steps(net, x, n: int) -> list[float]:
    times = []
    amp = AMP and x.device.type == "cuda"
    for _ in range(n):
        sync(x)
        start = time.perf_counter()
        xi = x.detach().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext():
            out = net(xi).float()
        out.mean().backward()
        _ = xi.grad
        sync(x)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def render_steps(model, objective, batch: int, n: int) -> list[float]:
    stamps = []  # render syncs every step (it reads the objective values back)
    render(
        model,
        objective,
        size=224,
        batch=batch,
        steps=n + 1,
        settle=0.0,
        amp=AMP,
        progress=False,
        callback=lambda s, total, v: stamps.append(time.perf_counter()),
    )
    return [(b - a) * 1e3 for a, b in zip(stamps, stamps[1:])]


def objective_for(layer: str, c: int, batch: int):
    if layer == "logits":
        terms = [class_logit(c, image=i if batch > 1 else None) for i in range(batch)]
    else:
        terms = [channel(layer, c, image=i if batch > 1 else None) for i in range(batch)]
    return sum(terms)


def measure(model, batch: int, rounds: int, per_round: int, cases=CASES) -> list[dict]:
    rows = []
    for position, layer, c in cases:
        net = truncated(model, layer)
        obj = objective_for(layer, c, batch)
        x = torch.rand(batch, 3, 236, 236, device=model.device)
        bare_steps(net, x, 2)  # warm-up
        render_steps(model, obj, batch, 2)
        r_times, b_times = [], []
        for r in range(rounds):
            if r % 2 == 0:
                r_times += render_steps(model, obj, batch, per_round)
                b_times += bare_steps(net, x, per_round)
            else:
                b_times += bare_steps(net, x, per_round)
                r_times += render_steps(model, obj, batch, per_round)
        rm, bm = statistics.median(r_times), statistics.median(b_times)
        rows.append(
            dict(
                batch=batch,
                position=position,
                unit=f"{layer}:{c}" if layer != "logits" else f"class {c} (tabby)",
                render=rm,
                bare=bm,
                ratio=rm / bm,
            )
        )
        print(
            f"batch {batch} {position:<6} {rows[-1]['unit']:<16} render {rm:8.1f} ms/step  "
            f"bare {bm:8.1f} ms  ratio {rm / bm:.3f}",
            flush=True,
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| batch | block | unit | render ms/step | bare fwd+bwd ms | render / bare |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['position']} | {r['unit']} | {r['render']:.1f} | "
            f"{r['bare']:.1f} | {r['ratio']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--per-round", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="3 rounds of 4 steps")
    ap.add_argument("--write", help="also write the markdown table to this file")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA) on both sides")
    ap.add_argument(
        "--cases", default=",".join(c[0] for c in CASES), help="early,middle,late,class"
    )
    args = ap.parse_args()
    global AMP
    AMP = args.amp
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.rounds, args.per_round = 3, 4
    model = dreamviz.load_model(device=args.device)
    cases = [c for c in CASES if c[0] in args.cases.split(",")]
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        rows += measure(model, batch, args.rounds, args.per_round, cases)
    text = table(rows)
    dev = model.device
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; device {where}"
        f"{', bf16 autocast' if AMP and dev.type == 'cuda' else ''}"
    )
    print()
    print(text)
    print(f"\n{machine}")
    if args.write:
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(text + f"\n\nMachine: {machine}\n")


if __name__ == "__main__":
    main()
