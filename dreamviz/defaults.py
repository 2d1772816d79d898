"""Every default of dreamviz, in one place (layer 0: imports nothing from dreamviz).

The Python API's signatures, the CLI's flags and help texts, the gallery, and the recipe stored
in every PNG all read these values; change one here and all of them follow. The mappings are
read-only: copy one (``dict(RENDER)``) to change it.
"""

from __future__ import annotations

from types import MappingProxyType

#: The model every command uses when none is named: bundled, offline ImageNet weights.
MODEL = "efficientnet_lite0"

#: Images read from files (photos, guides, --init and natural images) of more pixels than this
#: are refused from their header, before decoding: a few bytes of PNG can claim 100000 x
#: 100000 px (a decompression bomb). 64 megapixels is above any common camera.
MAX_PIXELS = 64_000_000

#: Saliency resizes an image so its shorter side is the model's input size; an image of an
#: extreme aspect ratio (10 x 4000 px) would then be huge, so the result is held to this many
#: times the area of a square of that side (it keeps its aspect ratio, a shorter side if needed).
MAX_AREA_FACTOR = 4

#: A render warns when more than this fraction of its final pixel values sit at 0 or 1 (and
#: its start did not): a two-colour picture, the sign of a learning rate far too high. Measured
#: at 64 px, 48 steps: 0 % at the default lr, 13 % at 10x, 92 % and more at 100x and above.
SATURATION = 0.5

#: Feature visualization (``render``): every setting that shapes the image. The PNG recipe
#: stores all of them, and ``--from PNG`` reads them back.
RENDER = MappingProxyType(
    {
        "size": None,  # None: the model's input size
        # steps, lr, lr_schedule, transforms and settle: chosen together by the judge table of
        # scripts/eval_transfer.py on its choice set, reported on another (docs/QUALITY.md)
        "steps": 192,
        "lr": 0.1,  # the peak rate of the cosine schedule
        "lr_schedule": "cosine",  # LR_SCHEDULE's warm-up, then a cosine decay; or "constant"
        "optimizer": "adam",
        "param": "fft",
        "decorrelate": True,
        "transforms": "standard",  # Lucid's jitter, scale and rotation, one view per step
        "crops": 4,  # views per image and step (transforms "crops")
        "crop_scale": (0.6, 1.0),  # crop side as a fraction of the image's shorter side
        "crop_scale_end": None,  # the crop scale at the last step, reached linearly (None: fixed)
        "settle": 0.15,  # final fraction of steps without transforms
        "l1": 0.0,
        "l2": 0.0,
        "tv": 0.0,
        "blur": 0.0,
        "diversity": 0.0,
        "batch": 1,  # images per target
        "seed": 0,
        "device": "auto",
        "amp": False,
        "init": None,  # a photo to start from (a path)
        "accentuate": 0.0,  # feature accentuation: weight of closeness to init at a layer
        "accentuate_layer": None,  # None: the objective's own layer
        "spectrum": None,  # maco's fixed magnitude: None is the shipped natural spectrum
    }
)

#: The ``crops`` transforms (MACO-style views): crops per image and step, box side as a
#: fraction of the image's shorter side (RENDER's), spread of the box centre, noise amplitude.
CROPS = MappingProxyType(
    {"views": RENDER["crops"], "scale": RENDER["crop_scale"], "spread": 0.15, "noise": 0.05}
)

#: The ``cosine`` learning-rate schedule: a linear warm-up from 0 over the first ``warmup``
#: fraction of the steps, then a cosine decay from ``lr`` down to ``floor * lr`` at the last step.
LR_SCHEDULE = MappingProxyType({"warmup": 0.1, "floor": 0.05})

#: Chosen by rendering candidate channels of the middle blocks and looking at them (see
#: docs/QUALITY.md); it renders in under a minute at 224 px on a 2-core CPU.
RENDER_UNIT = "blocks.12:0"
RENDER_OUT = "render.png"
RENDER_OUT_DIR = "render"

#: Galleries: what differs from RENDER (the rest is RENDER's).
GALLERY = MappingProxyType(
    {
        "size": 128,
        "steps": RENDER["steps"],  # the render recipe's, so a gallery tile matches a render
        "batch": "auto",  # units per pass: dreamviz.batching.rows_per_pass (16 at 128 px on a CPU)
        "channels": "all",
        "out": "gallery",
        "natural": "auto",  # photos for the activation ratio: the bundled samples
    }
)

#: Deep dream: the classic settings of Google's notebook.
DREAM = MappingProxyType(
    {
        "octaves": 4,
        "octave_scale": 1.4,
        "steps": 10,  # per octave
        "lr": 1.5,  # grey levels (0-255) per step, after mean-|gradient| normalization
        "jitter": 32,  # max random roll, px
        "tile": 512,  # images larger than this are dreamed in tiles
        "lap_levels": None,
        "guide_mode": "match",
        "seed": 0,
        "zoom": 1.05,  # animations: per frame
        "rotate": 0.0,
        "fps": 12.0,
    }
)

#: A layer per model that gives the classic dream look (mean of squares of its output).
DREAM_LAYERS = MappingProxyType(
    {
        "efficientnet_lite0": "blocks.10",
        "googlenet": "inception4c",
        "vgg16": "features.22",  # relu4_3
        "vgg19": "features.26",  # relu4_4
        "resnet50": "layer3",
        "resnet18": "layer3",
        "inception_v3": "Mixed_6b",
    }
)

#: Per family (model-name prefix), the dream layer when DREAM_LAYERS names none: transformers
#: dream best at a middle block. ``{middle}`` is the middle encoder layer's index.
DREAM_FAMILY_LAYERS = MappingProxyType(
    {
        "vit_": "encoder.layers.encoder_layer_{middle}",
        "swin_": "features.5",  # stage 3 of 4, channels-last
        "convnext_": "features.5",
        "maxvit_": "blocks.2",
    }
)

#: Per family (model-name prefix), Grad-CAM's default layer: for transformers the first norm
#: of the last block, as pytorch-grad-cam documents (``{last}``: the last block's index).
GRADCAM_FAMILY_LAYERS = MappingProxyType(
    {
        "vit_": "encoder.layers.encoder_layer_{last}.ln_1",
        "swin_": "features.7.{last}.norm1",
    }
)

#: Saliency maps: the method, its options, and how maps are drawn.
SALIENCY = MappingProxyType(
    {
        # chosen on the choice part of the photo set (scripts/eval_localization.py): most
        # photos with the map's maximum within 15 px of the box; docs/QUALITY.md
        "method": "integrated_gradients",
        "internal_batch_size": "auto",  # rows (images, noisy copies, path points) per pass
        "samples": 32,  # SmoothGrad
        "noise": 0.15,  # SmoothGrad sigma, as a fraction of the pixel range [0, 1]
        "seed": 0,
        "steps": 64,  # Integrated Gradients
        "baseline": "black",
        "quadrature_rule": "adaptive",
        "clip": 99.0,  # display: percentile the map is clipped at before scaling
        "alpha": 0.6,  # display: heat map opacity where the map is high
        "dim": 0.5,  # display: how much the photo darkens where the map is low
        # display, per method: which sign is drawn (abs, positive, negative, signed)
        "sign": MappingProxyType(
            {
                "gradient": "abs",
                "gradient_x_input": "positive",
                "smoothgrad": "abs",
                "integrated_gradients": "positive",
                "guided_backprop": "abs",
                "gradcam": "positive",
                "guided_gradcam": "abs",
            }
        ),
        # display, per method: Gaussian sigma as a fraction of the map's shorter side
        "smooth": MappingProxyType(
            {
                "gradient": 0.02,
                "gradient_x_input": 0.02,
                "smoothgrad": 0.02,
                "integrated_gradients": 0.02,
                "guided_backprop": 0.02,
                "gradcam": 0.0,
                "guided_gradcam": 0.02,
            }
        ),
    }
)

#: Explanations (``explain``): channels shown, NMF groups, the attribution method at the layer
#: and its path steps, and rows per pass.
EXPLAIN = MappingProxyType(
    {
        "top": 8,
        "groups": 0,
        "method": "ig",  # channel ranking (scripts/eval_explain.py; docs/QUALITY.md)
        "steps": 32,  # ig, ig_blur
        "internal_batch_size": 16,  # ig, ig_blur: path points per pass
        "ablation_rows": "auto",  # ablation: rows (one channel zeroed each) per forward pass
        "blur": (11, 5.0),  # ig_blur: Gaussian kernel and sigma of the blurred copy
    }
)

#: Dataset examples (``examples``): per channel the ``top`` images by the channel's spatial
#: maximum, and ``per_quantile`` images at each of ``quantiles`` of that maximum over the images,
#: estimated on a fixed random ``sample`` of images (the same images for every run and every
#: number of processes). Images are read ``batch_size`` at a time by ``workers`` DataLoader
#: processes ("auto": the CPU count less one, at most 8); a checkpoint is written every
#: ``checkpoint_every`` images.
EXAMPLES = MappingProxyType(
    {
        "channels": "all",
        "top": 8,
        "quantiles": (0.9, 0.5),
        "per_quantile": 2,
        "sample": 512,
        "batch_size": 32,
        "workers": "auto",
        "checkpoint_every": 1000,
        "out": "examples",
    }
)

#: Rows (images, noisy copies, path points, units, crops) per forward+backward pass when a
#: batch size is "auto" (dreamviz.batching). Measured by scripts/bench_batching.py; see
#: docs/PERFORMANCE.md. CPU: the rows whose largest activation fits ``cpu_bytes``, at least
#: ``cpu_min_rows``: 20 MiB, measured with saliency and galleries (at 224 px, 4 rows a pass:
#: SmoothGrad and IG 1.02x the bare passes, a gallery 1.16x faster than one unit a pass; at 8
#: rows, 37 MiB, 1.07-1.22x and 0.85x). Beyond about 32 MiB one tensor is past glibc's largest
#: mmap threshold, so each pass maps and zeroes fresh pages (our reading of the step; the
#: timings are what was measured). CUDA: the rows whose activations times ``cuda_overhead`` fit
#: ``cuda_fraction`` of the free memory (an out-of-memory error halves the chunk and retries;
#: on an H200 the policy's 128 rows at 224 px ran 36x faster per row than one).
BATCHING = MappingProxyType(
    {
        "cpu_bytes": 20 * 2**20,
        "cpu_min_rows": 1,
        "cuda_fraction": 0.5,
        "cuda_overhead": 3.0,
        "max_rows": 256,
    }
)

#: Rich display in notebooks (dreamviz.display): tiles wider than ``max_side`` px are shown
#: scaled down, under ``min_side`` enlarged (``to_pil`` and ``save`` keep the size); at most
#: ``max_images`` per result;
#: grids wrap at ``grid_width`` px; progress bars appear after ``progress_delay`` s;
#: ``preview=True`` redraws every ``preview_every`` steps. Neither changes any image.
DISPLAY = MappingProxyType(
    {
        "progress": None,  # None: a bar where a person is watching (notebook, REPL), else none
        "preview": None,  # None: off; k: redraw the images inline every k steps (notebooks)
        "max_side": 512,
        "min_side": 128,  # smaller tiles are shown enlarged by a whole factor
        "caption_width": 220,  # px a cell may widen to for its caption
        "max_images": 32,
        "grid_width": 1200,
        "pad": 4,
        "font_size": 12,
        "progress_delay": 0.5,
        "preview_every": 16,
        "preview_side": 256,
    }
)

__all__ = [
    "BATCHING",
    "CROPS",
    "DISPLAY",
    "DREAM",
    "DREAM_FAMILY_LAYERS",
    "DREAM_LAYERS",
    "EXAMPLES",
    "EXPLAIN",
    "GALLERY",
    "GRADCAM_FAMILY_LAYERS",
    "LR_SCHEDULE",
    "MAX_AREA_FACTOR",
    "MAX_PIXELS",
    "MODEL",
    "RENDER",
    "RENDER_OUT",
    "RENDER_OUT_DIR",
    "RENDER_UNIT",
    "SALIENCY",
    "SATURATION",
]
