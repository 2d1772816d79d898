"""Showing results to a person: rich display in Jupyter, live progress bars and previews.

Results of :func:`~dreamviz.render`, :func:`~dreamviz.dream`, :func:`~dreamviz.saliency`
(``result=True``) and :func:`dreamviz.gallery.build` mix in :class:`Displayable`: in a notebook
they show themselves (``_repr_html_``: a grid of images with captions as text; ``_repr_png_``:
the same grid drawn into one PNG), and anywhere they have ``to_pil()``, ``save(path)`` and
``show()``.

While working, :class:`Bar` is a ``tqdm.auto`` progress bar (a widget in notebooks with
ipywidgets, text on stderr elsewhere) and :class:`Preview` one inline image in a notebook,
updated in place every ``k`` steps. Both are created only when asked for; when they are off the
work runs exactly as without them (same images, bit for bit).

Nothing here imports IPython, ipywidgets or matplotlib at import time: dreamviz imports and runs
without them, and uses them only inside a running notebook.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import io
import math
import os
import sys
from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from .defaults import DISPLAY
from .errors import UsageError, arg
from .io import save_image, to_pil

# ----------------------------------------------------------------------------- where we run


def in_notebook() -> bool:
    """Whether this Python runs in a Jupyter kernel (Jupyter, JupyterLab, VS Code, Colab)."""
    if "IPython" not in sys.modules or "ipykernel" not in sys.modules:
        return False
    try:
        shell = sys.modules["IPython"].get_ipython()
    except Exception:  # noqa: BLE001 - a broken IPython means: not a notebook
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def interactive() -> bool:
    """Whether a person is watching: a notebook, IPython, or ``python -i`` / the REPL. A script
    or the command line is not interactive (the CLI draws its own progress bars)."""
    if in_notebook() or hasattr(sys, "ps1") or sys.flags.interactive:
        return True
    ipython = sys.modules.get("IPython")
    try:
        return ipython is not None and ipython.get_ipython() is not None
    except Exception:  # noqa: BLE001
        return False


def wants_progress(progress) -> bool:
    """``progress``: True, False, or None (the default: on when :func:`interactive`)."""
    if progress is None:
        return interactive()
    if not isinstance(progress, bool):
        raise UsageError(f"{arg('progress')} must be True, False or None, got {progress!r}")
    return progress


def preview_every(preview) -> int:
    """``preview``: None/0/False (off) or a step interval k >= 1; True means every
    ``DISPLAY['preview_every']`` steps. Returns 0 for off."""
    if preview is None or preview is False:
        return 0
    if preview is True:
        return int(DISPLAY["preview_every"])
    if isinstance(preview, int) and preview >= 0:
        return preview
    raise UsageError(
        f"{arg('preview')} must be a step interval (a whole number of steps), True or None, "
        f"got {preview!r}"
    )


# ----------------------------------------------------------------------------- drawing


def font(size: int = DISPLAY["font_size"]):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def as_pil(image) -> Image.Image:
    """A PIL image as it is, or a 3 x H x W (1 x 3 x H x W) tensor in [0, 1] as RGB."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        return to_pil(image.detach().float().cpu())
    raise UsageError(f"cannot show {type(image).__name__} as an image")


def fit(image: Image.Image, max_side: int, min_side: int = DISPLAY["min_side"]) -> Image.Image:
    """``image`` scaled down so that its longer side is at most ``max_side``, or, if that side
    is under ``min_side``, up by a whole factor (nearest pixels, so they stay sharp)."""
    w, h = image.size
    if max(w, h) < min_side:
        k = math.ceil(min_side / max(w, h))
        return image.resize((w * k, h * k), Image.Resampling.NEAREST)
    if max(w, h) <= max_side:
        return image
    s = max_side / max(w, h)
    return image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)


def columns(n: int, width: int, limit: int = DISPLAY["grid_width"]) -> int:
    """Columns of a grid of ``n`` tiles ``width`` px wide that fits ``limit`` px."""
    return max(1, min(n, limit // max(1, width + DISPLAY["pad"])))


def grid(
    images: Sequence[Image.Image],
    captions: Sequence[Sequence[str]] | None = None,
    cols: int | None = None,
    title: str | None = None,
) -> Image.Image:
    """Tiles (PIL images, any sizes) in rows of ``cols``, each with its caption lines below,
    and an optional title line on top: one white RGB picture."""
    if not images:
        raise UsageError("nothing to show: no images")
    captions = [list(c) for c in captions] if captions is not None else [[] for _ in images]
    pad = DISPLAY["pad"]
    f = font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(f.getbbox("Ag")[3] * 1.3) + 1
    text_w = max((measure.textlength(t, font=f) for c in captions for t in c), default=0)
    cell_w = max(max(im.size[0] for im in images), min(int(text_w) + 2, DISPLAY["caption_width"]))
    cell_h = max(im.size[1] for im in images) + line_h * max(len(c) for c in captions)
    cols = cols or columns(len(images), cell_w)
    rows = math.ceil(len(images) / cols)
    top = line_h + pad if title else 0
    width = max(
        cols * cell_w + (cols + 1) * pad, int(measure.textlength(title or "", font=f)) + 2 * pad
    )
    canvas = Image.new("RGB", (width, top + rows * cell_h + (rows + 1) * pad), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad), title, fill=(0, 0, 0), font=f)
    for k, (im, lines) in enumerate(zip(images, captions)):
        x = pad + (k % cols) * (cell_w + pad)
        y = top + pad + (k // cols) * (cell_h + pad)
        canvas.paste(im.convert("RGB"), (x, y))
        for j, text in enumerate(lines):
            fill = (0, 0, 0) if j == 0 else (90, 90, 90)
            draw.text((x, y + im.size[1] + j * line_h), _clip(draw, text, f, cell_w), fill, f)
    return canvas


def _clip(draw: ImageDraw.ImageDraw, text: str, f, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` px."""
    if draw.textlength(text, font=f) <= width:
        return text
    while text and draw.textlength(text + "...", font=f) > width:
        text = text[:-1]
    return text + "..."


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def data_uri(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


_FIGURE = "margin:0;display:inline-block;vertical-align:top"
_CAPTION = (
    "font:12px/1.35 ui-monospace,Menlo,Consolas,monospace;max-width:{w}px;overflow-wrap:anywhere"
)


def html_grid(
    tiles: Sequence[tuple[Sequence[Image.Image], Sequence[str]]],
    title: str | None = None,
    footer: str | None = None,
) -> str:
    """An HTML block: each tile is one or more images side by side and its caption lines
    (escaped text, the first in bold); images are inline PNGs, so the notebook keeps them."""
    figs = []
    for images, lines in tiles:
        if not images:
            continue
        width = sum(im.size[0] for im in images) + 2 * (len(images) - 1)
        alt = html.escape(lines[0] if lines else "", quote=True)
        imgs = "".join(
            f'<img src="{data_uri(im)}" width="{im.size[0]}" height="{im.size[1]}" '
            f'style="margin-right:2px" alt="{alt}">'
            for im in images
        )
        caption = "<br>".join(
            (f"<b>{html.escape(t)}</b>" if j == 0 else html.escape(t)) for j, t in enumerate(lines)
        )
        figs.append(
            f'<figure style="{_FIGURE}">{imgs}'
            f'<figcaption style="{_CAPTION.format(w=max(width, 120))}">{caption}</figcaption>'
            "</figure>"
        )
    head = f'<div style="font-weight:600;margin:2px 0 6px">{html.escape(title)}</div>'
    head = head if title else ""
    foot = f'<div style="margin-top:4px;font-size:12px">{footer}</div>' if footer else ""
    body = '<div style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(figs) + "</div>"
    return f'<div class="dreamviz">{head}{body}{foot}</div>'


# ----------------------------------------------------------------------------- predictions


def top1(probabilities: torch.Tensor | None, classes=None) -> list[tuple[str, float]] | None:
    """Each image's top-1 class and its probability, from N x classes probabilities (what
    :func:`dreamviz.models.classify` gives; the model call is the caller's): ``(name,
    probability)``, the name from ``classes`` or ``"class K"``. None gives None."""
    if probabilities is None:
        return None
    p, i = probabilities.float().max(1)
    return [
        (classes[k] if classes and k < len(classes) else f"class {k}", float(q))
        for k, q in zip(i.tolist(), p.tolist())
    ]


# ----------------------------------------------------------------------------- blur


def gaussian_blur(
    images: torch.Tensor, sigma: float, kernel: int | None = None, edges: str = "reflect"
) -> torch.Tensor:
    """The one Gaussian blur: ``images`` (... x H x W; a batch, one image or one map) blurred
    with standard deviation ``sigma`` px over ``kernel`` taps (odd; default ``2 * ceil(3 *
    sigma) + 1``). ``edges="reflect"`` (torchvision's blur; the kernel shrinks to fit images
    smaller than it, as reflect padding needs) or ``"replicate"`` (a separable blur whose
    radius is at most the image's longer side, in the images' own dtype)."""
    if kernel is None:
        kernel = 2 * math.ceil(3 * sigma) + 1
    if edges == "reflect":
        from torchvision.transforms.v2.functional import gaussian_blur as tv_blur

        fit = 2 * min(images.shape[-2:]) - 1
        kernel = max(1, min(kernel, fit if fit % 2 else fit - 1))
        return tv_blur(images, [kernel, kernel], [sigma, sigma])
    if edges != "replicate":
        raise UsageError(f"{arg('edges')} must be 'reflect' or 'replicate', got {edges!r}")
    import torch.nn.functional as F

    r = min(kernel // 2, max(images.shape[-2:]))
    x = torch.arange(-r, r + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    shape = images.shape
    t = images.reshape(-1, 1, *shape[-2:])
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    t = F.conv2d(F.pad(t, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return t.reshape(shape)


# ----------------------------------------------------------------------------- results


class Displayable:
    """Rich display for a result: subclasses give :meth:`_tiles` (a list of (images, caption
    lines), one entry per image of the result) and may give :meth:`_title` and
    :meth:`_footer` (HTML)."""

    def _tiles(self) -> list[tuple[list[Image.Image], list[str]]]:
        raise NotImplementedError

    def _title(self) -> str | None:
        return None

    def _footer(self) -> str | None:
        return None

    def _count(self) -> int:
        """How many images the result has (it may draw only the first of them)."""
        return len(self._tiles())

    def _shown(self) -> list[tuple[list[Image.Image], list[str]]]:
        """The tiles as displayed: at most ``DISPLAY['max_images']``, scaled to fit."""
        side = DISPLAY["max_side"]
        out = []
        for images, lines in self._tiles()[: DISPLAY["max_images"]]:
            out.append(([fit(im, side // max(1, len(images))) for im in images], list(lines)))
        return out

    def to_pil(self, index: int | None = None) -> Image.Image:
        """One image (``index``: image ``index`` of the result, full size; for a result of one
        image, that image), or the whole result as a grid with captions."""
        tiles = self._tiles()
        if index is None and len(tiles) == 1 and len(tiles[0][0]) == 1:
            index = 0
        if index is not None:
            if not -len(tiles) <= index < len(tiles):
                raise UsageError(f"{arg('index')} {index} is out of range for {len(tiles)} images")
            images = tiles[index][0]
            return images[0] if len(images) == 1 else _side_by_side(images)
        return grid(
            [_side_by_side(images) for images, _ in tiles],
            [lines for _, lines in tiles],
            title=self._title(),
        )

    def save(self, path: str | os.PathLike, index: int | None = None) -> str:
        """Write :meth:`to_pil` (``.png``, ``.jpg`` or ``.webp``); returns the path."""
        return save_image(path, self.to_pil(index))

    def show(self) -> None:
        """Display it: inline in a notebook, else in the system's image viewer."""
        if in_notebook():
            from IPython.display import display

            display(self)
        else:
            self.to_pil().show()

    def _repr_png_(self) -> bytes | None:
        shown = self._shown()
        if not shown:
            return None
        return png_bytes(
            grid(
                [_side_by_side(images) for images, _ in shown],
                [lines for _, lines in shown],
                title=self._more(self._title()),
            )
        )

    def _repr_html_(self) -> str:
        return html_grid(self._shown(), self._more(self._title()), self._footer())

    def _more(self, title: str | None) -> str | None:
        n = self._count()
        if n <= DISPLAY["max_images"]:
            return title
        extra = f"(first {DISPLAY['max_images']} of {n})"
        return f"{title} {extra}" if title else extra


def _side_by_side(images: Sequence[Image.Image]) -> Image.Image:
    if len(images) == 1:
        return images[0]
    gap = 2
    w = sum(im.size[0] for im in images) + gap * (len(images) - 1)
    h = max(im.size[1] for im in images)
    canvas = Image.new("RGB", (w, h), "white")
    x = 0
    for im in images:
        canvas.paste(im.convert("RGB"), (x, 0))
        x += im.size[0] + gap
    return canvas


# ----------------------------------------------------------------------------- live


def notebook_tqdm():
    """``tqdm.auto``'s class: the notebook widget where ipywidgets is installed, else the text
    bar (tqdm.auto would fall back to it too, with a warning about ipywidgets)."""
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm


class Bar:
    """The one progress bar (the library's and the command line's): ``tqdm.auto`` over
    ``total`` units of work (steps, rows, units, frames), on stderr outside a notebook.

    ``delay``: shown only after this many seconds (default ``DISPLAY['progress_delay']``, so
    quick calls stay quiet); ``leave``: kept on screen when closed; ``terminal_only``: off
    where stderr is no terminal (a pipe, a log file), as the command line wants; ``counts``:
    a ``bar_format`` that shows the count as a whole number (a gallery's units move in
    fractions, per step)."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "step",
        *,
        delay: float | None = None,
        leave: bool = True,
        terminal_only: bool = False,
        counts: bool = False,
    ):
        tqdm = notebook_tqdm()
        kw = dict(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=leave)
        if not in_notebook():
            kw["file"] = sys.stderr
        if terminal_only:
            kw["disable"] = None  # tqdm's "off unless a terminal"
        if counts:
            kw["bar_format"] = (
                "{l_bar}{bar}| {n:.0f}/{total} " + unit + "s [{elapsed}<{remaining}, {rate_fmt}]"
            )
        delay = DISPLAY["progress_delay"] if delay is None else delay
        try:
            self.bar = tqdm(delay=delay, **kw)
        except (TypeError, KeyError):  # tqdm < 4.61 has no delay
            self.bar = tqdm(**kw)

    @property
    def n(self) -> float:
        return self.bar.n

    def update(self, n: float = 1, value: float | None = None) -> None:
        """Move on by ``n``; ``value``, the objective, is shown beside the bar."""
        if value is not None:
            self.bar.set_postfix_str(f"objective={value:.4g}", refresh=False)
        self.bar.update(n)

    def move_to(self, n: float, value: float | None = None) -> None:
        """Move to position ``n`` (a count that is known, not added up)."""
        self.update(n - self.bar.n, value)

    def close(self) -> None:
        self.bar.close()


def progress_bar(enabled, total: int, desc: str, unit: str = "step") -> Bar | None:
    """A :class:`Bar`, or None when ``enabled`` (see :func:`wants_progress`) says no."""
    return Bar(total, desc, unit) if wants_progress(enabled) and total > 0 else None


class Preview:
    """One image in the notebook output, replaced in place as the work goes on: every
    ``every`` steps, :meth:`update` draws the current images (a grid for a batch) with a
    caption. Outside a notebook it does nothing."""

    def __init__(self, every: int, title: str = ""):
        self.every = every
        self.title = title
        self.handle = None
        self.active = every > 0 and in_notebook()

    def due(self, step: int) -> bool:
        return self.active and step % self.every == 0

    def update(self, images: torch.Tensor, caption: str) -> None:
        if not self.active:
            return
        x = images.detach().float().cpu().clamp(0, 1)
        x = x if x.dim() == 4 else x.unsqueeze(0)
        tiles = [fit(to_pil(t), DISPLAY["preview_side"]) for t in x[: DISPLAY["max_images"]]]
        picture = grid(tiles, title=f"{self.title} {caption}".strip())
        if self.handle is None:
            from IPython.display import display

            self.handle = display(picture, display_id=True)
        else:
            self.handle.update(picture)

    def finish(self, result) -> None:
        """Replace the preview by ``result``'s own display (its images with their captions),
        so the finished picture is not shown twice."""
        if self.active and self.handle is not None:
            self.handle.update(result)


def make_preview(preview, title: str) -> Preview | None:
    """A :class:`Preview` for ``preview`` (see :func:`preview_every`), or None when off or
    outside a notebook; a :class:`Preview` passes through (several calls share one, and the
    caller that made it calls :meth:`Preview.finish`)."""
    if isinstance(preview, Preview):
        return preview if preview.active else None
    p = Preview(preview_every(preview), title)
    return p if p.active else None


__all__ = [
    "Bar",
    "Displayable",
    "Preview",
    "gaussian_blur",
    "grid",
    "html_grid",
    "in_notebook",
    "notebook_tqdm",
    "interactive",
    "make_preview",
    "preview_every",
    "progress_bar",
    "top1",
    "wants_progress",
]
