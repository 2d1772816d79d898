"""The images of a dataset-examples run: which files, how each is prepared for the model, and
how a box in the model's input maps back to the original image.

Every image gets the model's own preprocessing: resized (antialiased) so that it covers the
model's input size with its aspect ratio kept (for a square input: the short side to the input
size), then centre-cropped to the input size. :class:`Geometry` holds that map, so a box in the
input maps back to the original image's pixels (after its EXIF orientation is applied).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DreamvizError, UsageError, arg
from ..io import IMAGE_SUFFIXES, read_image, resize


def list_images(folder: str | os.PathLike) -> list[str]:
    """Every JPEG, PNG and WebP file under ``folder``, recursively, as sorted relative POSIX
    paths. Pipes, devices and links to folders are left out; a missing folder, a file and a
    folder without images are one-line errors."""
    root = Path(folder)
    if not root.exists():
        raise UsageError(f"{arg('images')} {str(folder)!r} does not exist; give a folder of images")
    if not root.is_dir():
        raise UsageError(
            f"{arg('images')} {str(folder)!r} is not a folder; give a folder of images"
        )
    found = []
    for here, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            path = Path(here) / name
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                found.append(path.relative_to(root).as_posix())
    if not found:
        raise UsageError(
            f"{arg('images')} {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
            "give a folder that does"
        )
    return sorted(found)


def files_fingerprint(folder: str | os.PathLike, files: Sequence[str]) -> str:
    """sha256 of every file's relative path, size and modification time: a changed, added or
    removed image changes it."""
    h = hashlib.sha256()
    for rel in files:
        try:
            st = os.stat(Path(folder) / rel)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel}\0missing\n".encode())
    return h.hexdigest()


def sample_key(rel: str) -> int:
    """A fixed pseudo-random 62-bit key of an image, from its relative path: the quantile
    sample keeps the images of the smallest keys, whatever the order or the process."""
    return int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") >> 2


@dataclass(frozen=True)
class Geometry:
    """How an image of ``original`` (H, W) becomes the model's input of ``size`` (H, W):
    resized to ``resized`` (H, W), then cropped at (``top``, ``left``)."""

    original: tuple[int, int]
    size: tuple[int, int]

    @property
    def resized(self) -> tuple[int, int]:
        (h0, w0), (h, w) = self.original, self.size
        scale = max(h / h0, w / w0)
        return max(h, round(h0 * scale)), max(w, round(w0 * scale))

    @property
    def offset(self) -> tuple[int, int]:
        (rh, rw), (h, w) = self.resized, self.size
        return (rh - h) // 2, (rw - w) // 2

    def to_original(self, box: Sequence[int]) -> list[int]:
        """A box ``[x0, y0, x1, y1]`` in input pixels (x1, y1 exclusive) -> the same box in the
        original image's pixels, rounded outwards and clipped to the image."""
        (h0, w0), (rh, rw), (top, left) = self.original, self.resized, self.offset
        sx, sy = w0 / rw, h0 / rh
        x0, y0, x1, y1 = box
        out = [
            math.floor((x0 + left) * sx),
            math.floor((y0 + top) * sy),
            math.ceil((x1 + left) * sx),
            math.ceil((y1 + top) * sy),
        ]
        return [
            max(0, min(out[0], w0 - 1)),
            max(0, min(out[1], h0 - 1)),
            max(1, min(out[2], w0)),
            max(1, min(out[3], h0)),
        ]


def preprocess(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """3 x H0 x W0 in [0, 1] -> 3 x H x W: resized to cover ``size``, centre-cropped."""
    g = Geometry(tuple(image.shape[-2:]), (int(size[0]), int(size[1])))
    (top, left), (h, w) = g.offset, g.size
    return resize(image, g.resized)[:, top : top + h, left : left + w].clamp(0, 1)


def describe(size: Sequence[int]) -> dict:
    """The preprocessing, as examples.json states it."""
    h, w = int(size[0]), int(size[1])
    short = f"the short side to {h} px" if h == w else f"to cover {w}x{h} px, aspect kept"
    return {
        "text": f"EXIF orientation applied, resized (bilinear, antialiased) {short}, "
        f"centre-cropped to {w}x{h}",
        "size": [h, w],
        "resize": "cover",
        "crop": "center",
    }


class Images(torch.utils.data.Dataset):
    """The images of a run, each read and preprocessed; an unreadable one comes back as
    ``(index, None, why)`` so that the run counts it and goes on."""

    def __init__(
        self,
        folder: str | os.PathLike,
        files: Sequence[str],
        size: Sequence[int],
        max_pixels: int | None = None,
    ):
        self.folder, self.files = Path(folder), list(files)
        self.size, self.max_pixels = (int(size[0]), int(size[1])), max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            image = read_image(self.folder / self.files[i], self.max_pixels)
            return i, preprocess(image, self.size), None
        except Exception as e:  # noqa: BLE001 - any unreadable file is skipped and counted
            # a dreamviz error keeps its argument marks, so the CLI can show them as flags
            text = e.args[0] if isinstance(e, DreamvizError) and e.args else str(e)
            return i, None, str(text).splitlines()[0] if str(text) else type(e).__name__


def collate(items):
    """A DataLoader batch: (indices of the images read, N x 3 x H x W, [(index, why)] of the
    images skipped)."""
    good = [(i, x) for i, x, _ in items if x is not None]
    bad = [(i, why) for i, x, why in items if x is None]
    if not good:
        return torch.zeros(0, dtype=torch.long), None, bad
    ids = torch.tensor([i for i, _ in good], dtype=torch.long)
    return ids, torch.stack([x for _, x in good]), bad


__all__ = [
    "Geometry",
    "Images",
    "collate",
    "describe",
    "files_fingerprint",
    "list_images",
    "preprocess",
    "sample_key",
]
