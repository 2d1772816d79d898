"""Dataset examples: for each channel of a layer, the crops of real images that drive it most.

>>> import dreamviz
>>> result = dreamviz.examples("efficientnet_lite0", "blocks.8", "photos/", channels="0-15")
>>> result.data["channels"]["0"][0]   # {"image", "box", "activation", "crop", "position"}

As in the Feature Visualization article (Olah et al., Distill 2017) and OpenAI Microscope: a
feature visualization shows what a unit responds to most, not what it usually sees. This module
streams every image of a folder through the network (a DataLoader with workers, each image
preprocessed as the model expects, the forward pass stopped at the layer), keeps per channel
the ``top`` images by the channel's spatial maximum with the position of that maximum, and
saves each as the crop of its receptive field (computed from the network: :mod:`.receptive`). It
also keeps a few images at lower quantiles of that maximum, estimated on a fixed sample of the
images (:mod:`.topk`). Memory stays constant in the number of images.

Output, in ``out``: ``examples.json`` (see :func:`examples`), ``crops/CCCC/*.png`` and a static
``index.html``. A run writes a checkpoint every ``checkpoint_every`` images into
``out/.checkpoint/``; a killed run resumes from it, and a rerun on unchanged images and
settings does no model work. Under ``torchrun`` each process takes every P-th batch of images
and the states are merged (:func:`.topk.merge`): the result equals one process's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import defaults
from ..display import progress_bar
from ..errors import DreamvizError, UsageError, arg, integer
from ..gallery.parallel import barrier, distributed, rank_and_world
from ..gallery.store import weights_fingerprint
from ..gallery.units import parse_indices
from ..hooks import Capture, as_nchw, check_layer, num_channels
from ..io import atomic_path, read_image, resize, save_png, write_json, write_text
from ..models import as_vision_model, load_model
from .images import Geometry, Images, collate, describe, files_fingerprint, list_images, sample_key
from .page import render_html
from .receptive import receptive_fields
from .topk import EMPTY, State, merge

D = defaults.EXAMPLES
FORMAT = "dreamviz-examples/1"
CHECKPOINTS = ".checkpoint"


@dataclass
class ExamplesResult:
    """What :func:`examples` did: the folder, its files (None on ranks other than 0), the
    data of ``examples.json``, the images read and skipped, and whether it was already up to
    date (no model work)."""

    out: Path
    json: Path | None
    index: Path | None
    data: dict | None
    read: int
    skipped: list = field(default_factory=list)  # [relative path, why]
    up_to_date: bool = False
    crops: list[Path] = field(default_factory=list)  # crops this call wrote

    def summary(self) -> str:
        """One line: images read and skipped (with the first few skipped by name)."""
        text = f"read {self.read} images"
        if self.skipped:
            names = ", ".join(p for p, _ in self.skipped[:3])
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            text += f", skipped {len(self.skipped)} unreadable ({names}{more})"
        return text + (" (up to date: nothing computed)" if self.up_to_date else "")

    def __repr__(self) -> str:
        return f"ExamplesResult(out={str(self.out)!r}, {self.summary()})"


def _levels(quantiles) -> list[float]:
    levels = [quantiles] if isinstance(quantiles, (int, float)) else list(quantiles or [])
    for q in levels:
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q < 1:
            raise UsageError(f"{arg('quantiles')} must be numbers in [0, 1), got {q!r}")
    return sorted({float(q) for q in levels}, reverse=True)


def _workers(workers) -> int:
    if integer("workers", workers, 0, auto=True) == "auto":
        return max(0, min(8, (os.cpu_count() or 1) - 1))
    return int(workers)


def _grid(info) -> tuple[int, int]:
    """(rows, cols) of the layer's output as :func:`~dreamviz.hooks.as_nchw` lays it out."""
    return tuple(as_nchw(torch.zeros(1, *info.shape), info.layout).shape[-2:])


# --------------------------------------------------------------------------- the scan


def _checkpoint(out: Path, rank: int, world: int) -> Path:
    return out / CHECKPOINTS / f"rank{rank}-of-{world}.pt"


def _save(path: Path, key: str, state: State) -> None:
    with atomic_path(path) as tmp:
        torch.save({"key": key, "state": state.to_dict()}, tmp)


def _resume(path: Path, key: str) -> State | None:
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, weights_only=True)
        return State.from_dict(saved["state"]) if saved.get("key") == key else None
    except Exception:  # noqa: BLE001 - a damaged checkpoint is started over
        return None


def scan(
    model,
    layer: str,
    folder: str | os.PathLike,
    files: Sequence[str],
    channels: Sequence[int],
    *,
    top: int = D["top"],
    sample: int = D["sample"],
    batch_size: int = D["batch_size"],
    workers: int = 0,
    rank: int = 0,
    world: int = 1,
    amp: bool = False,
    checkpoint: Path | None = None,
    checkpoint_key: str = "",
    checkpoint_every: int = D["checkpoint_every"],
    progress: bool | None = False,
    callback: Callable[[State], None] | None = None,
    max_pixels: int | None = None,
) -> State:
    """This process's share of the images (batch b goes to rank ``b % world``) through the
    network up to ``layer``: its :class:`~dreamviz.dataset.topk.State`. With ``checkpoint``,
    the state is saved there every ``checkpoint_every`` images and on Ctrl-C, and a saved
    state with the same ``checkpoint_key`` is resumed. ``callback(state)`` runs after each
    batch (raising from it stops the scan like a kill: the last checkpoint stays)."""
    model = as_vision_model(model)
    info = check_layer(model, layer)
    state = State.new(channels, top, sample)
    if checkpoint is not None:
        state = _resume(checkpoint, checkpoint_key) or state
    n = len(files)
    mine = list(range(rank, math.ceil(n / batch_size), world))[state.batches :]
    indices = [i for b in mine for i in range(b * batch_size, min((b + 1) * batch_size, n))]
    if not indices:
        return state
    cuda = model.device.type == "cuda"
    data = Images(folder, files, model.input_size, max_pixels)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(data, indices),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=cuda,
    )
    p = next((t for t in model.net.parameters() if t.is_floating_point()), None)
    dtype = p.dtype if p is not None else torch.float32
    picked = torch.tensor(list(channels), device=model.device)
    bar = progress_bar(progress, len(indices), "examples", unit="img")
    since = 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bool(amp and cuda))
    try:
        with Capture(model, [layer]) as cap, torch.no_grad(), autocast:
            for ids, images, bad in loader:
                state.skipped += [[i, why] for i, why in bad]
                if images is not None:
                    x = images.to(model.device, dtype, non_blocking=True)
                    a = as_nchw(cap(x)[layer], info.layout).index_select(1, picked)
                    values, pos = a.flatten(2).float().max(2)
                    keys = torch.tensor([sample_key(files[i]) for i in ids.tolist()])
                    state.update(ids, values, pos, keys)
                state.batches += 1
                since += len(ids) + len(bad)
                if bar is not None:
                    bar.update(len(ids) + len(bad))
                if checkpoint is not None and since >= checkpoint_every:
                    _save(checkpoint, checkpoint_key, state)
                    since = 0
                if callback is not None:
                    callback(state)
    except KeyboardInterrupt:
        if checkpoint is not None and since:
            _save(checkpoint, checkpoint_key, state)
        raise
    finally:
        if bar is not None:
            bar.close()
    return state


def _gather(state: State, world: int) -> State:
    """Every rank's state, merged (the same on every rank)."""
    if world == 1:
        return state
    import torch.distributed as dist

    states: list = [None] * world
    dist.all_gather_object(states, state.to_dict())
    return merge([State.from_dict(s) for s in states])


# --------------------------------------------------------------------------- the output


def _crop_name(channel: int, kind: str) -> str:
    return f"crops/{channel:04d}/{kind}.png"


def _write(
    model,
    layer: str,
    folder: Path,
    files: Sequence[str],
    state: State,
    levels: Sequence[float],
    per_quantile: int,
    out: Path,
    head: dict,
) -> tuple[dict, list[Path]]:
    """The crops, then examples.json; returns its data and the crops written."""
    info = check_layer(model, layer)
    size = tuple(model.input_size)
    gh, gw = _grid(info)
    picks = state.quantile_picks(levels, per_quantile) if per_quantile else []
    wanted = []  # (channel, kind, quantile or None, image, value, flat position)
    for j, c in enumerate(state.channels):
        for r in range(state.top):
            image = int(state.ids[j, r])
            if image != EMPTY:
                wanted.append((c, f"top{r:02d}", None, image, float(state.values[j, r]),
                               int(state.pos[j, r])))  # fmt: skip
        for i, (q, image, value, pos) in enumerate(picks[j] if picks else []):
            wanted.append((c, f"q{round(q * 100):02d}-{i}", q, image, value, pos))
    fields = receptive_fields(model, layer, {divmod(w[5], gw) for w in wanted}, size)
    by_image: dict[int, list] = {}
    for w in wanted:
        by_image.setdefault(w[3], []).append(w)
    made: dict[tuple[int, str], dict] = {}
    written = []
    for image, items in sorted(by_image.items()):
        try:
            original = read_image(folder / files[image])
        except (UsageError, OSError):  # changed since it was read: left out
            continue
        g = Geometry(tuple(original.shape[-2:]), size)
        for c, kind, q, _, value, pos in items:
            y, x = divmod(pos, gw)
            box_in = fields[(y, x)]
            x0, y0, x1, y1 = g.to_original(box_in)
            crop = original[:, y0:y1, x0:x1]
            field_hw = (box_in[3] - box_in[1], box_in[2] - box_in[0])
            rel = _crop_name(c, kind)
            save_png(out / rel, resize(crop, field_hw).clamp(0, 1))
            written.append(out / rel)
            item = {"image": files[image], "box": [x0, y0, x1, y1], "activation": value,
                    "crop": rel, "position": [y, x], "field": list(box_in)}  # fmt: skip
            if q is not None:
                item["quantile"] = q
            made[(c, kind)] = item
    channels, lower = {}, {}
    for c, kind, q, *_ in wanted:
        if (c, kind) in made:
            (lower if q is not None else channels).setdefault(str(c), []).append(made[(c, kind)])
    for c in state.channels:
        channels.setdefault(str(c), [])
    data = {
        **head,
        "grid": [gh, gw],
        "images": {
            "folder": str(folder),
            "found": len(files),
            "read": state.read,
            "skipped": [[files[i], str(DreamvizError(why))] for i, why in state.skipped],
        },
        "channels": channels,
        "quantile_examples": lower,
    }
    _remove_stale(out, {p.relative_to(out).as_posix() for p in written})
    write_json(out / "examples.json", data)
    return data, written


_CROP = re.compile(r"crops/\d{4}/(top\d{2}|q\d{2}-\d+)\.png")


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Delete crops of an earlier run that this one does not name, and the temporary files a
    killed run left behind (SIGKILL skips their clean-up)."""
    for tmp in [*out.glob(".*.tmp"), *(out / CHECKPOINTS).glob(".*.tmp")]:
        with contextlib.suppress(OSError):
            tmp.unlink()
    crops = out / "crops"
    if not crops.is_dir():
        return
    for path in sorted(crops.rglob("*")):
        rel = path.relative_to(out).as_posix()
        stale = _CROP.fullmatch(rel) and rel not in keep
        if path.is_file() and (stale or path.name.endswith(".tmp")):
            with contextlib.suppress(OSError):
                path.unlink()
    for folder in sorted(crops.iterdir(), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _up_to_date(out: Path, key: str) -> dict | None:
    try:
        data = json.loads((out / "examples.json").read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != FORMAT or data.get("key") != key:
        return None
    for items in [*data["channels"].values(), *data["quantile_examples"].values()]:
        if not all((out / i["crop"]).is_file() for i in items):
            return None
    return data


def _clear_checkpoint(out: Path, rank: int, world: int) -> None:
    with contextlib.suppress(OSError):
        _checkpoint(out, rank, world).unlink()
    if rank == 0:
        with contextlib.suppress(OSError):
            (out / CHECKPOINTS).rmdir()


# --------------------------------------------------------------------------- the API


def _channels(model, layer: str, channels) -> list[int]:
    """The channels asked for, checked against the layer's channel axis."""
    info = check_layer(model, layer)
    n = num_channels(info)
    if n is None or info.shape is None:
        raise UsageError(f"{layer} has no channel axis; give {arg('layer', 'NAME')} with one")
    return parse_indices(channels, n, what="channel", where=layer)


def _key(head: dict, chans: list[int], model, folder: Path, files: list[str]) -> str:
    """What makes a run's results: the settings, the channels, the model's weights and the
    images (names, sizes and times); a rerun with the same key computes nothing."""
    keyed = {k: v for k, v in head.items() if k != "command"}
    keyed.update(channels=chans, weights_sha256=weights_fingerprint(model))
    keyed["files"] = files_fingerprint(folder, files)
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:20]


def _done_before(out: Path, done: dict, rank: int) -> ExamplesResult:
    """The result of a run whose outputs are already there and up to date."""
    return ExamplesResult(
        out,
        out / "examples.json" if rank == 0 else None,
        out / "index.html" if rank == 0 else None,
        done if rank == 0 else None,
        done["images"]["read"],
        [list(s) for s in done["images"]["skipped"]],
        up_to_date=True,
    )


def _none_read(out: Path, rank: int, world: int, existed: bool, folder, files, skipped) -> None:
    """No image could be read: remove what the run made, and say so with the first reason."""
    _clear_checkpoint(out, rank, world)
    if not existed:
        with contextlib.suppress(OSError):
            out.rmdir()  # made for the checkpoint only
    first = f" ({files[skipped[0][0]]}: {skipped[0][1]})" if skipped else ""
    raise DreamvizError(
        f"none of the {len(files)} images in {str(folder)!r} could be read{first}; "
        "give a folder of JPEG, PNG or WebP images"
    )


def examples(
    model,
    layer: str,
    images: str | os.PathLike,
    channels=D["channels"],
    top: int = D["top"],
    *,
    out: str | os.PathLike = D["out"],
    quantiles: Sequence[float] = D["quantiles"],
    per_quantile: int = D["per_quantile"],
    sample: int = D["sample"],
    batch_size: int = D["batch_size"],
    workers: int | str = D["workers"],
    checkpoint_every: int = D["checkpoint_every"],
    weights: str | None = None,
    device: str | None = "auto",
    amp: bool = False,
    progress: bool | None = defaults.DISPLAY["progress"],
    callback: Callable[[State], None] | None = None,
    command: str | None = None,
    max_pixels: int | None = None,
) -> ExamplesResult:
    """Find, for each channel of ``layer``, the images under ``images`` (a folder, searched
    recursively for JPEG, PNG and WebP) that drive it most, and write them into ``out``.

    ``model``: a name (loaded with ``weights`` on ``device``) or a model. ``channels``:
    ``"all"``, ``"0-63"``, ``"0,5,9-12"``, ``"random:32"`` or a list. ``top``: images kept per
    channel by its spatial maximum. ``quantiles`` and ``per_quantile``: also that many images
    at each of these quantiles of the maximum (over a fixed sample of ``sample`` images).
    ``batch_size`` images per forward pass, read by ``workers`` DataLoader processes; ``amp``:
    bf16 autocast on CUDA. ``callback(state)`` runs after each batch.

    ``out/examples.json``: ``{"layer", "preprocess", "channels": {"0": [...], ...}, ...}``,
    each channel's list sorted by activation, highest first, each item ``{"image": path
    relative to the folder, "box": [x0, y0, x1, y1] in the original image's pixels (x1, y1
    exclusive), "activation", "crop": path relative to out, "position": [row, col] of the
    maximum in the layer's grid, "field": the box in the model's input}``;
    ``"quantile_examples"`` the same with a ``"quantile"``; ``"images"`` what was read and
    skipped. Unreadable, truncated and empty files are skipped and listed; if none could be
    read it is an error. A rerun with the same images and settings computes nothing.
    """
    rank, world = rank_and_world()
    top = integer("top", top, 1)
    per_quantile = integer("per_quantile", per_quantile, 0)
    sample = integer("sample", sample, 1)
    batch_size = integer("batch_size", batch_size, 1)
    checkpoint_every = integer("checkpoint_every", checkpoint_every, 1)
    levels = _levels(quantiles)
    workers = _workers(workers)
    folder = Path(images)
    files = list_images(folder)  # before the model: a bad folder costs nothing
    if isinstance(model, str):
        model = load_model(model, weights=weights, device=device or "auto")
    else:
        model = as_vision_model(model)
    chans = _channels(model, layer, channels)
    head = {
        "format": FORMAT,
        "model": model.name,
        "weights": model.weights,
        "layer": layer,
        "preprocess": describe(model.input_size),
        "top": top,
        "quantiles": levels if per_quantile else [],
        "per_quantile": per_quantile,
        "sample": sample,
        "command": command,
    }
    key = head["key"] = _key(head, chans, model, folder, files)
    out = Path(out)
    existed = out.exists()
    done = _up_to_date(out, key)
    if done is not None:
        return _done_before(out, done, rank)
    barrier()  # every rank has decided there is work before any writes
    ckpt_key = f"{key}:{batch_size}:{world}"
    state = scan(
        model, layer, folder, files, chans, top=top, sample=sample, batch_size=batch_size,
        workers=workers, rank=rank, world=world, amp=amp, checkpoint=_checkpoint(out, rank, world),
        checkpoint_key=ckpt_key, checkpoint_every=checkpoint_every,
        progress=progress if rank == 0 else False, callback=callback, max_pixels=max_pixels,
    )  # fmt: skip
    state = _gather(state, world)
    skipped = [[files[i], str(DreamvizError(why))] for i, why in state.skipped]
    if state.read == 0:
        _none_read(out, rank, world, existed, folder, files, state.skipped)
    result = ExamplesResult(out, None, None, None, state.read, skipped)
    if rank == 0:
        data, result.crops = _write(model, layer, folder, files, state, levels, per_quantile,
                                    out, head)  # fmt: skip
        write_text(out / "index.html", render_html(data, command))
        result.json, result.index, result.data = out / "examples.json", out / "index.html", data
    barrier()  # the outputs exist before any checkpoint goes
    _clear_checkpoint(out, rank, world)
    return result


def load(folder: str | os.PathLike) -> dict:
    """The data of a folder written by :func:`examples` (its examples.json)."""
    path = Path(folder) / "examples.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(
            f"{arg('examples')} {str(folder)!r} holds no examples.json written by dreamviz; "
            "make one with dreamviz.examples first"
        )
    return data


def page_examples(
    folder: str | os.PathLike, page: str | os.PathLike, model: str | None = None
) -> dict[str, list[dict]]:
    """The examples of a folder written by :func:`examples`, for a page in the folder
    ``page``: ``{"LAYER:CHANNEL": [{"src": the crop relative to page, "activation", "image",
    "box"}, ...]}``, the top examples of each channel, highest first (what
    :func:`dreamviz.gallery.build` and :func:`dreamviz.explain.write_page` show). ``model``:
    the name of the model they must come from."""
    data = load(folder)
    if model is not None and data["model"] != model:
        raise UsageError(
            f"the examples in {str(folder)!r} are of {data['model']}, not {model}; give "
            f"{arg('examples', 'DIR')} made with the same model"
        )
    out = {}
    for c, items in data["channels"].items():
        out[f"{data['layer']}:{c}"] = [
            {
                "src": Path(os.path.relpath(Path(folder) / i["crop"], page)).as_posix(),
                "activation": i["activation"],
                "image": i["image"],
                "box": i["box"],
            }
            for i in items
        ]
    return out


__all__ = [
    "ExamplesResult",
    "State",
    "distributed",
    "examples",
    "load",
    "merge",
    "page_examples",
    "receptive_fields",
    "scan",
]
