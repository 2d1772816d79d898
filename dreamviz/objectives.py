"""Composable objectives: channel, neuron, layer, class, direction, diversity.

An :class:`Objective` maps the captured activations (a dict ``layer -> tensor``) to one value
per image, a tensor of shape ``(N,)``; higher is better. Objectives form an algebra:

>>> obj = channel("blocks.10", 5) - 0.5 * diversity("blocks.10")
>>> str(obj)
'channel(blocks.10:5) - 0.5*diversity(blocks.10)'
>>> obj.layers
('blocks.10',)

``image=i`` aims a term at image ``i`` of the batch (its value is 0 for the other images), so
N units can be optimized in one forward pass. Every objective reports the layers it needs, and
the engine hooks only those and stops the forward pass after the deepest.

Objectives that take names (classes, layers) are checked against a model by :meth:`bind`.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence
from functools import partial

import torch

from .errors import UsageError, arg
from .hooks import (
    LOGITS,
    LayerInfo,
    Layout,
    as_nchw,
    check_layer,
    check_unit,
    layer_names,
    num_channels,
    parse_unit,
)
from .models import as_vision_model, imagenet_classes, is_index, resolve_class

Acts = dict[str, torch.Tensor]


def _fmt(x: float) -> str:
    return f"{x:g}"


class Objective:
    """A function of captured activations returning one value per image, with a name."""

    def __init__(
        self,
        fn: Callable[[Acts], torch.Tensor],
        name: str,
        layers: Sequence[str] = (),
        binder: Callable | None = None,
        _sum: bool = False,
        *,
        image: int | None = None,
        plain: str | None = None,
        terms: list[tuple[int | None, str]] | None = None,
    ):
        self.fn = fn
        self.name = name
        #: the name without the image it aims at (``channel(b:1)`` for ``channel(b:1, image=0)``)
        self.plain = name if plain is None else plain
        #: the top-level terms of the sum it is: (the image a term aims at or None, its plain
        #: text); a leaf aimed at image ``image`` is one term
        self.terms = [(image, self.plain)] if terms is None else terms
        self.layers = tuple(dict.fromkeys(layers))
        self._binder = binder  # model -> bound Objective (validates names, resolves classes)
        self._sum = _sum  # is a sum at top level (for parentheses in names)
        #: What a single-unit objective aims at, else None: ("class", index or name),
        #: ("channel", layer, c), ("neuron", layer, c), ("layer", layer) or ("direction", layer).
        self.target: tuple | None = None

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__

    def labels(self, n: int) -> list[str]:
        """What each of ``n`` images maximizes: its own terms (those made with ``image=i``),
        else the whole objective. Captions and recipes read these, never the printed name."""
        own: dict[int, list[str]] = {}
        for image, text in self.terms:
            if image is not None:
                own.setdefault(image % n if n else 0, []).append(text)
        return [" + ".join(own[i]) if i in own else self.name for i in range(n)]

    def _image(self) -> int | None:
        """The first image one of its terms aims at (None: all of them)."""
        return next((image for image, _ in self.terms if image is not None), None)

    def bind(self, model) -> Objective:
        """Validate layers, channels and class names against ``model``."""
        return self._binder(as_vision_model(model)) if self._binder else self

    # ---- algebra
    def _combine(self, other, op: str) -> Objective:
        if isinstance(other, numbers.Number):
            value = float(other)
            fn = (lambda a: self(a) + value) if op == "+" else (lambda a: self(a) - value)
            return Objective(
                fn,
                f"{self.name} {op} {_fmt(value)}",
                self.layers,
                self._bind_unary(lambda o: o._combine(other, op)),
                True,
                plain=f"{self.plain} {op} {_fmt(value)}",
                terms=self.terms,
            )
        if not isinstance(other, Objective):
            return NotImplemented
        wrapped = op == "-" and other._sum
        right = f"({other.name})" if wrapped else other.name
        plain_right = f"({other.plain})" if wrapped else other.plain
        if wrapped:  # one term: "- (a + b)"
            terms = [(other._image(), f"- {plain_right}")]
        else:
            terms = [(i, f"- {t}" if op == "-" else t) for i, t in other.terms]

        def fn(a, s=self, o=other):
            return s(a) + o(a) if op == "+" else s(a) - o(a)

        def binder(model, s=self, o=other):
            return s.bind(model)._combine(o.bind(model), op)

        binds = self._binder or other._binder
        return Objective(
            fn,
            f"{self.name} {op} {right}",
            self.layers + other.layers,
            binder if binds else None,
            True,
            plain=f"{self.plain} {op} {plain_right}",
            terms=self.terms + terms,
        )

    def _bind_unary(self, rebuild):
        if self._binder is None:
            return None
        return lambda model: rebuild(self.bind(model))

    def __add__(self, other):
        return self._combine(other, "+")

    def __radd__(self, other):
        if isinstance(other, numbers.Number) and other == 0:  # sum() starts from 0
            return self
        if isinstance(other, numbers.Number):
            return self._combine(other, "+")
        return NotImplemented

    def __sub__(self, other):
        return self._combine(other, "-")

    def __rsub__(self, other):
        if isinstance(other, numbers.Number):
            return (-1 * self) + other
        return NotImplemented

    def __mul__(self, other):
        if not isinstance(other, numbers.Number):
            return NotImplemented
        c = float(other)
        inner = f"({self.name})" if self._sum else self.name
        plain = f"{_fmt(c)}*" + (f"({self.plain})" if self._sum else self.plain)
        return Objective(
            lambda a: c * self(a),
            f"{_fmt(c)}*{inner}",
            self.layers,
            self._bind_unary(lambda o: o * c),
            plain=plain,
            terms=[(self._image(), plain)],
        )

    __rmul__ = __mul__

    def __truediv__(self, other):
        if not isinstance(other, numbers.Number):
            return NotImplemented
        return self * (1.0 / float(other))

    def __neg__(self):
        return -1 * self


# ------------------------------------------------------------------ helpers


def _per_image(values: torch.Tensor, batch: int | None, n: int) -> torch.Tensor:
    """Values computed for one image (image=i) or all of them -> shape (N,)."""
    if batch is None:
        return values
    out = values.new_zeros(n)
    return out.index_add(0, torch.tensor([batch], device=values.device), values)


def _select(acts: torch.Tensor, batch: int | None) -> torch.Tensor:
    if batch is None:
        return acts
    if not -acts.shape[0] <= batch < acts.shape[0]:
        raise UsageError(f"image={batch} but the batch has {acts.shape[0]} images")
    return acts[batch : batch + 1]


def _spatial_mean(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).mean(1) if t.dim() > 1 else t


def _tag(image: int | None) -> str:
    return "" if image is None else f", image={image}"


def _which(image: int | None, batch: int | None, where: str) -> int | None:
    """The image a term aims at: ``image``, or the deprecated spelling ``batch`` (with a
    DeprecationWarning; it goes away in the next release)."""
    if batch is None:
        return image
    if image is not None:
        raise UsageError(f"{where}: give {arg('image')} only (batch= is its old name)")
    warnings.warn(
        f"{where}(..., batch=i) is deprecated: write image=i, the image of the batch the term "
        "aims at (batch= goes away in the next release)",
        DeprecationWarning,
        stacklevel=3,
    )
    return batch


# ------------------------------------------------------------------ objectives


def on_layer(
    name: str,
    layer: str,
    target: tuple,
    compute: Callable,
    check: Callable,
    batch: int | None,
    layout: Layout | None = None,
) -> Objective:
    """An objective on one layer, named ``name``: the building block of every unit objective,
    and of your own. ``compute(features, raw, layout)`` gets the selected images' output as
    N x C x H x W (:func:`dreamviz.hooks.as_nchw`, the identity for NCHW layers) and
    raw; binding checks the unit with ``check(model) -> LayerInfo`` and fixes the layer's
    layout, so the feature axis is found wherever it sits."""

    def fn(acts):
        raw = _select(acts[layer], batch)
        return _per_image(compute(as_nchw(raw, layout), raw, layout), batch, acts[layer].shape[0])

    def binder(model):
        info = check(model)
        return on_layer(name, layer, target, compute, check, batch, info.layout)

    obj = Objective(fn, name, [layer], binder, image=batch, plain=name.replace(_tag(batch), ""))
    obj.target = target
    return obj


def channel(layer: str, c: int, image: int | None = None, *, batch: int | None = None) -> Objective:
    """Mean activation of channel ``c`` of ``layer`` over all positions (for token layers:
    over the patch tokens; the feature axis is found wherever it sits, see ``Layout``).
    ``image=i``: only image ``i`` of the batch is scored (0 for the others)."""
    batch = _which(image, batch, "channel")
    return on_layer(
        f"channel({layer}:{c}{_tag(batch)})",
        layer,
        ("channel", layer, c),
        lambda f, raw, layout: _spatial_mean(f[:, c]),
        lambda model: check_unit(model, layer, c),
        batch,
    )


CLS = "cls"  # neuron(..., x=CLS) or LAYER:C@cls: the class token of a token layer


def neuron(
    layer: str,
    c: int,
    x: int | str | None = None,
    y: int | None = None,
    image: int | None = None,
    *,
    batch: int | None = None,
) -> Objective:
    """Activation of channel ``c`` at one position: column ``x``, row ``y`` (default: centre).

    The centre is ``(W // 2, H // 2)`` of the layer's own map, so non-square maps work. On a
    token layer ``x``/``y`` address the patch grid, and ``x="cls"`` is the class token (the
    first token; the unit string ``LAYER:C@cls``).
    """
    batch = _which(image, batch, "neuron")
    cls_token = x == CLS

    def compute(f, raw, layout):
        if cls_token:
            return raw[:, 0, c]
        if f.dim() == 4:
            h, w = f.shape[-2:]
            xi = w // 2 if x is None else x
            yi = h // 2 if y is None else y
            if not (0 <= xi < w and 0 <= yi < h):  # bound at the model's size, run at another
                raise UsageError(
                    f"neuron position x={x}, y={y} is outside {layer}'s {w}x{h} grid at this "
                    f"image size; use x 0..{w - 1}, y 0..{h - 1}, or a larger image"
                )
            return f[:, c, yi, xi]
        return f[:, c]

    if cls_token:
        pos = "@cls"
    else:
        pos = "" if x is None and y is None else f", x={x}, y={y}"
    return on_layer(
        f"neuron({layer}:{c}{pos}{_tag(batch)})",
        layer,
        ("neuron", layer, c),
        compute,
        partial(_check_neuron, layer=layer, c=c, x=x, y=y),
        batch,
    )


def _check_neuron(model, layer: str, c: int, x, y) -> LayerInfo:
    """Bind a neuron: the unit exists, and its position is on the layer's grid (or, for
    ``x="cls"``, the layer has a class token)."""
    info = check_unit(model, layer, c)
    lay = info.layout
    if x == CLS:
        if lay is None or lay.kind != "tokens" or lay.prefix < 1:
            raise UsageError(
                f"{layer} has no class token ({lay.describe() if lay else 'no layout'}); "
                "address a position with x and y instead"
            )
    elif lay is not None and lay.grid is not None and lay.kind != "vector":
        h, w = lay.grid
        if x is not None and not 0 <= x < w or y is not None and not 0 <= y < h:
            raise UsageError(
                f"neuron position x={x}, y={y} is outside {layer}'s {w}x{h} grid "
                f"at {model.input_size[1]}x{model.input_size[0]} input; use x 0..{w - 1}, "
                f"y 0..{h - 1}"
            )
    return info


def layer(name: str, image: int | None = None, *, batch: int | None = None) -> Objective:
    """Mean of squares of the whole layer: the deep-dream objective."""
    batch = _which(image, batch, "layer")
    return on_layer(
        f"layer({name}{_tag(batch)})",
        name,
        ("layer", name),
        lambda f, raw, layout: raw.pow(2).flatten(1).mean(1),
        lambda model: check_layer(model, name),
        batch,
    )


def class_logit(c: int | str, image: int | None = None, *, batch: int | None = None) -> Objective:
    """The pre-softmax logit of a class, given by index or ImageNet name (case-insensitive)."""
    batch = _which(image, batch, "class_logit")

    def make(idx: int, label: str) -> Objective:
        def fn(acts):
            a = _select(acts[LOGITS], batch)
            return _per_image(a[:, idx], batch, acts[LOGITS].shape[0])

        o = Objective(
            fn,
            f"class_logit({label}{_tag(batch)})",
            [LOGITS],
            image=batch,
            plain=f"class_logit({label})",
        )
        o._binder = lambda model: make(model.class_index(c), label)
        o.target = ("class", idx)
        return o

    if isinstance(c, bool):
        raise UsageError(f"class must be an index or a name, not {c!r}")
    if isinstance(c, int) or is_index(c):
        if int(c) < 0:
            raise UsageError(f"class index {int(c)} is out of range; use a non-negative index")
        return make(int(c), str(int(c)))
    # a name: resolve against ImageNet now (for a useful error early), again when bound
    return make(resolve_class(c, imagenet_classes()), str(c))


def direction(
    layer: str, vector, image: int | None = None, *, batch: int | None = None
) -> Objective:
    """Mean over positions of the dot product of ``layer``'s features with ``vector``."""
    batch = _which(image, batch, "direction")
    vec = torch.as_tensor(vector, dtype=torch.float32).flatten()

    def compute(f, raw, layout):
        v = vec.to(f.device, f.dtype).view(1, -1, *([1] * (f.dim() - 2)))
        return _spatial_mean((f * v).sum(1))

    def check(model):
        info = check_layer(model, layer)
        n = num_channels(info)
        if n is not None and n != vec.numel():
            raise UsageError(f"direction has {vec.numel()} entries but {layer} has {n} channels")
        return info

    return on_layer(f"direction({layer})", layer, ("direction", layer), compute, check, batch)


def diversity(layer: str) -> Objective:
    """Negative Gram-matrix similarity between images of the batch (Lucid's diversity).

    Image i gets ``-sum_{j != i} <G_i, G_j> / N`` with each Gram matrix L2-normalized; adding
    it makes several images of one unit come out different. A batch of one scores 0.
    """

    def make(layout: Layout | None) -> Objective:
        def fn(acts):
            return _diversity(as_nchw(acts[layer], layout))

        def binder(model):
            return make(check_layer(model, layer).layout)

        return Objective(fn, f"diversity({layer})", [layer], binder)

    return make(None)


def _diversity(a: torch.Tensor) -> torch.Tensor:
    n = a.shape[0]
    f = a.flatten(2)
    grams = f @ f.transpose(1, 2) / f.shape[-1]
    grams = grams / grams.flatten(1).norm(dim=1).clamp_min(1e-12).view(n, 1, 1)
    g = grams.flatten(1)
    sim = g @ g.T
    return -(sim.sum(1) - sim.diagonal()) / n


def closeness(layer: str, reference: torch.Tensor) -> Objective:
    """Minus the squared distance of ``layer``'s output to ``reference`` (the output for a
    photo, with or without the batch dim), relative to the reference's mean square: 0 at the
    photo, negative as the image drifts. Feature accentuation (Hamblin et al. 2024) adds it,
    weighted, to a unit's objective to keep the picture close to the photo at that layer."""
    ref = reference.detach()
    scale = float(ref.float().pow(2).mean().clamp_min(1e-12))

    def compute(f, raw, layout):
        r = ref.to(raw.device, raw.dtype)
        r = r if r.dim() == raw.dim() else r.unsqueeze(0)
        return -(raw - r).pow(2).flatten(1).mean(1) / scale

    return on_layer(
        f"closeness({layer})",
        layer,
        ("closeness", layer),
        compute,
        lambda model: check_layer(model, layer),
        None,
    )


# ------------------------------------------------------------------ parsing

#: What a target string may be, for error messages.
GRAMMAR = (
    "LAYER:CHANNEL (a channel), LAYER:CHANNEL@X,Y (a neuron), LAYER (the whole layer), "
    "or a class name or index"
)


def _position(text: str, pos: str) -> tuple[int | str, int | None]:
    """``"3,4"`` -> (3, 4); ``"cls"`` -> ("cls", None)."""
    pos = pos.strip().lower()
    if pos == CLS:
        return CLS, None
    parts = [p.strip() for p in pos.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(
            f"unit {text!r}: write a neuron as LAYER:CHANNEL@X,Y (column, row of the layer's "
            "grid) or LAYER:CHANNEL@cls (a class token), e.g. blocks.10:5@3,4"
        )
    return int(parts[0]), int(parts[1])


def _looks_like_layer(text: str) -> bool:
    if is_index(text):
        return False  # "-1" is a class index out of range, not a layer
    return "." in text or (text[-1:].isdigit() and not text.isdigit())


def _unit(text: str, image: int | None) -> Objective:
    """``LAYER:CHANNEL`` (``logits:C``: a class) or ``LAYER:CHANNEL@X,Y`` / ``@cls``."""
    unit, at, pos = text.partition("@")
    name, c = parse_unit(unit)
    if at:
        x, y = _position(text, pos)
        return neuron(name, c, x, y, image=image)
    if name == LOGITS:
        return class_logit(c, image=image)
    return channel(name, c, image=image)


def _class_or_layer(text: str, vm, image: int | None) -> Objective:
    """A class by name or index; a dotted or numbered name that is no class is reported as
    an unknown layer (with the closest names) when there is a model to ask."""
    try:
        obj = class_logit(text, image=image)
        return obj.bind(vm) if vm is not None else obj
    except UsageError:
        if vm is not None and _looks_like_layer(text):
            check_layer(vm, text)  # raises "unknown layer ... (did you mean ...)"
        raise


def parse(
    text: str | Objective | int,
    model=None,
    image: int | None = None,
    kind: str | None = None,
    *,
    batch: int | None = None,
) -> Objective:
    """The one parser of target strings, used by every command and API that takes one.

    * ``LAYER:CHANNEL`` is :func:`channel` (``logits:C`` is class ``C``);
    * ``LAYER:CHANNEL@X,Y`` is :func:`neuron` at column X, row Y; ``LAYER:CHANNEL@cls`` is the
      class token of a token layer;
    * ``LAYER``, a layer of ``model``, is :func:`layer` (the mean square of the layer);
    * anything else is a class, by index or name (:func:`class_logit`).

    ``kind`` narrows it: ``"class"`` reads the text as a class only, ``"unit"`` as a unit or
    layer only. With a ``model``, the result is bound (validated) against it, and a dotted or
    numbered name that is neither a layer nor a class is reported as an unknown layer, with the
    closest names. The result's :attr:`Objective.target` says what was parsed. ``image=i``
    aims it at image ``i`` of the batch; ``batch=`` is its old name (a DeprecationWarning).
    """
    batch = _which(image, batch, "parse")
    if isinstance(text, Objective):
        return text.bind(model) if model is not None else text
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise UsageError(f"a target must be a string, an int or an Objective, not {text!r}")
    if kind not in (None, "class", "unit"):
        raise UsageError(f"{arg('kind')} must be None, 'class' or 'unit', not {kind!r}")
    vm = as_vision_model(model) if model is not None else None
    if isinstance(text, int) or kind == "class":
        obj = class_logit(text if isinstance(text, int) else text.strip(), image=batch)
        return obj.bind(vm) if vm is not None else obj
    text = text.strip()
    if not text:
        raise UsageError(f"empty target; write {GRAMMAR}")
    if ":" in text:
        obj = _unit(text, batch)
    elif vm is not None and text in layer_names(vm):
        obj = layer(text, image=batch)
    elif kind == "unit":
        if vm is not None:
            check_layer(vm, text)  # raises: unknown layer, with suggestions
        obj = layer(text, image=batch)
    else:
        obj = _class_or_layer(text, vm, batch)
    return obj.bind(vm) if vm is not None else obj


__all__ = [
    "Objective",
    "channel",
    "class_logit",
    "closeness",
    "direction",
    "diversity",
    "layer",
    "neuron",
    "GRAMMAR",
    "parse",
]
