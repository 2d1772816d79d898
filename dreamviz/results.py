"""What :func:`~dreamviz.render`, :func:`~dreamviz.dream` and :func:`~dreamviz.saliency`
return: the images or maps with what made them, shown in a notebook (:mod:`dreamviz.display`).

No model runs here. The function that makes a result runs the model and hands over what it
saw: saliency's probabilities and top-1 classes as values; a render's or a dream's top-1
classes as ``seen_as``, a function of the images that the maker built around its model (by a
weak reference), called once when the result is first shown, since a render in a loop is
never shown. Each image's label comes from the objective itself
(:meth:`dreamviz.objectives.Objective.labels`), never from its printed name.

``predictions`` is one attribute on every result: per image, the model's top-1 class and its
probability (None where it is unknown). The older spellings, ``RenderResult.predictions()``
and ``DreamResult.prediction()``, still work for one release, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .display import Displayable, as_pil

#: a maker's top-1 predictor: images (N x 3 x H x W) -> per image (class name, probability)
SeenAs = Callable[[torch.Tensor], "list[tuple[str, float]] | None"]


class Predictions(list):
    """Per image, (top-1 class name, probability). Calling it, as ``result.predictions()``
    did when it was a method, still gives it, with a DeprecationWarning."""

    def __call__(self) -> Predictions:
        warnings.warn(
            "predictions is an attribute now: write result.predictions, not "
            "result.predictions() (the call goes away in the next release)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self


def _seen(result, images: torch.Tensor) -> Predictions | None:
    """The result's top-1 classes, from its ``seen_as``, computed once."""
    if "_top1" not in result.__dict__:
        seen = result.seen_as(images) if result.seen_as is not None else None
        result.__dict__["_top1"] = Predictions(seen) if seen is not None else None
    return result.__dict__["_top1"]


# ----------------------------------------------------------------------------- render


@dataclass(repr=False)
class RenderResult(Displayable):
    """What :func:`render` made. In a notebook it shows itself: each image with its unit or
    class, its final objective value and the class the model sees in it (with probability).

    ``labels``: what each image maximizes, its own terms of the objective (``image=i``), else
    the whole objective (:meth:`dreamviz.objectives.Objective.labels`)."""

    images: torch.Tensor  # N x 3 x H x W in [0, 1], CPU
    history: torch.Tensor  # steps x N objective values
    frames: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> images
    interrupted: bool = False
    objective: str = ""
    seconds: float = 0.0
    alpha: torch.Tensor | None = None  # N x H x W accumulated |gradient| (render(alpha=True))
    labels: list[str] = field(default_factory=list)
    seen_as: SeenAs | None = None  # the maker's top-1 predictor (display only)

    def __post_init__(self):
        if not self.labels:
            self.labels = [self.objective] * self.images.shape[0]

    @property
    def final(self) -> torch.Tensor:
        """The objective value of each image at the last step."""
        return self.history[-1] if len(self.history) else torch.zeros(self.images.shape[0])

    @property
    def predictions(self) -> Predictions | None:
        """The model's top-1 class and probability for each image (None if the model is gone
        or gives no class logits); computed once, when first asked for."""
        return _seen(self, self.images)

    def _tiles(self):
        top = self.predictions
        finals = self.final.tolist()
        tiles = []
        for i, image in enumerate(self.images):
            lines = [self.labels[i] if i < len(self.labels) else self.objective]
            if i < len(finals) and len(self.history):
                lines.append(f"objective {finals[i]:.4g}")
            if top is not None:
                lines.append(f"seen as {top[i][0]} ({top[i][1]:.0%})")
            tiles.append(([as_pil(image)], lines))
        return tiles

    def _title(self) -> str:
        n, _, h, w = self.images.shape
        text = f"render: {n} image{'s' if n != 1 else ''}, {w}x{h} px, "
        text += f"{len(self.history)} steps, {self.seconds:.1f} s"
        return text + (" (interrupted)" if self.interrupted else "")

    def __repr__(self) -> str:
        n, _, h, w = self.images.shape
        finals = ", ".join(f"{v:.4g}" for v in self.final.tolist()[:8])
        more = ", ..." if n > 8 else ""
        return (
            f"RenderResult({n} x 3 x {h} x {w} images, objective={self.objective!r}, "
            f"final=[{finals}{more}], steps={len(self.history)}, seconds={self.seconds:.1f}"
            f"{', interrupted' if self.interrupted else ''})"
        )


# ----------------------------------------------------------------------------- dream


@dataclass(repr=False)
class DreamResult(Displayable):
    """The dreamed image (3 x H x W in [0, 1], CPU) and what happened on the way. In a notebook
    it shows itself, with the objective, its last value and the class the model now sees."""

    image: torch.Tensor
    history: list[torch.Tensor] = field(default_factory=list)  # per octave: objective per step
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (H, W) of each octave
    octaves: int = 0  # octaves dreamed (may be fewer than asked for small images)
    objective: str = ""
    seconds: float = 0.0
    interrupted: bool = False
    seen_as: SeenAs | None = None  # the maker's top-1 predictor (display only)

    @property
    def predictions(self) -> Predictions | None:
        """The model's top-1 class and probability for the dreamed image (one entry; at the
        model's input size), or None; computed once, when first asked for."""
        return _seen(self, self.image)

    def prediction(self) -> tuple[str, float] | None:
        """Deprecated: ``predictions[0]``."""
        warnings.warn(
            "DreamResult.prediction() is deprecated: use result.predictions[0] (the call goes "
            "away in the next release)",
            DeprecationWarning,
            stacklevel=2,
        )
        top = self.predictions
        return top[0] if top else None

    def _tiles(self):
        lines = [self.objective]
        last = [float(h[-1]) for h in self.history if len(h)]
        if last:
            lines.append(f"objective {last[-1]:.4g} after {self.octaves} octaves")
        top = self.predictions
        if top:
            lines.append(f"seen as {top[0][0]} ({top[0][1]:.0%})")
        return [([as_pil(self.image)], lines)]

    def _title(self) -> str:
        h, w = self.image.shape[-2:]
        stopped = " (interrupted)" if self.interrupted else ""
        return f"dream: {w}x{h} px, {self.octaves} octaves, {self.seconds:.1f} s{stopped}"

    def __repr__(self) -> str:
        h, w = self.image.shape[-2:]
        return (
            f"DreamResult(3 x {h} x {w} image, objective={self.objective!r}, "
            f"octaves={self.octaves}, seconds={self.seconds:.1f}"
            f"{', interrupted' if self.interrupted else ''})"
        )


# ----------------------------------------------------------------------------- saliency


@dataclass
class SaliencyInfo:
    """What a saliency call resolved and measured."""

    method: str
    targets: list[str]  # per image: "tabby (281)" or the objective's name
    classes: list[int | None]  # per image: the class scored, None for unit/objective targets
    layer: str | None = None  # Grad-CAM's layer
    completeness_error: torch.Tensor | None = None  # IG: |sum(attr) - (f(x) - f(baseline))|
    delta: torch.Tensor | None = None  # IG: f(x) - f(baseline)
    guided_relus: int | None = None  # guided methods: ReLU calls guided per pass
    internal_batch_size: int | None = None  # the most rows a pass took (after any halving)

    @property
    def relative_error(self) -> torch.Tensor | None:
        """IG completeness error as a fraction of |f(x) - f(baseline)|."""
        if self.completeness_error is None:
            return None
        return self.completeness_error / self.delta.abs().clamp_min(1e-12)


class SaliencyResult(Displayable):
    """Saliency maps with what made them, for notebooks: ``saliency(..., result=True)``.

    ``maps`` (the tensor :func:`saliency` returns), ``images`` (N x 3 x H x W, CPU), ``info``
    (:class:`SaliencyInfo`), ``probabilities`` (per image, the softmax probability of its
    target class; None for unit targets) and ``predictions`` (the model's top-1 class and its
    probability). It shows itself as one panel per image: photo | map | overlay, captioned with
    the target and its probability. ``result[i]``, ``len(result)``, ``result.shape`` and
    ``numpy.asarray(result)`` read the maps; :meth:`overlay`, :meth:`heatmap` and :meth:`panel`
    draw one image (:mod:`dreamviz.visualize`, whose keywords they take).
    """

    def __init__(
        self,
        maps,
        images,
        info: SaliencyInfo,
        reduce: Callable[[torch.Tensor], torch.Tensor],
        probabilities: list[float | None] | None = None,
        predictions: list[tuple[str, float]] | None = None,
    ):
        self.maps = maps
        self.images = images
        self.info = info
        self._reduce = reduce  # the method's reduction over colour channels
        self.probabilities = probabilities or [None] * images.shape[0]
        self.predictions = Predictions(predictions) if predictions is not None else None

    # tensor-like reading of the maps
    def __getitem__(self, index):
        return self.maps[index]

    def __len__(self) -> int:
        return len(self.maps)

    def __iter__(self):
        return iter(self.maps)

    def __array__(self, dtype=None, copy=None):
        arr = self.maps.detach().cpu().numpy()
        return arr if dtype is None else arr.astype(dtype)

    @property
    def shape(self) -> torch.Size:
        return self.maps.shape

    def map2d(self, i: int) -> torch.Tensor:
        """Image ``i``'s map as H x W (raw maps are reduced by the method's rule)."""
        m = self.maps[i].detach().float().cpu()
        if m.dim() == 3 and m.shape[0] > 1:
            m = self._reduce(m[None])[0]
        return m.reshape(m.shape[-2:])

    def overlay(self, i: int = 0, **kwargs):
        """Image ``i`` with its map blended over it (:func:`dreamviz.visualize.overlay`)."""
        from .visualize import overlay

        return overlay(self.images[i], self.map2d(i), **kwargs)

    def heatmap(self, i: int = 0, **kwargs):
        """Image ``i``'s map in colour (:func:`dreamviz.visualize.colorize`), as PIL."""
        from PIL import Image

        from .visualize import colorize

        return Image.fromarray(colorize(self.map2d(i), **kwargs), "RGB")

    def panel(self, i: int = 0, **kwargs):
        """Photo | map | overlay of image ``i``, captioned (:func:`dreamviz.visualize.panel`)."""
        from .visualize import panel

        caption = kwargs.pop("caption", self._lines(i))
        return panel(self.images[i], self.map2d(i), caption=caption, **kwargs)

    def _lines(self, i: int) -> list[str]:
        lines = [f"{self.info.method}: {self.info.targets[i]}"]
        p = self.probabilities[i]
        if p is not None:
            lines.append(f"p = {p:.1%}")
        if self.predictions is not None and (p is None or self.info.classes[i] is None):
            name, q = self.predictions[i]
            lines.append(f"seen as {name} ({q:.0%})")
        elif self.predictions is not None and self.predictions[i][0] not in self.info.targets[i]:
            name, q = self.predictions[i]
            lines.append(f"top-1: {name} ({q:.0%})")
        return lines

    def _tiles(self):
        return [
            ([as_pil(self.images[i]), self.heatmap(i), self.overlay(i)], self._lines(i))
            for i in range(len(self))
        ]

    def _title(self) -> str:
        n = len(self)
        return f"saliency: {self.info.method}, {n} image{'s' if n != 1 else ''}"

    def __repr__(self) -> str:
        return (
            f"SaliencyResult(maps {tuple(self.maps.shape)}, method={self.info.method!r}, "
            f"targets={self.info.targets!r})"
        )


__all__ = ["DreamResult", "Predictions", "RenderResult", "SaliencyInfo", "SaliencyResult"]
