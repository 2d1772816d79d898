"""Capture named-module outputs during a forward pass, stop it early, and always clean up.

Layers are addressed by their dotted names from ``net.named_modules()`` (``blocks.10``,
``layer3.1``, ``inception4a``); the pseudo-layer ``logits`` is the model's output. A unit is the
string ``LAYER:CHANNEL``; :func:`parse_unit` is the one parser for it.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .errors import DreamvizError, UsageError, suggest
from .models import VisionModel, as_vision_model, model_guard

LOGITS = "logits"


class _StopForward(BaseException):
    """Raised from a hook once every requested output is captured. A BaseException, so a
    model whose forward catches Exception cannot swallow the early stop."""


LAYOUTS = ("nchw", "nhwc", "tokens", "vector")


@dataclass(frozen=True)
class Layout:
    """Where a layer's feature (channel) axis sits, detected from its output shape.

    * ``nchw``: N x C x H x W (convolutions);
    * ``nhwc``: N x H x W x C (channels last: Swin's stages, ConvNeXt's block internals);
    * ``tokens``: N x L x D (transformers): D features; ``prefix`` leading tokens (ViT's class
      token) before ``grid`` = (rows, cols) patch tokens, when the patch grid is recognized;
    * ``vector``: N x C (pooled features, logits).
    """

    kind: str
    channels: int
    grid: tuple[int, int] | None = None  # (H, W) of the feature map or of the patch grid
    prefix: int = 0  # tokens before the patch grid (class / distillation tokens)

    def describe(self) -> str:
        """``768 ch, 14x14 tokens + cls`` / ``96 ch, 56x56, channels-last`` / ``64 ch, 56x56``."""
        if self.kind == "vector":
            return f"{self.channels} ch"
        grid = f"{self.grid[0]}x{self.grid[1]}" if self.grid else "?"
        if self.kind == "tokens":
            extra = {0: "", 1: " + cls"}.get(self.prefix, f" + {self.prefix} extra")
            return f"{self.channels} ch, {grid} tokens{extra}"
        return f"{self.channels} ch, {grid}" + (", channels-last" if self.kind == "nhwc" else "")


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    shape: tuple[int, ...] | None  # output shape without the batch dim (first call)
    calls: int  # how many times the module runs in one forward pass
    layout: Layout | None = None  # None: no channel axis dreamviz knows


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 0.05 * max(a, b)


def _strided(dim: int, side: int) -> bool:
    """Whether a feature map side can come from an input side through an integer total stride
    (patch 14 or 16, strides of 2), allowing the few pixels that unpadded convolutions lose
    (as in Inception): side / k, give or take."""
    return dim == 1 or any(side / k - 4 <= dim <= side / k + 1 for k in range(1, 65))


def _grid(a: int, b: int, h: int, w: int) -> bool:
    return a > 0 and b > 0 and _close(a / b, h / w) and _strided(a, h) and _strided(b, w)


def detect_layout(shape: tuple[int, ...] | None, size: tuple[int, int]) -> Layout | None:
    """The layout of a per-image output ``shape`` (no batch dim) at input ``size`` (H, W).

    A 3-dim shape is N x C x H x W when its last two dims look like a feature map of the input
    (its aspect ratio, and a side the input's divided by a power of 2), and N x H x W x C when
    its first two do (if both do, as for C == H == W, NCHW wins); otherwise it has no known
    channel axis (attention windows, say), and the user can state one. A 2-dim
    shape is tokens; L = prefix + rows * cols is matched to a patch grid of the input's aspect
    ratio, trying one class token first, then none, then two.
    """
    if not shape:
        return None
    h, w = size
    aspect = h / w
    if len(shape) == 1:
        return Layout("vector", shape[0])
    if len(shape) == 3:
        a, b, c = shape
        if _grid(b, c, h, w):
            return Layout("nchw", a, (b, c))
        if _grid(a, b, h, w):
            return Layout("nhwc", c, (a, b))
        return None  # e.g. attention windows: state the layout if it has a channel axis
    if len(shape) == 2:
        length, dim = shape
        for prefix in (1, 0, 2):
            n = length - prefix
            if n <= 0:
                continue
            rows = max(1, round((n * aspect) ** 0.5))
            if n % rows == 0 and _close(rows / (n // rows), aspect):
                return Layout("tokens", dim, (rows, n // rows), prefix)
        return Layout("tokens", dim, None, 0)
    return None


def as_nchw(t: torch.Tensor, layout: Layout | None) -> torch.Tensor:
    """A layer's output as N x C x H x W (a view where possible; NCHW is returned as is).

    Tokens: the patch tokens only, on their grid (N x D x rows x cols), or N x D x L x 1 when
    no grid is known. Vectors: N x C x 1 x 1.
    """
    if layout is None or layout.kind == "nchw":
        return t if t.dim() != 2 else t[:, :, None, None]
    if layout.kind == "nhwc":
        return t.permute(0, 3, 1, 2)
    if layout.kind == "vector":
        return t.reshape(t.shape[0], -1, 1, 1)
    patches = t[:, layout.prefix :]
    if layout.grid is not None and patches.shape[1] == layout.grid[0] * layout.grid[1]:
        return patches.transpose(1, 2).reshape(t.shape[0], t.shape[-1], *layout.grid)
    return patches.transpose(1, 2).unsqueeze(-1)


def token(t: torch.Tensor, layout: Layout, index: int) -> torch.Tensor:
    """Raw token ``index`` of a token layer's output (0: ViT's class token): N x D."""
    return t[:, index]


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def probe(model: VisionModel, size: tuple[int, int] | None = None) -> dict[str, LayerInfo]:
    """Run one forward pass (no grad, eval mode) and record every module's calls and shape.

    The result is cached per network and input size. On a ``meta`` network nothing is computed.
    A fixed-size model resizes every image to its ``input_size``, so it is probed at that size
    whatever ``size`` says (its layers never see another).
    """
    model = as_vision_model(model)
    net = model.net
    size = tuple(model.input_size if model.fixed_size or not size else size)
    cache = _PROBES.setdefault(net, {})
    if size in cache:
        return _with_overrides(model, cache[size])
    calls: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    handles = []

    def make_hook(name):
        def hook(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if name not in shapes:
                t = output if isinstance(output, torch.Tensor) else None
                if t is None and isinstance(output, (tuple, list)) and output:
                    t = output[0] if isinstance(output[0], torch.Tensor) else None
                shapes[name] = tuple(t.shape[1:]) if t is not None else None

        return hook

    named = [(n, m) for n, m in net.named_modules() if n]
    try:
        for name, module in named:
            handles.append(module.register_forward_hook(make_hook(name)))
        dtype = next(
            (t.dtype for t in net.parameters() if t.is_floating_point()), torch.get_default_dtype()
        )
        x = torch.zeros(1, 3, *size, device=model.device, dtype=dtype)
        with model_guard(net), torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    table = {
        name: LayerInfo(
            name,
            type(m).__name__,
            shapes.get(name),
            calls.get(name, 0),
            detect_layout(shapes.get(name), size),
        )
        for name, m in named
    }
    if isinstance(out, torch.Tensor):
        shape = tuple(out.shape[1:])
        table[LOGITS] = LayerInfo(LOGITS, "output", shape, 1, detect_layout(shape, size))
    cache[size] = table
    return _with_overrides(model, table)


def _with_overrides(model: VisionModel, table: dict[str, LayerInfo]) -> dict[str, LayerInfo]:
    """Apply the layouts a user stated (``VisionModel(layouts={...})``) over detected ones."""
    stated = getattr(model, "layouts", None) or {}
    if not stated:
        return table
    out = dict(table)
    for name, spec in stated.items():
        if name in out:
            info = out[name]
            out[name] = LayerInfo(
                info.name, info.type, info.shape, info.calls, stated_layout(spec, info.shape)
            )
    return out


def stated_layout(spec, shape: tuple[int, ...] | None) -> Layout:
    """A user's layout: a :class:`Layout`, or ``"nchw"``/``"nhwc"``/``"vector"``/
    ``"tokens"`` (``"tokens+1"`` for one class token), completed from the layer's shape."""
    if isinstance(spec, Layout):
        return spec
    kind, plus, extra = str(spec).partition("+")
    if kind not in LAYOUTS or plus and (kind != "tokens" or not extra.isdigit()):
        raise UsageError(f"unknown layout {spec!r}; use one of {', '.join(LAYOUTS)} or tokens+K")
    if not shape:
        raise UsageError(f"layout {spec!r} was stated for a layer whose output is not a tensor")
    need = {"nchw": 3, "nhwc": 3, "tokens": 2, "vector": 1}[kind]
    if len(shape) != need:
        raise UsageError(
            f"layout {spec!r} needs a {need + 1}-dim output (with the batch), "
            f"but the layer gives N x {' x '.join(map(str, shape))}"
        )
    if kind == "nchw":
        return Layout(kind, shape[0], tuple(shape[1:]))
    if kind == "nhwc":
        return Layout(kind, shape[2], tuple(shape[:2]))
    if kind == "vector":
        return Layout(kind, shape[0])
    prefix = int(extra or 0)
    n = shape[0] - prefix
    if n < 1:
        raise UsageError(f"layout {spec!r}: the layer has only {shape[0]} tokens")
    rows = max(1, round(n**0.5))
    grid = (rows, n // rows) if rows * (n // rows) == n else None
    return Layout(kind, shape[1], grid, prefix)


def check_input_size(model: VisionModel, size: tuple[int, int]) -> None:
    """A one-line usage error if ``model`` cannot run on (or loses every pixel of) an image of
    ``size`` (H, W); the check is one forward pass, cached per model and size."""
    model = as_vision_model(model)
    h, w = (int(size[0]), int(size[1]))
    if model.fixed_size or (h, w) == tuple(model.input_size):
        return  # fixed-size models resize every image to their own size
    native = f"{model.input_size[1]}x{model.input_size[0]}"
    try:
        table = probe(model, (h, w))
    except DreamvizError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure inside the model at this size
        raise UsageError(
            f"a {w}x{h} image is too small for {model.name} (the network fails: "
            f"{type(e).__name__}); use a larger size, e.g. its native {native}"
        ) from e
    empty = [i.name for i in table.values() if i.shape is not None and 0 in i.shape]
    if empty:
        raise UsageError(
            f"a {w}x{h} image is too small for {model.name}: {empty[0]} has no pixels left; "
            f"use a larger size, e.g. its native {native}"
        )


def layers(model: VisionModel | nn.Module | str) -> dict[str, LayerInfo]:
    """Every layer of ``model``, in module order: name -> :class:`LayerInfo` (type, output
    shape at the native input size, calls per forward pass, layout), ``logits`` last.

    ``model`` is a model, or a model's name: its architecture is then probed without weights,
    on ``meta`` tensors where it can be (so it works offline for every classifier)."""
    if not isinstance(model, str):
        return probe(as_vision_model(model))
    from .models import architecture

    try:
        built = architecture(model, device="meta")
    except NotImplementedError:  # a builder that computes with tensors (regnet): build on the
        built = architecture(model, device="cpu").to("meta")  # CPU, probe on meta
    try:
        return probe(built)
    except NotImplementedError:  # an op with no meta kernel: compute on the CPU instead
        return probe(architecture(model, device="cpu"))


def layer_names(model: VisionModel) -> list[str]:
    return [n for n, _ in as_vision_model(model).net.named_modules() if n] + [LOGITS]


def _neighbours(table: dict[str, LayerInfo], name: str) -> list[str]:
    names = list(table)
    i = names.index(name)
    ok = [n for n in names[max(0, i - 3) : i + 4] if n != name and table[n].calls == 1]
    parent = name.rsplit(".", 1)[0] if "." in name else None
    if parent in table and table[parent].calls == 1:
        ok.insert(0, parent)
    return ok[:3]


def check_layer(model: VisionModel, layer: str) -> LayerInfo:
    """Validate a layer name against the model; return its :class:`LayerInfo`."""
    model = as_vision_model(model)
    table = probe(model)
    if layer == LOGITS and LOGITS not in table:
        raise UsageError(
            f"{model.name}'s forward pass does not return a tensor of logits; "
            "target a layer instead (LAYER:CHANNEL)"
        )
    if layer not in table:
        raise UsageError(
            f"unknown layer {layer!r} in {model.name}{suggest(layer, table)}; "
            f"list them with dreamviz.layers({model.name!r})"
        )
    info = table[layer]
    if info.calls == 0:
        raise UsageError(
            f"layer {layer!r} never runs in {model.name}'s forward pass in eval mode; "
            f"pick another from dreamviz.layers({model.name!r})"
        )
    if info.calls > 1:
        alt = ", ".join(_neighbours(table, layer)) or "its parent block"
        raise UsageError(
            f"layer {layer!r} is one module called {info.calls} times per forward pass, so its "
            f"output is ambiguous; hook a neighbouring layer instead, e.g. {alt}"
        )
    return info


def num_channels(info: LayerInfo) -> int | None:
    """The size of the layer's feature axis (wherever it sits), or None if it has none."""
    return info.layout.channels if info.layout is not None else None


def parse_unit(text: str) -> tuple[str, int | None]:
    """``"blocks.10:5"`` -> ``("blocks.10", 5)``; ``"blocks.10"`` -> ``("blocks.10", None)``."""
    text = text.strip()
    if not text:
        raise UsageError("empty unit; write LAYER:CHANNEL, e.g. blocks.10:5")
    layer, sep, chan = text.rpartition(":")
    if not sep:
        return text, None
    layer = layer.strip()
    if not layer:
        raise UsageError(f"unit {text!r} has no layer; write LAYER:CHANNEL, e.g. blocks.10:5")
    try:
        channel = int(chan)
    except ValueError:
        raise UsageError(
            f"unit {text!r}: channel {chan!r} is not an integer; write LAYER:CHANNEL, "
            "e.g. blocks.10:5"
        ) from None
    return layer, channel


def check_unit(model: VisionModel, layer: str, channel: int | None) -> LayerInfo:
    """Validate a layer and, if given, a channel index against the model."""
    info = check_layer(model, layer)
    if channel is not None:
        n = num_channels(info)
        if n is None:
            shape = " x ".join(map(str, info.shape or ())) or "no tensor"
            raise UsageError(
                f"{layer} has no channel axis (its output is N x {shape}); give the whole "
                f"layer ({layer}) or pick another from dreamviz.layers({model.name!r})"
            )
        if not 0 <= channel < n:
            raise UsageError(
                f"channel {channel} is out of range for {layer} ({n} channels); use 0..{n - 1}"
            )
    return info


class Capture(contextlib.AbstractContextManager):
    """Record the outputs of the requested layers; stop the forward pass once all are seen.

    >>> with Capture(model, ["blocks.3", "blocks.10"]) as cap:
    ...     acts = cap(images)          # dict: layer name -> tensor, with gradients
    ...     acts["blocks.10"].mean().backward()

    * Early stop: modules after the deepest requested layer never run.
    * In-place safe: unless the forward pass stops right after a captured layer, the layers
      after it receive a clone, so a following ``ReLU(inplace=True)`` cannot overwrite what
      was captured, and gradients of later layers with respect to it exist.
    * Modules called more than once per pass, or never, are refused with a clear error.
    * On exit, by success, exception or Ctrl-C, every hook is removed and the network's
      train/eval flags and ``requires_grad`` are restored.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[str],
        stop_early: bool = True,
        guard: bool = True,
    ):
        self.model = as_vision_model(model)
        self.layers = list(dict.fromkeys(layers))
        self.stop_early = stop_early
        self._guard = guard
        self._handles: list = []
        self._stack = contextlib.ExitStack()
        self._acts: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            if layer != LOGITS:
                check_layer(self.model, layer)
        self._modules = dict(self.model.net.named_modules())

    def __enter__(self) -> Capture:
        try:
            if self._guard:
                self._stack.enter_context(model_guard(self.model.net))
            for layer in self.layers:
                if layer == LOGITS:
                    continue
                hook = self._make_hook(layer)
                self._handles.append(self._modules[layer].register_forward_hook(hook))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._acts = {}
        self._stack.close()
        return None  # never swallow the caller's exception

    @property
    def _hooked(self) -> list[str]:
        return [layer for layer in self.layers if layer != LOGITS]

    def _make_hook(self, layer: str):
        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor):
                raise UsageError(f"layer {layer!r} returns {type(output).__name__}, not a tensor")
            last = (
                self.stop_early
                and LOGITS not in self.layers
                and len(self._acts) == len(self._hooked) - 1
            )
            self._acts[layer] = output
            if last:
                raise _StopForward
            # the rest of the network gets a copy: an in-place op after this layer cannot
            # touch what was captured, and the captured tensor stays on the path to later
            # layers, so d(later)/d(captured) exists (Grad-CAM needs it)
            return output.clone()

        return hook

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self._handles and self._hooked:
            raise RuntimeError("Capture must be used inside a `with` block")
        self._acts = {}
        try:
            out = self.model(images)
        except _StopForward:
            out = None
        acts, self._acts = self._acts, {}
        if LOGITS in self.layers:
            acts[LOGITS] = out
        missing = [layer for layer in self.layers if layer not in acts]
        if missing:
            raise RuntimeError(f"layers {missing} produced no output in the forward pass")
        return acts


def capture(model: nn.Module, layers: Iterable[str], **kwargs) -> Capture:
    """Shorthand for :class:`Capture`."""
    return Capture(model, layers, **kwargs)


@contextlib.contextmanager
def replace_output(model: nn.Module, layer: str, fn):
    """While the block runs, ``layer``'s output is replaced by ``fn(output)`` (ablations, path
    integrals at a layer). The hook is removed and the model's flags restored on exit, by
    success, error or Ctrl-C."""
    model = as_vision_model(model)
    check_layer(model, layer)
    module = dict(model.net.named_modules())[layer]
    with model_guard(model.net):
        handle = module.register_forward_hook(lambda _m, _i, out: fn(out))
        try:
            yield model
        finally:
            handle.remove()
