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

from .errors import UsageError, suggest
from .models import VisionModel, as_vision_model, model_guard

LOGITS = "logits"


class _StopForward(BaseException):
    """Raised from a hook once every requested output is captured. A BaseException, so a
    model whose forward catches Exception cannot swallow the early stop."""


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    shape: tuple[int, ...] | None  # output shape without the batch dim (first call)
    calls: int  # how many times the module runs in one forward pass


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def probe(model: VisionModel, size: tuple[int, int] | None = None) -> dict[str, LayerInfo]:
    """Run one forward pass (no grad, eval mode) and record every module's calls and shape.

    The result is cached per network and input size. On a ``meta`` network nothing is computed.
    """
    model = as_vision_model(model)
    net = model.net
    size = tuple(size or model.input_size)
    cache = _PROBES.setdefault(net, {})
    if size in cache:
        return cache[size]
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
        name: LayerInfo(name, type(m).__name__, shapes.get(name), calls.get(name, 0))
        for name, m in named
    }
    if isinstance(out, torch.Tensor):
        table[LOGITS] = LayerInfo(LOGITS, "output", tuple(out.shape[1:]), 1)
    cache[size] = table
    return table


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
            f"run `dreamviz layers {model.name}` to list them"
        )
    info = table[layer]
    if info.calls == 0:
        raise UsageError(
            f"layer {layer!r} never runs in {model.name}'s forward pass in eval mode; "
            f"pick another from `dreamviz layers {model.name}`"
        )
    if info.calls > 1:
        alt = ", ".join(_neighbours(table, layer)) or "its parent block"
        raise UsageError(
            f"layer {layer!r} is one module called {info.calls} times per forward pass, so its "
            f"output is ambiguous; hook a neighbouring layer instead, e.g. {alt}"
        )
    return info


def num_channels(info: LayerInfo) -> int | None:
    if not info.shape:
        return None
    return info.shape[0]


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
        if n is not None and not 0 <= channel < n:
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
