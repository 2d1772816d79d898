"""Image read/write: EXIF orientation, alpha, 16-bit, recipe metadata, atomic writes.

Images in memory are float tensors in [0, 1]: 3 x H x W for one, N x 3 x H x W for a batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import UsageError

RECIPE_KEY = "dreamviz"


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


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read JPEG, PNG, WebP, ... into a 3 x H x W float tensor in [0, 1] (see pil_to_tensor)."""
    path = str(path)
    if not os.path.exists(path):
        raise UsageError(f"image {path!r} does not exist; check the path")
    if os.path.isdir(path):
        raise UsageError(f"{path!r} is a folder, not an image; give an image file")
    try:
        with Image.open(path) as img:
            img.load()
            return pil_to_tensor(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UsageError(
            f"cannot read {path!r} as an image ({type(e).__name__}); give a JPEG, PNG or WebP file"
        ) from e


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
    fps: float = 12.0,
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
    try:
        with Image.open(path) as img:
            text = getattr(img, "text", {}).get(RECIPE_KEY)
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"cannot read {path!r} as an image ({type(e).__name__})") from e
    if not text:
        raise UsageError(f"{path!r} carries no dreamviz recipe; give a PNG written by dreamviz")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"the recipe in {path!r} is not valid JSON") from e


def versions() -> dict[str, str]:
    import torchvision

    from . import __version__

    return {
        "dreamviz": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
