"""dreamviz: see what an image classifier has learned.

Feature visualization, saliency maps, deep dream and unit galleries for PyTorch classifiers.
Images everywhere are float tensors N x 3 x H x W in [0, 1].

>>> import dreamviz
>>> model = dreamviz.load_model()                       # bundled EfficientNet-Lite0, offline
>>> result = dreamviz.render(model, dreamviz.channel("blocks.12", 0))
>>> maps = dreamviz.saliency(model, "assets/chelsea.jpg", method="integrated_gradients")
>>> dreamed = dreamviz.dream(model, "assets/chelsea.jpg").image
>>> dreamviz.gallery.build("efficientnet_lite0", ["blocks.8"], channels="0-15", out="gallery")

``dreamviz.render``, ``dreamviz.saliency`` and ``dreamviz.dream`` are functions; their modules
are :mod:`dreamviz.engine`, :mod:`dreamviz.attribution` and :mod:`dreamviz.deepdream`. The
README's "How it is built" section maps every module to its layer.
"""

# ruff: noqa: E402  (the Ctrl-C guard of the command line goes before the imports)
from __future__ import annotations

import sys as _sys


def _command_line() -> bool:
    """Whether this process is the ``dreamviz`` command (``dreamviz ...`` or ``python -m
    dreamviz.cli ...``), read from the interpreter's own command line."""
    argv = list(getattr(_sys, "orig_argv", []))[1:]
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i].startswith("-m"):
            target = argv[i][2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            return target in ("dreamviz.cli", "dreamviz")
        if argv[i].startswith("-c"):
            return False
        i += 2 if argv[i] in ("-X", "-W") else 1
    script = argv[i].replace("\\", "/").rsplit("/", 1)[-1] if i < len(argv) else ""
    return script in ("dreamviz", "dreamviz.exe", "dreamviz-script.py")


if _command_line():  # guard Ctrl-C before torch loads (see dreamviz.cli)
    from .interrupts import guard_startup

    guard_startup()

from . import dataset, defaults, gallery, objectives, optim, param, regularizers, transforms
from ._version import __version__
from .attribution import saliency
from .dataset import ExamplesResult, examples
from .deepdream import dream, dream_frames
from .engine import render
from .errors import DreamvizError, NonFiniteError, UsageError
from .explain import Explanation, explain
from .hooks import Capture, capture, layers, parse_unit
from .models import VisionModel, list_models, load_model
from .objectives import channel, class_logit, direction, diversity, layer, neuron
from .param import image_param
from .results import DreamResult, RenderResult, SaliencyResult
from .visualize import overlay, panel

__all__ = [
    "Capture",
    "DreamResult",
    "DreamvizError",
    "ExamplesResult",
    "Explanation",
    "NonFiniteError",
    "RenderResult",
    "SaliencyResult",
    "UsageError",
    "VisionModel",
    "__version__",
    "capture",
    "channel",
    "class_logit",
    "dataset",
    "defaults",
    "direction",
    "diversity",
    "dream",
    "dream_frames",
    "examples",
    "explain",
    "gallery",
    "image_param",
    "layer",
    "layers",
    "list_models",
    "load_model",
    "neuron",
    "objectives",
    "optim",
    "overlay",
    "panel",
    "param",
    "parse_unit",
    "regularizers",
    "render",
    "saliency",
    "transforms",
]
