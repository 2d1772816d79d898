"""Image read/write: EXIF orientation, alpha, 16-bit, recipe metadata, atomic writes.

Images in memory are float tensors in [0, 1]: 3 x H x W for one, N x 3 x H x W for a batch.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from . import defaults
from .errors import UsageError, arg, integer

RECIPE_KEY = "dreamviz"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    A kill at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str | os.PathLike, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """Any PIL image -> 3 x H x W float in [0, 1].

    EXIF orientation is applied; alpha is composited over white; grayscale becomes RGB;
    16-bit and 32-bit integer images keep their precision.
    """
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top, 0.0, 1.0)
        return torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(0).expand(3, -1, -1).clone()
    if img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(0).expand(3, -1, -1).clone()
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


_MAX_PIXELS: contextvars.ContextVar[int | None] = contextvars.ContextVar("max_pixels", default=None)
_PILLOW_LIMIT = threading.Lock()


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Within the block, :func:`read_image` refuses images of more than ``max_pixels`` pixels
    (None: :data:`dreamviz.defaults.MAX_PIXELS`). The command line sets it from its flag, so
    every image a command reads (photos, guides, init and natural images) has one limit."""
    if max_pixels is not None:
        integer("max_pixels", max_pixels, 1)
    token = _MAX_PIXELS.set(max_pixels)
    try:
        yield
    finally:
        _MAX_PIXELS.reset(token)


@contextlib.contextmanager
def _open_unchecked(path: str) -> Iterator[Image.Image]:
    """Image.open without Pillow's own decompression-bomb check: the caller checks the size
    against its own limit before decoding a pixel (Pillow's limit could not be raised)."""
    with _PILLOW_LIMIT:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            img = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    with img:
        yield img


def _regular(path: str) -> None:
    """A pipe or a device is not read: opening a FIFO waits forever for a writer."""
    if not os.path.isfile(path):
        raise UsageError(f"{path!r} is not a regular file (a pipe or a device?); give a file")


def check_pixels(path: str, size: tuple[int, int], max_pixels: int | None = None) -> None:
    """A usage error when an image of ``size`` (W, H) is over the pixel limit."""
    limit = max_pixels or _MAX_PIXELS.get() or defaults.MAX_PIXELS
    w, h = size
    if w * h > limit:
        raise UsageError(
            f"image {path!r} is {w}x{h} ({w * h / 1e6:.3g} megapixels), over the limit of "
            f"{limit:,} pixels (a decompression bomb looks like this); shrink it, or raise "
            f"{arg('max_pixels')} if you trust the file"
        )


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> torch.Tensor:
    """Read JPEG, PNG, WebP, ... into a 3 x H x W float tensor in [0, 1] (see pil_to_tensor).

    Images of more than ``max_pixels`` pixels (default: the :func:`pixel_limit` in force, else
    :data:`dreamviz.defaults.MAX_PIXELS`) are refused from their header, before decoding."""
    path = str(path)
    if not os.path.exists(path):
        raise UsageError(f"image {path!r} does not exist; check the path")
    if os.path.isdir(path):
        raise UsageError(f"{path!r} is a folder, not an image; give an image file")
    _regular(path)
    try:
        with _open_unchecked(path) as img:
            check_pixels(path, img.size, max_pixels)
            img.load()
            return pil_to_tensor(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, UsageError):
            raise
        raise UsageError(
            f"cannot read {path!r} as an image ({type(e).__name__}); give a JPEG, PNG or WebP file"
        ) from e


def load_image(item) -> torch.Tensor:
    """A path, a PIL image or a tensor -> a tensor (paths and PIL images: 3 x H x W in [0, 1])."""
    if isinstance(item, (str, os.PathLike)):
        return read_image(item)
    if isinstance(item, Image.Image):
        return pil_to_tensor(item)
    if isinstance(item, torch.Tensor):
        return item
    raise UsageError(
        f"cannot use {type(item).__name__} as an image; give a tensor, a PIL image or a path"
    )


def as_batch(images, model=None) -> torch.Tensor:
    """N x 3 x H x W float tensor from a tensor, a PIL image, a path, or a list of those.

    uint8 tensors are scaled to [0, 1]. With a model (a ``VisionModel``: anything with ``mean``,
    ``std``, ``net`` and ``device``) that normalizes, values outside [0, 1] are refused, since
    the model normalizes them itself; the batch moves to the model's device and dtype.
    """
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise UsageError("no images given; pass a tensor N x 3 x H x W, a PIL image or a path")
    tensors = [load_image(i) for i in items]
    if len(tensors) == 1:
        x = tensors[0]
    else:
        sizes = {tuple(t.shape[-2:]) for t in tensors}
        if len(sizes) > 1:
            listed = ", ".join(f"{w}x{h}" for h, w in sorted(sizes))
            raise UsageError(
                f"the images have different sizes ({listed}); resize them to one size "
                "or pass them one at a time"
            )
        x = torch.cat([t if t.dim() == 4 else t.unsqueeze(0) for t in tensors])
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        raise UsageError(
            f"{arg('images')} must be N x 3 x H x W (RGB), got shape {tuple(x.shape)}; "
            "expand grayscale with images.expand(-1, 3, -1, -1) and drop alpha channels"
        )
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    if not x.is_floating_point():
        raise UsageError(f"{arg('images')} must be a float tensor in [0, 1], got {x.dtype}")
    x = x.detach()
    if model is not None:
        norm = bool((model.mean != 0).any() or (model.std != 1).any())
        lo, hi = float(x.min()), float(x.max())
        if norm and (lo < -0.01 or hi > 1.01):
            raise UsageError(
                f"{arg('images')} must be pixels in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                "pass "
                "unnormalized images (the model normalizes them itself), scaled by 1/255 if 0..255"
            )
        p = next(model.net.parameters(), None)
        dtype = p.dtype if p is not None and p.is_floating_point() else x.dtype
        x = x.to(model.device, dtype)
    return x


def as_image(image) -> torch.Tensor:
    """A path, PIL image or tensor (3 x H x W, H x W or 1 x 3 x H x W in [0, 1]; uint8 scaled)
    -> one 3 x H x W float image on the CPU."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    if isinstance(image, torch.Tensor):
        t = image.detach()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() == 2:
            t = t.unsqueeze(0)
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise UsageError(
                f"{arg('image')} must be 3 x H x W (or 1 x 3 x H x W), got {tuple(image.shape)}"
            )
        if not t.is_floating_point():
            t = t.float() / (65535.0 if t.dtype == torch.int32 else 255.0)
        return t.float().cpu().expand(3, -1, -1).clamp(0, 1).contiguous()
    raise UsageError(
        f"{arg('image')} must be a path, a PIL image or a tensor, not {type(image).__name__}"
    )


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of 3 x H x W or N x 3 x H x W to (H, W)."""
    import torch.nn.functional as F

    x = image if image.dim() == 4 else image.unsqueeze(0)
    if tuple(x.shape[-2:]) == tuple(size):
        out = x
    else:
        out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out if image.dim() == 4 else out[0]


def sample_photos() -> list[Path]:
    """The CC0 sample photos shipped inside the package (``dreamviz/data/photos``)."""
    folder = Path(__file__).resolve().parent / "data" / "photos"
    if not folder.is_dir():
        return []
    return sorted(q for q in folder.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)


def to_pil(image: torch.Tensor) -> Image.Image:
    """3 x H x W (or 1 x 3 x H x W) float in [0, 1] -> 8-bit RGB PIL image."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError("to_pil takes one image; index the batch first")
        image = image[0]
    arr = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu()
    return Image.fromarray(arr.numpy(), "RGB")


def save_png(
    path: str | os.PathLike, image: torch.Tensor | Image.Image, recipe: dict | None = None
) -> str:
    """Write a PNG atomically; ``recipe`` goes into its text metadata as JSON."""
    img = image if isinstance(image, Image.Image) else to_pil(image)
    info = PngImagePlugin.PngInfo()
    if recipe is not None:
        info.add_text(RECIPE_KEY, json.dumps(recipe, sort_keys=True, default=str))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", pnginfo=info)
    return str(path)


def save_image(
    path: str | os.PathLike, image: torch.Tensor | Image.Image, recipe: dict | None = None
) -> str:
    """Write a still by its suffix, atomically: ``.png`` (with the recipe, see
    :func:`save_png`), ``.jpg``/``.jpeg`` (quality 92; the recipe in a JPEG comment) or
    ``.webp`` (quality 92; no recipe)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return save_png(path, image, recipe)
    img = image if isinstance(image, Image.Image) else to_pil(image)
    if suffix in (".jpg", ".jpeg"):
        extra = {"comment": json.dumps(recipe, sort_keys=True, default=str)} if recipe else {}
        with atomic_path(path) as tmp:
            img.save(tmp, format="JPEG", quality=92, **extra)
    elif suffix == ".webp":
        with atomic_path(path) as tmp:
            img.save(tmp, format="WEBP", quality=92)
    else:
        raise UsageError(f"cannot write {str(path)!r}: use .png, .jpg or .webp")
    return str(path)


def save_animation(
    path: str | os.PathLike,
    images,
    fps: float = defaults.DREAM["fps"],
    loop: int = 0,
) -> str:
    """Write an animated ``.gif`` or ``.webp`` (lossy, quality 90) atomically from a sequence
    of 3 x H x W tensors or PIL images, all the same size; ``loop=0`` repeats forever."""
    suffix = Path(path).suffix.lower()
    fmt = {".gif": "GIF", ".webp": "WEBP"}.get(suffix)
    if fmt is None:
        raise UsageError(f"cannot write an animation to {str(path)!r}: use .gif or .webp")
    frames = [im if isinstance(im, Image.Image) else to_pil(im) for im in images]
    if not frames:
        raise ValueError("no frames to write")
    opts = {"quality": 90} if fmt == "WEBP" else {"optimize": False}
    with atomic_path(path) as tmp:
        frames[0].save(
            tmp,
            format=fmt,
            save_all=True,
            append_images=frames[1:],
            duration=max(1, round(1000.0 / fps)),
            loop=loop,
            **opts,
        )
    return str(path)


def read_recipe(path: str | os.PathLike) -> dict:
    """The recipe stored by :func:`save_png`, or a usage error naming the problem."""
    path = str(path)
    if not os.path.exists(path):
        raise UsageError(f"{path!r} does not exist; give a PNG written by dreamviz")
    _regular(path)
    try:
        with _open_unchecked(path) as img:
            text = img.info.get(RECIPE_KEY)  # save_png writes it before the pixels
            if not isinstance(text, str) and hasattr(img, "text"):
                check_pixels(path, img.size)  # .text decodes the pixels to reach the end
                text = img.text.get(RECIPE_KEY)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise UsageError(f"cannot read {path!r} as an image ({type(e).__name__})") from e
    if not text:
        raise UsageError(f"{path!r} carries no dreamviz recipe; give a PNG written by dreamviz")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"the recipe in {path!r} is not valid JSON") from e


def versions() -> dict[str, str]:
    import torchvision

    from ._version import __version__

    return {
        "dreamviz": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
