"""dreamviz: see what an image classifier has learned.

Feature visualization, saliency maps, deep dream and unit galleries for PyTorch classifiers.
Images everywhere are float tensors N x 3 x H x W in [0, 1].

>>> import dreamviz
>>> model = dreamviz.load_model()                       # bundled EfficientNet-Lite0, offline
>>> result = dreamviz.render(model, dreamviz.channel("blocks.12", 0))
>>> maps = dreamviz.saliency(model, "assets/chelsea.jpg", method="integrated_gradients")
>>> dreamed = dreamviz.dream(model, "assets/chelsea.jpg").image
>>> dreamviz.gallery.build("efficientnet_lite0", ["blocks.8"], channels="0-15", out="gallery")

The top-level names ``render``, ``saliency`` and ``dream`` are the functions; import their
modules' other names with ``from dreamviz.render import RenderResult`` and the like.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import gallery, objectives, optim, param, regularizers, transforms  # noqa: E402
from .dream import DreamResult, dream, dream_frames  # noqa: E402
from .errors import DreamvizError, NonFiniteError, UsageError  # noqa: E402
from .hooks import Capture, capture, parse_unit  # noqa: E402
from .models import VisionModel, list_models, load_model  # noqa: E402
from .objectives import (  # noqa: E402
    channel,
    class_logit,
    direction,
    diversity,
    layer,
    neuron,
)
from .param import image_param  # noqa: E402
from .render import RenderResult, render  # noqa: E402
from .saliency import overlay, panel, saliency  # noqa: E402

__all__ = [
    "Capture",
    "DreamResult",
    "DreamvizError",
    "NonFiniteError",
    "RenderResult",
    "UsageError",
    "VisionModel",
    "__version__",
    "capture",
    "channel",
    "class_logit",
    "direction",
    "diversity",
    "dream",
    "dream_frames",
    "gallery",
    "image_param",
    "layer",
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
