"""Benchmark deep dream on EfficientNet-Lite0 (blocks.10, the default layer).

1. Step overhead: the time of one dream step (roll, forward to the layer, backward, gradient
   normalization, SGD, clamp; measured between render's callbacks) divided by a bare
   forward + backward of the same image to the same layer. Variants interleaved, medians.
2. Any size, bounded memory: 512^2, 1024^2 and 2048^2 dreamed with tile=512 (1 octave x
   ``--steps`` steps), each in a fresh subprocess that reports its peak RSS (the kernel's
   VmHWM, reset after the model is loaded) and, on CUDA, ``torch.cuda.max_memory_allocated``.

    python scripts/bench_dream.py [--device cpu|cuda] [--threads 1] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

LAYER = "blocks.10"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_overhead(model, size: int, steps: int, rounds: int) -> dict:
    from dreamviz.deepdream import dream
    from dreamviz.hooks import Capture

    dev = model.device
    torch.manual_seed(0)
    image = torch.rand(3, size, size)
    dream_times: list[float] = []
    bare_times: list[float] = []
    stamps: list[float] = []

    def cb(step, total, value):
        _sync(dev)
        stamps.append(time.perf_counter())

    x0 = image[None].to(dev)

    def run_dream():
        stamps.clear()
        dream(model, image, LAYER, octaves=1, steps=steps + 1, tile=None, device=dev, callback=cb)
        dream_times.extend(b - a for a, b in zip(stamps, stamps[1:]))  # steps 2.. (warm)

    def run_bare():
        with Capture(model, [LAYER]) as cap:
            for i in range(steps + 1):
                _sync(dev)
                t = time.perf_counter()
                x = x0.clone().requires_grad_(True)
                cap(x)[LAYER].pow(2).mean().backward()
                _sync(dev)
                if i:
                    bare_times.append(time.perf_counter() - t)

    for r in range(rounds):  # ABBA: neither variant always runs first
        for fn in (run_dream, run_bare) if r % 2 == 0 else (run_bare, run_dream):
            fn()
    d, b = statistics.median(dream_times), statistics.median(bare_times)
    return {"size": size, "dream_step_s": d, "bare_fwd_bwd_s": b, "ratio": d / b}


def _status_kb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return float("nan")


def child(size: int, steps: int, device: str, threads: int) -> None:
    """One dream at size x size in this fresh process; prints one JSON line.

    Peak RSS is the kernel's VmHWM of this process (``ru_maxrss`` would be wrong here: Linux
    carries the parent's value across fork + exec). It is reset after the model is loaded
    (``/proc/self/clear_refs``), so ``dream_peak_mb`` is the dream's own high-water mark and
    ``dream_extra_mb`` what it added on top of the loaded model.
    """
    torch.set_num_threads(threads)
    import dreamviz
    from dreamviz.deepdream import dream

    model = dreamviz.load_model(device=device)
    torch.manual_seed(0)
    image = torch.rand(3, size, size)
    load_peak = _status_kb("VmHWM") / 1024
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS to the current RSS
    except OSError:
        pass
    base_rss = _status_kb("VmRSS") / 1024
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stamps: list[float] = []
    t0 = time.perf_counter()

    def cb(step, total, value):
        _sync(model.device)
        stamps.append(time.perf_counter())

    dream(model, image, LAYER, octaves=1, steps=steps, tile=512, callback=cb)
    total = time.perf_counter() - t0
    peak = _status_kb("VmHWM") / 1024
    out = {
        "size": size,
        "seconds": total,
        "step_s": statistics.median([b - a for a, b in zip(stamps, stamps[1:])] or [total]),
        "load_peak_mb": load_peak,
        "dream_peak_mb": peak,
        "dream_extra_mb": peak - base_rss,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if model.device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds for the ratio")
    p.add_argument("--steps", type=int, default=3, help="steps per size in the memory part")
    p.add_argument("--sizes", default="512,1024,2048")
    p.add_argument("--size-rounds", type=int, default=2, help="fresh processes per size")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.steps, args.device, args.threads)
        return
    torch.set_num_threads(args.threads)
    import dreamviz

    model = dreamviz.load_model(device=args.device)
    dev_name = torch.cuda.get_device_name() if model.device.type == "cuda" else "CPU"
    print(f"# device {dev_name}, torch threads {args.threads}, layer {LAYER}")
    print("\n## Step time / bare forward+backward (medians, interleaved)\n")
    print("| size | dream step (s) | bare fwd+bwd (s) | ratio |")
    print("|---|---|---|---|")
    for size in (224, 512):
        r = step_overhead(model, size, steps=3, rounds=args.rounds)
        print(
            f"| {size}² | {r['dream_step_s']:.4f} | {r['bare_fwd_bwd_s']:.4f} | {r['ratio']:.3f} |"
        )
    sys.stdout.flush()

    print("\n## Tiled dreams (tile 512, 1 octave), one fresh process per size\n")
    cols = "| size | pixels | step (s) | step vs first | s per Mpx | peak RSS in dream (MB) "
    cols += "| vs first | added by the dream (MB) | peak RSS at model load (MB) |"
    if model.device.type == "cuda":
        cols += " CUDA peak (MB) | vs first |"
    print(cols)
    print("|---" * (cols.count("|") - 1) + "|")
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: dict[int, list[dict]] = {s: [] for s in sizes}
    for r in range(args.size_rounds):  # ABC CBA ...: load drifts hit every size alike
        for size in sizes if r % 2 == 0 else sizes[::-1]:
            cmd = [sys.executable, __file__, "--child", str(size), "--steps", str(args.steps)]
            cmd += ["--device", args.device, "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[size].append(json.loads(out))
    rows = {}
    for size, rs in runs.items():
        rows[size] = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "size"}
        rows[size]["dream_peak_mb"] = max(r["dream_peak_mb"] for r in rs)
        rows[size]["dream_extra_mb"] = max(r["dream_extra_mb"] for r in rs)
    base = rows[sizes[0]]
    for size, r in rows.items():
        mpx = size * size / 1e6
        row = (
            f"| {size}² | {size * size / sizes[0] ** 2:.0f}x | {r['step_s']:.2f} | "
            f"{r['step_s'] / base['step_s']:.1f}x | {r['step_s'] / mpx:.2f} | "
            f"{r['dream_peak_mb']:.0f} | {r['dream_peak_mb'] / base['dream_peak_mb']:.2f}x | "
            f"{r['dream_extra_mb']:.0f} | {r['load_peak_mb']:.0f} |"
        )
        if "cuda_peak_mb" in r:
            row += f" {r['cuda_peak_mb']:.0f} | {r['cuda_peak_mb'] / base['cuda_peak_mb']:.2f}x |"
        print(row, flush=True)
    print(f"\n(step time: median over {args.size_rounds} runs per size; peak: the largest)")


if __name__ == "__main__":
    main()
