"""dreamviz: see what an image classifier has learned.

Feature visualization, saliency maps, deep dream and unit galleries for PyTorch classifiers.
Images everywhere are float tensors N x 3 x H x W in [0, 1].
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DreamvizError, UsageError  # noqa: E402
from .hooks import Capture, capture, parse_unit  # noqa: E402
from .models import VisionModel, list_models, load_model  # noqa: E402

__all__ = [
    "Capture",
    "DreamvizError",
    "UsageError",
    "VisionModel",
    "__version__",
    "capture",
    "list_models",
    "load_model",
    "parse_unit",
]
