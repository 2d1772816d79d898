"""Are explain's channel rankings faithful? Zero the top-k channels and watch the logit.

For each sample photo, at the default layer (Grad-CAM's: ``head`` on EfficientNet-Lite0) and at
``blocks.10``, for k = 1, 4, 8, the drop of the target logit when a forward hook zeroes:

* the top-k channels by explain's attribution (IG at the layer);
* k random channels (median of 20 draws);
* the k most active channels (largest mean activation).

A faithful ranking drops the logit most. Also prints explain's completeness error.

    python scripts/eval_explain.py            # a minute or two on the CPU
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

import dreamviz
from dreamviz.explain import ablate, explain
from dreamviz.hooks import Capture, as_nchw, probe
from dreamviz.io import as_batch, read_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="head,blocks.10")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = dreamviz.load_model(device="cpu")
    print(
        "| photo | layer | completeness error | k | top-k drop | random-k drop (median of 20) "
        "| most-active-k drop |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in ("chelsea.jpg", "coffee.jpg"):
        photo = read_image(os.path.join(ROOT, "assets", name))
        for layer in args.layers.split(","):
            ex = explain(model, photo, layer=layer, top=8, pictures=False, saliency_maps=False)
            x, t = ex.image, ex.target
            with Capture(model, [layer]) as cap, torch.no_grad():
                a = as_nchw(cap(as_batch(x, model))[layer], probe(model)[layer].layout)
            means = a.flatten(2).mean(2)[0]
            n = means.numel()
            g = torch.Generator().manual_seed(0)
            for k in (1, 4, 8):
                top = ex.all_values.topk(k).indices.tolist()
                active = means.topk(k).indices.tolist()
                rand = [torch.randperm(n, generator=g)[:k].tolist() for _ in range(20)]
                drop = ex.logit - ablate(model, x, t, layer, top)
                drop_active = ex.logit - ablate(model, x, t, layer, active)
                drop_rand = statistics.median(
                    ex.logit - ablate(model, x, t, layer, r) for r in rand
                )
                print(
                    f"| {name} ({ex.target_name}) | {layer} | {ex.completeness_error:.2%} | {k} "
                    f"| {drop:.3f} | {drop_rand:.3f} | {drop_active:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
