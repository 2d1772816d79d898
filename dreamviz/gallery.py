"""Unit galleries: every channel of a layer (or a set of classes) rendered into a static site.

>>> from dreamviz import gallery
>>> gallery.build("efficientnet_lite0", ["blocks.3", "blocks.8"], channels="0-15", out="gal")

writes into ``out``:

* ``<layer>/<index>.png`` - one image per unit, its recipe in the PNG metadata;
* ``<layer>/<index>.json`` - the unit's record (written after its PNG: the resume marker);
* ``manifest.json`` - every record: unit, settings, seed, final objective, activation ratio
  versus natural images, time;
* ``index.html`` - a static page (no server, inline CSS/JS, relative image paths): a grid per
  layer, a larger view with the recipe and the command that reproduces each image.

Rendering goes through :func:`dreamviz.engine.render`. ``batch`` units are optimized in one
pass with the objective ``sum_i channel(layer_i, c_i, batch=i)``; each unit has its own seed,
``hash(seed, unit)``, which alone fixes its start and its random transforms, so a unit comes out
the same whichever batch it is in, up to float rounding of batched convolutions.

Resumable and idempotent: each unit's key hashes the model (name, weights and a fingerprint of
the parameters), the unit, size, steps, lr, optimizer, parameterization, transforms, seed and the
dreamviz version. A unit whose PNG and record exist with the same key is not rendered again, so
a rerun with the same settings only rebuilds the pages, an interrupted run continues where it
stopped and changed settings re-render only the units whose key changed. Every file is written
atomically.

Under ``torchrun`` (``torch.distributed`` initialized, see :func:`distributed`) the batches are
dealt round-robin to the ranks; rank 0 merges the records and writes the pages. Seeds and batch
composition do not depend on the number of ranks, so the output equals a single-process run.
The output folder must be shared by all ranks (one machine, or a shared filesystem).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import html
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import torch

from . import engine as _engine
from ._version import __version__
from .errors import NonFiniteError, UsageError
from .hooks import LOGITS, Capture, check_layer, check_unit, num_channels
from .io import read_image, save_png, versions, write_json, write_text
from .models import BUNDLED, VisionModel, as_vision_model, load_model
from .objectives import channel, class_logit

DEFAULT_SIZE = 128
DEFAULT_STEPS = 256
DEFAULT_BATCH = 16
ASSETS = Path(__file__).resolve().parent.parent / "assets"
TIMING_FIELDS = ("seconds", "batch_seconds")  # the only fields that differ between equal runs


# ----------------------------------------------------------------------------- units


@dataclass(frozen=True)
class Unit:
    """One channel of a layer, or one class (``layer == "logits"``)."""

    layer: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.index}"

    @property
    def is_class(self) -> bool:
        return self.layer == LOGITS

    def objective(self, batch: int | None = None):
        if self.is_class:
            return class_logit(self.index, batch=batch)
        return channel(self.layer, self.index, batch=batch)


def _hash_int(*parts) -> int:
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def unit_seed(seed: int, unit: Unit) -> int:
    """The seed of one unit: a hash of the base seed and the unit, independent of batching."""
    return _hash_int("dreamviz-gallery", seed, unit.name)


def parse_indices(
    spec, n: int | None, *, what: str, where: str, seed: int = 0, resolve: Callable | None = None
) -> list[int]:
    """``"all"``, ``"0-63"``, ``"0,5,9-12"``, ``"random:32"`` (or ints / a list) -> indices.

    ``random:K`` draws K distinct indices, sorted, from a generator seeded by ``seed`` and
    ``where``, so the same command picks the same units. ``resolve`` maps other tokens (class
    names) to an index.
    """
    if spec is None:
        spec = "all"
    if isinstance(spec, int):
        tokens: list = [spec]
    elif isinstance(spec, str):
        tokens = [t.strip() for t in spec.split(",") if t.strip()]
    else:
        tokens = list(spec)
    if not tokens:
        raise UsageError(f"empty {what} list for {where}; use all, 0-15 or random:16")
    top = f"0..{n - 1}" if n else "a non-negative index"
    out: list[int] = []
    for tok in tokens:
        if isinstance(tok, bool):
            raise UsageError(f"{what} {tok!r} is not an index")
        if isinstance(tok, int):
            out.append(tok)
            continue
        tok = str(tok).strip()
        low = tok.lower()
        if low == "all":
            if n is None:
                raise UsageError(f"{where} has no channel dimension; give {what}s explicitly")
            out.extend(range(n))
        elif low.startswith("random:"):
            k_text = tok.split(":", 1)[1]
            if not k_text.strip().isdigit() or int(k_text) < 1:
                raise UsageError(f"{tok!r}: write random:K with K >= 1, e.g. random:16")
            k = int(k_text)
            if n is None:
                raise UsageError(f"{where} has no channel dimension; give {what}s explicitly")
            if k > n:
                raise UsageError(f"{tok} asks for {k} {what}s but {where} has {n}; use K <= {n}")
            g = torch.Generator().manual_seed(_hash_int("random", seed, where))
            out.extend(sorted(torch.randperm(n, generator=g)[:k].tolist()))
        elif re.fullmatch(r"\d+\s*-\s*\d+", tok):
            a, b = (int(x) for x in tok.split("-"))
            if b < a:
                raise UsageError(f"{what} range {tok!r} is backwards; write {b}-{a}")
            out.extend(range(a, b + 1))
        elif tok.isdigit():
            out.append(int(tok))
        elif resolve is not None:
            out.append(resolve(tok))
        else:
            raise UsageError(f"bad {what} {tok!r} for {where}; use all, 0-15, 3,7,9 or random:16")
    for i in out:
        if i < 0 or (n is not None and i >= n):
            raise UsageError(f"{what} {i} is out of range for {where}; use {top}")
    return list(dict.fromkeys(out))


def select_units(
    model: VisionModel, layers: Iterable[str], channels="all", classes=None, seed: int = 0
) -> list[Unit]:
    """The units of a gallery, in page order: each layer's channels, then the classes."""
    units: list[Unit] = []
    for layer in layers:
        if layer == LOGITS:
            units += select_units(model, [], classes=channels, seed=seed)
            continue
        n = num_channels(check_layer(model, layer))
        for c in parse_indices(channels, n, what="channel", where=layer, seed=seed):
            units.append(Unit(layer, c))
    if classes is not None:
        n = model.num_classes
        picks = parse_indices(
            classes, n, what="class", where=model.name, seed=seed, resolve=model.class_index
        )
        units += [Unit(LOGITS, c) for c in picks]
    return list(dict.fromkeys(units))


# ----------------------------------------------------------------------------- settings


def weights_fingerprint(model: VisionModel) -> str:
    """sha256 of every parameter and buffer of the network (names, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in model.net.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _size2(size) -> list[int]:
    if isinstance(size, int):
        return [size, size]
    h, w = size
    return [int(h), int(w)]


def unit_key(settings: dict, unit: Unit, seed: int) -> str:
    blob = json.dumps({"settings": settings, "unit": unit.name, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def unit_paths(out: Path, unit: Unit) -> tuple[str, Path, Path]:
    """(relative PNG path, PNG path, record path) of a unit."""
    rel = f"{_safe(unit.layer)}/{unit.index:04d}.png"
    png = out / rel
    return rel, png, png.with_suffix(".json")


def _round(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.6g}")


# ----------------------------------------------------------------------------- commands


def _weights_arg(settings: dict) -> str | None:
    """The ``--weights`` value that loads these weights again (None: the model's default)."""
    if settings["weights"] in ("bundled", None) or settings["weights_default"]:
        return None
    return settings["weights"]


def _model_flags(settings: dict) -> list[str]:
    weights = _weights_arg(settings)
    return ["--model", settings["model"]] + (["--weights", weights] if weights else [])


def _size_flag(size: list[int]) -> str:
    h, w = size
    return str(h) if h == w else f"{w}x{h}"  # the render CLI reads N or WxH


def _optimization_flags(settings: dict) -> list[str]:
    """Flags shared by ``dreamviz render`` and ``dreamviz gallery`` (non-defaults only)."""
    args = ["--size", _size_flag(settings["size"]), "--steps", str(settings["steps"])]
    args += ["--lr", f"{settings['lr']:g}", "--optimizer", settings["optimizer"]]
    if settings["param"] != "fft":
        args += ["--param", settings["param"]]
    if not settings["decorrelate"]:
        args += ["--no-decorrelate"]
    if settings["transforms"] != "standard":
        args += ["--transforms", settings["transforms"]]
    if settings["settle"] != 0.15:
        args += ["--settle", f"{settings['settle']:g}"]
    if settings["amp"]:
        args += ["--amp"]
    return args


def render_command(settings: dict, unit: Unit, seed: int, png: str) -> str:
    """The explicit ``dreamviz render`` command line that reproduces one unit."""
    target = ["--class", str(unit.index)] if unit.is_class else ["--unit", unit.name]
    args = ["dreamviz", "render", *_model_flags(settings), *target, *_optimization_flags(settings)]
    return shlex.join([*args, "--seed", str(seed), "-o", png])


def gallery_command(settings: dict, request: dict) -> str:
    """The ``dreamviz gallery`` command line that builds this gallery."""
    args = ["dreamviz", "gallery", *_model_flags(settings)]
    for layer in request["layers"]:
        args += ["--layer", layer]
    if request["layers"]:
        args += ["--channels", request["channels"]]
    if request["classes"] is not None:
        args += ["--classes", request["classes"]]
    args += _optimization_flags(settings)
    args += ["--seed", str(settings["seed"]), "--batch", str(request["batch"])]
    return shlex.join([*args, "--out", request["out"]])


def _spec_text(spec) -> str | None:
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, int):
        return str(spec)
    return ",".join(str(s) for s in spec)


# ----------------------------------------------------------------------------- natural images


def natural_crops(paths: Sequence[Path], size: Sequence[int]) -> torch.Tensor:
    """Crops of photos at the gallery size: per photo, the centre square whole and a 3x3 grid
    of half-size crops, each resized to ``size`` -> N x 3 x H x W in [0, 1]."""
    import torch.nn.functional as F

    h, w = size
    crops = []
    for path in paths:
        img = read_image(path)
        side = min(img.shape[-2:])
        y0, x0 = (img.shape[-2] - side) // 2, (img.shape[-1] - side) // 2
        square = img[:, y0 : y0 + side, x0 : x0 + side]
        pieces = [square]
        half = side // 2
        for i in range(3):
            for j in range(3):
                y, x = i * half // 2, j * half // 2
                pieces.append(square[:, y : y + half, x : x + half])
        for p in pieces:
            crops.append(
                F.interpolate(p[None], size=(h, w), mode="bilinear", antialias=True).clamp(0, 1)
            )
    return torch.cat(crops) if crops else torch.zeros(0, 3, h, w)


@torch.no_grad()
def natural_maxima(
    model: VisionModel, layers: Sequence[str], size: Sequence[int], paths: Sequence[Path]
) -> dict[str, torch.Tensor]:
    """Per layer, the largest spatial-mean activation of each channel over natural crops (one
    batched forward pass for all layers)."""
    layers = [layer for layer in dict.fromkeys(layers) if layer != LOGITS]
    if not layers or not paths:
        return {}
    x = natural_crops(paths, size).to(model.device)
    with Capture(model, layers) as cap:
        acts = cap(x)
    out = {}
    for layer in layers:
        a = acts[layer].float()
        a = a.flatten(2).mean(2) if a.dim() > 2 else a
        out[layer] = a.amax(0).cpu()
    return out


def _natural_paths(natural) -> list[Path]:
    if natural is None or natural is False:
        return []
    if natural == "auto":
        natural = ASSETS
    if isinstance(natural, (str, os.PathLike)):
        p = Path(natural)
        if p.is_dir():
            return sorted(
                q for q in p.iterdir() if q.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
            )
        return [p] if p.exists() else []
    return [Path(p) for p in natural]


# ----------------------------------------------------------------------------- distributed


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    d = _dist()
    return (d.get_rank(), d.get_world_size()) if d else (0, 1)


def _barrier() -> None:
    d = _dist()
    if d is None:
        return
    if d.get_backend() == "nccl":
        d.barrier(device_ids=[torch.cuda.current_device()])
    else:
        d.barrier()


@contextlib.contextmanager
def distributed(device: str | None = "auto"):
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 and leave it on exit.

    nccl when the ranks use CUDA GPUs (each takes ``cuda:LOCAL_RANK``), gloo otherwise. Yields
    the device each rank should load its model on (``device`` unchanged in a single process).
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield device
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and str(device or "auto") in ("auto", "cuda")
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=12))
    try:
        yield device
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- build


@dataclass
class GalleryResult:
    out: Path
    index: Path | None  # None on ranks other than 0
    manifest: Path | None
    rendered: list[str] = field(default_factory=list)  # units this process rendered
    skipped: list[str] = field(default_factory=list)  # units already up to date
    written: list[Path] = field(default_factory=list)  # PNGs this process wrote
    records: list[dict] = field(default_factory=list)  # manifest records (rank 0)


@dataclass
class _Plan:
    unit: Unit
    seed: int
    key: str
    rel: str
    png: Path
    record: Path


def _is_done(plan: _Plan) -> bool:
    if not plan.png.exists() or not plan.record.exists():
        return False
    try:
        return json.loads(plan.record.read_text()).get("key") == plan.key
    except (OSError, ValueError):
        return False


def _remove_stale_temps(out: Path, plans: list[_Plan]) -> None:
    """Delete temporary files a killed run left behind (SIGKILL skips their clean-up)."""
    for folder in {out} | {p.png.parent for p in plans}:
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()


def _chunks(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)]


class _Progress:
    """A tqdm bar counting units (moved per optimization step, so the ETA is smooth)."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        self.done = 0
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                desc=desc,
                unit="unit",
                bar_format="{l_bar}{bar}| {n:.0f}/{total} units "
                "[{elapsed}<{remaining}, {rate_fmt}]",
                dynamic_ncols=True,
            )

    def step(self, n_units: int, step: int, steps: int) -> None:
        if self.bar is not None:
            self.bar.update(self.done + n_units * step / max(steps, 1) - self.bar.n)

    def finish_batch(self, n_units: int) -> None:
        self.done += n_units
        if self.bar is not None:
            self.bar.update(self.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build(
    model,
    layers: str | Sequence[str] = (),
    channels="all",
    classes=None,
    *,
    size: int | Sequence[int] = DEFAULT_SIZE,
    steps: int = DEFAULT_STEPS,
    batch: int = DEFAULT_BATCH,
    out: str | os.PathLike = "gallery",
    seed: int = 0,
    lr: float = 0.05,
    optimizer: str = "adam",
    param_kind: str = "fft",
    decorrelate: bool = True,
    transforms: str = "standard",
    settle: float = 0.15,
    amp: bool = False,
    weights: str | None = None,
    device: str | None = None,
    natural="auto",
    progress: bool = True,
    callback: Callable[[list[dict]], None] | None = None,
) -> GalleryResult:
    """Render every requested unit that is not up to date into ``out``, then write the pages.

    ``model``: a name (loaded with ``weights`` on ``device``) or a model. ``layers``: layer
    names, each showing ``channels`` (``"all"``, ``"0-63"``, ``"random:32"``, a list).
    ``classes``: a class gallery (``"0-999"``, ``"random:16"``, indices or names). ``natural``:
    photos for the activation ratio (``"auto"``: the bundled samples when present; a folder, a
    list of paths, or None). ``callback(records)`` runs after each batch; raising from it
    (KeyboardInterrupt included) stops the build, and a rerun continues from there.
    """
    rank, world = rank_and_world()
    if isinstance(model, str):
        model = load_model(model, weights=weights, device=device or "auto")
    else:
        model = as_vision_model(model)
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be an integer >= 1, got {batch!r}")
    if not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be an integer >= 1, got {steps!r}")
    if not layers and classes is None:
        raise UsageError("nothing to render; give --layer LAYER and/or --classes 0-15")
    units = select_units(model, layers, channels, classes, seed)
    for layer in {u.layer for u in units} - {LOGITS}:
        check_unit(model, layer, None)
    size2 = _size2(size)
    if min(size2) < 16:
        raise UsageError(f"size {size} is too small; use 16 px or more")
    weights_default = model.name not in BUNDLED and _is_default_weights(model)
    settings = {
        "model": model.name,
        "weights": model.weights,
        "weights_default": weights_default,
        "weights_sha256": weights_fingerprint(model),
        "size": size2,
        "steps": steps,
        "lr": float(lr),
        "optimizer": str(optimizer),
        "param": str(param_kind),
        "decorrelate": bool(decorrelate),
        "transforms": str(transforms),
        "settle": float(settle),
        "amp": bool(amp),
        "seed": int(seed),
        "dreamviz": __version__,
    }
    out = Path(out)
    plans = []
    for u in units:
        s = unit_seed(seed, u)
        rel, png, rec = unit_paths(out, u)
        plans.append(_Plan(u, s, unit_key(settings, u, s), rel, png, rec))
    pending = [p for p in plans if not _is_done(p)]
    if rank == 0:
        _remove_stale_temps(out, plans)
    _barrier()  # every rank has listed the same pending units before any writes
    mine = _chunks(pending, batch)[rank::world]
    todo = {p.key for p in pending}
    result = GalleryResult(
        out, None, None, skipped=[p.unit.name for p in plans if p.key not in todo]
    )

    n_mine = sum(len(b) for b in mine)
    desc = "gallery" if world == 1 else f"gallery rank {rank}/{world}"
    bar = _Progress(n_mine, progress and rank == 0, desc)
    natural_paths = _natural_paths(natural)
    nat_cache: dict[str, torch.Tensor] = {}
    request = {
        "layers": layers,
        "channels": _spec_text(channels) if layers else None,
        "classes": _spec_text(classes),
        "batch": batch,
        "out": str(out),
    }
    render_kw = dict(
        size=tuple(size2),
        param_kind=param_kind,
        decorrelate=decorrelate,
        transforms=transforms,
        settle=settle,
        optimizer=optimizer,
        lr=lr,
        steps=steps,
        amp=amp,
    )
    try:
        for group in mine:
            need = [p.unit.layer for p in group if p.unit.layer not in nat_cache]
            if need and natural_paths:
                nat_cache.update(natural_maxima(model, need, size2, natural_paths))
            records = _render_group(model, group, settings, render_kw, bar, nat_cache)
            result.rendered += [r["unit"] for r in records]
            result.written += [out / r["file"] for r in records]
            bar.finish_batch(len(group))
            if callback is not None:
                callback(records)
    except KeyboardInterrupt:
        bar.close()
        if world == 1:  # pages for what is done, then stop; a rerun continues
            _write_pages(out, plans, settings, request, model, complete=False)
        raise
    bar.close()
    _barrier()  # every rank's records are on disk
    if rank == 0:
        result.records = _write_pages(out, plans, settings, request, model, complete=True)
        result.manifest, result.index = out / "manifest.json", out / "index.html"
    _barrier()  # the pages exist before any rank returns
    return result


def _is_default_weights(model: VisionModel) -> bool:
    try:
        import torchvision

        return model.weights == torchvision.models.get_model_weights(model.name).DEFAULT.name
    except Exception:
        return False


def _render_group(model, group: list[_Plan], settings, render_kw, bar, nat_cache) -> list[dict]:
    """Render one batch of units, save PNG + record per unit; fall back to one unit at a time
    if the batch goes non-finite (so one bad unit does not take its batch down)."""
    objective = sum(p.unit.objective(batch=i) for i, p in enumerate(group))
    try:
        res = _engine.render(
            model,
            objective,
            batch=len(group),
            seed=[p.seed for p in group],
            callback=lambda step, steps, _v: bar.step(len(group), step, steps),
            **render_kw,
        )
    except NonFiniteError as e:
        if len(group) > 1:
            records = []
            for p in group:
                records += _render_group(model, [p], settings, render_kw, _NoBar(), nat_cache)
            return records
        images, finals, status = e.last_good, [None], f"non-finite at step {e.step}"
        seconds = 0.0
    else:
        if res.interrupted:
            raise KeyboardInterrupt
        images, finals, status = res.images, res.final.tolist(), "ok"
        seconds = res.seconds
    records = []
    for i, p in enumerate(group):
        value = finals[i] if finals[i] is None else float(finals[i])
        nat = None
        if not p.unit.is_class and p.unit.layer in nat_cache:
            nat = float(nat_cache[p.unit.layer][p.unit.index])
        ratio = value / nat if value is not None and nat is not None and nat > 1e-8 else None
        recipe = _recipe(settings, p)
        save_png(p.png, images[i], recipe)
        record = {
            "unit": p.unit.name,
            "layer": p.unit.layer,
            "index": p.unit.index,
            "kind": "class" if p.unit.is_class else "channel",
            "class_name": _class_name(model, p.unit),
            "file": p.rel,
            "key": p.key,
            "seed": p.seed,
            "settings": settings,
            "objective": _round(value),
            "natural_max": _round(nat),
            "activation_ratio": _round(ratio),
            "status": status,
            "batch_size": len(group),
            "seconds": round(seconds / len(group), 4),
            "batch_seconds": round(seconds, 4),
        }
        write_json(p.record, record)  # last: marks the unit as done
        records.append(record)
    return records


class _NoBar:
    def step(self, *_):
        pass


def _class_name(model: VisionModel, unit: Unit) -> str | None:
    if unit.is_class and model.classes and unit.index < len(model.classes):
        return model.classes[unit.index]
    return None


_RECIPE_KEYS = (
    "size",
    "steps",
    "lr",
    "optimizer",
    "param",
    "decorrelate",
    "transforms",
    "settle",
    "amp",
)


def _recipe(settings: dict, plan: _Plan) -> dict:
    """The recipe stored in each PNG, in the render CLI's format, so that
    ``dreamviz render --from PNG`` renders the unit again (alone, with its own seed)."""
    from .commands.render import SETTINGS as RENDER_DEFAULTS

    unit = plan.unit
    target = ["class", str(unit.index)] if unit.is_class else ["unit", unit.name]
    return {
        "command": "render",
        "model": settings["model"],
        "weights": _weights_arg(settings),
        "objective": str(unit.objective()),
        "target": target[1],
        "targets": [target],
        "index": 0,
        "images": 1,
        "settings": {
            **RENDER_DEFAULTS,  # regularizer weights 0, ...
            **{k: settings[k] for k in _RECIPE_KEYS},
            "batch": 1,
            "seed": plan.seed,
            "device": "auto",
        },
        "thresholds": [],
        "versions": versions(),
        "gallery": {
            "unit": unit.name,
            "seed": settings["seed"],
            "key": plan.key,
            "weights_sha256": settings["weights_sha256"],
        },
    }


# ----------------------------------------------------------------------------- pages


def _load_records(plans: list[_Plan]) -> list[dict]:
    records = []
    for p in plans:
        if not _is_done(p):
            continue
        records.append(json.loads(p.record.read_text()))
    return records


def _write_pages(out: Path, plans, settings, request, model, complete: bool) -> list[dict]:
    records = _load_records(plans)
    missing = len(plans) - len(records)
    manifest = {
        "format": "dreamviz-gallery/1",
        "complete": complete and missing == 0,
        "model": settings["model"],
        "weights": settings["weights"],
        "settings": settings,
        "request": request,
        "command": gallery_command(settings, request),
        "units": records,
    }
    write_json(out / "manifest.json", manifest)
    write_text(out / "index.html", render_html(manifest, total=len(plans)))
    return records


_CSS = """
:root{--tile:136px;--bg:#fafafa;--fg:#1d1d1f;--mut:#6e6e73;--line:#e0e0e3;--acc:#0a66c2}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;
background:var(--bg);color:var(--fg)}
header{padding:16px 24px;border-bottom:1px solid var(--line);background:#fff;position:sticky;
top:0;z-index:2}
h1{font-size:18px;margin:0 0 4px}
.meta{color:var(--mut);font-size:12.5px}
.meta code{font-size:12px}
nav{margin-top:8px;display:flex;gap:6px;flex-wrap:wrap;align-items:center}
nav a{color:var(--acc);text-decoration:none;border:1px solid var(--line);border-radius:12px;
padding:1px 9px;font-size:12.5px}
nav label{margin-left:auto;color:var(--mut);font-size:12.5px}
section{padding:4px 24px 10px}
h2{font-size:15px;margin:8px 0 10px;font-family:ui-monospace,Menlo,Consolas,monospace}
h2 small{color:var(--mut);font-weight:400;font-family:system-ui,sans-serif}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(var(--tile),1fr));gap:8px}
.tile{all:unset;cursor:pointer;display:block;background:#fff;border:1px solid var(--line);
border-radius:6px;overflow:hidden}
.tile:hover,.tile:focus-visible{border-color:var(--acc);box-shadow:0 0 0 2px #0a66c233}
.tile img{display:block;width:100%;height:auto;aspect-ratio:var(--ar);background:#eee}
.cap{display:flex;justify-content:space-between;gap:4px;padding:3px 6px;font-size:12px;
white-space:nowrap;overflow:hidden}
.cap b{font-family:ui-monospace,Menlo,Consolas,monospace;font-weight:600}
.cap span{color:var(--mut);overflow:hidden;text-overflow:ellipsis}
.bad{outline:2px solid #c62828}
#viewer{position:fixed;inset:0;background:#000c;display:flex;align-items:center;
justify-content:center;z-index:5;padding:20px}
#viewer[hidden]{display:none}
.panel{background:#fff;border-radius:10px;display:flex;gap:18px;padding:18px;max-width:1100px;
max-height:100%;overflow:auto}
.panel img{width:min(62vh,52vw);height:auto;border-radius:4px;align-self:flex-start}
.info{min-width:300px;max-width:460px;font-size:13px}
.info h3{margin:0 0 6px;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:16px}
.info dl{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;margin:8px 0}
.info dt{color:var(--mut)}
.info dd{margin:0}
.info pre{background:#f4f4f6;border-radius:6px;padding:8px;font-size:11.5px;
white-space:pre-wrap;overflow-wrap:anywhere;max-height:220px;overflow:auto}
.btns{display:flex;gap:6px;margin-top:8px}
.btns button{font:inherit;font-size:12.5px;padding:3px 10px;border:1px solid var(--line);
border-radius:5px;background:#fff;cursor:pointer}
"""

_JS = r"""
(function(){
const D=JSON.parse(document.getElementById('gallery-data').textContent);
const V=document.getElementById('viewer'),big=V.querySelector('img');
let cur=-1;
function fmt(x){return x===null||x===undefined?'\u2013':(+x).toPrecision(4)}
function show(i){
  const u=D.units[i];if(!u)return;cur=i;
  big.src=u.src;big.alt=u.unit;
  V.querySelector('h3').textContent=u.unit+(u.class_name?' \u00b7 '+u.class_name:'');
  const dl=V.querySelector('dl');dl.innerHTML='';
  const rows=[['objective',fmt(u.objective)],['vs natural',u.activation_ratio===null?
    '\u2013':fmt(u.activation_ratio)+'\u00d7 the max over photo crops'],['seed',u.seed],
    ['time',fmt(u.seconds)+' s'],['status',u.status]];
  for(const [k,v] of rows){const dt=document.createElement('dt'),dd=document.createElement('dd');
    dt.textContent=k;dd.textContent=v;dl.append(dt,dd);}
  V.querySelector('.from').textContent=u.from;
  V.querySelector('.cmd').textContent=u.command;
  V.querySelector('.recipe').textContent=JSON.stringify(
    Object.assign({unit:u.unit,seed:u.seed,base_seed:D.settings.seed},D.settings,
      {seed:u.seed}),null,1);
  V.hidden=false;
}
function hide(){V.hidden=true;cur=-1}
document.querySelectorAll('.tile').forEach(t=>t.addEventListener('click',()=>show(+t.dataset.i)));
V.addEventListener('click',e=>{if(e.target===V)hide()});
V.querySelector('.close').addEventListener('click',hide);
V.querySelector('.copy').addEventListener('click',()=>{
  const t=V.querySelector('.from').textContent;
  if(navigator.clipboard)navigator.clipboard.writeText(t).catch(()=>{});});
document.addEventListener('keydown',e=>{
  if(V.hidden)return;
  if(e.key==='Escape')hide();
  if(e.key==='ArrowRight')show(Math.min(cur+1,D.units.length-1));
  if(e.key==='ArrowLeft')show(Math.max(cur-1,0));});
const zoom=document.getElementById('zoom');
if(zoom)zoom.addEventListener('input',()=>
  document.documentElement.style.setProperty('--tile',zoom.value+'px'));
document.querySelectorAll('.tile img').forEach(im=>im.addEventListener('error',()=>
  im.parentElement.classList.add('bad')));
function loaded(im){return new Promise(r=>{
  if(im.complete&&im.naturalWidth>0)return r();
  im.addEventListener('load',()=>r(),{once:true});
  im.addEventListener('error',()=>r(),{once:true});});}
async function selftest(){
  const imgs=[...document.querySelectorAll('.tile img')];
  const lazy=imgs.filter(im=>im.loading==='lazy').length;
  imgs.forEach(im=>{im.loading='eager'});
  await Promise.all(imgs.map(loaded));
  const broken=imgs.filter(im=>!(im.complete&&im.naturalWidth>0)).map(im=>im.getAttribute('src'));
  const first=document.querySelector('.tile');
  let viewer=false,bigOk=false,cmd='';
  if(first){first.click();viewer=!V.hidden&&getComputedStyle(V).display!=='none';
    await loaded(big);bigOk=big.naturalWidth>0;cmd=V.querySelector('.from').textContent;}
  const r={images:imgs.length,broken:broken,viewer:viewer,big_image:bigOk,command:cmd,
    lazy:lazy,units:D.units.length};
  r.ok=imgs.length>0&&broken.length===0&&viewer&&bigOk&&cmd.length>0;
  const pre=document.createElement('pre');pre.id='selftest-result';
  pre.textContent=JSON.stringify(r);document.body.append(pre);
  document.title='selftest:'+(r.ok?'ok':'fail');
}
const tz=location.hash.match(/tile=(\d+)/);
if(tz){document.documentElement.style.setProperty('--tile',tz[1]+'px');if(zoom)zoom.value=tz[1];}
const m=location.hash.match(/view=(\d+)/);
if(location.hash==='#selftest')selftest();else if(m)show(+m[1]);
})();
"""


def render_html(manifest: dict, total: int | None = None) -> str:
    """The static ``index.html`` for a manifest (self-contained: inline CSS and JS)."""
    esc = html.escape
    s = manifest["settings"]
    records = manifest["units"]
    h, w = s["size"]
    units_js = []
    sections: dict[str, list[tuple[int, dict]]] = {}
    for i, r in enumerate(records):
        unit = Unit(r["layer"], r["index"])
        again = f"{_safe(unit.layer)}_{unit.index}.png"
        src = quote(r["file"]) + "?v=" + r["key"][:8]  # a re-render busts the browser cache
        units_js.append(
            {
                "unit": r["unit"],
                "src": src,
                "class_name": r.get("class_name"),
                "objective": r.get("objective"),
                "activation_ratio": r.get("activation_ratio"),
                "seed": r["seed"],
                "seconds": r.get("seconds"),
                "status": r.get("status"),
                "from": shlex.join(["dreamviz", "render", "--from", r["file"], "-o", again]),
                "command": render_command(s, unit, r["seed"], again),
            }
        )
        sections.setdefault(r["layer"], []).append((i, r))
    parts = []
    nav = []
    for layer, items in sections.items():
        anchor = "sec-" + _safe(layer)
        title = "classes" if layer == LOGITS else layer
        nav.append(f'<a href="#{esc(anchor)}">{esc(title)} ({len(items)})</a>')
        tiles = []
        for i, r in items:
            label = r["class_name"] or ""
            ratio = r.get("activation_ratio")
            tip = f"{r['unit']}  objective {r.get('objective')}"
            if ratio is not None:
                tip += f"  ({ratio:.3g}x natural max)"
            if r.get("status") != "ok":
                tip += f"  [{r.get('status')}]"
            tiles.append(
                f'<button class="tile" data-i="{i}" title="{esc(tip)}">'
                f'<img loading="lazy" decoding="async" width="{w}" height="{h}" '
                f'src="{esc(units_js[i]["src"])}" alt="{esc(r["unit"])}">'
                f'<div class="cap"><b>{r["index"]}</b><span>{esc(label)}</span></div></button>'
            )
        parts.append(
            f'<section id="{esc(anchor)}"><h2>{esc(title)} <small>{len(items)} units</small></h2>'
            f'<div class="grid">{"".join(tiles)}</div></section>'
        )
    done = len(records)
    status = "" if manifest.get("complete") else f" (incomplete: {done} of {total} rendered)"
    shared = {k: v for k, v in s.items() if k != "weights_default"}
    data = json.dumps({"units": units_js, "settings": shared}, sort_keys=True).replace("</", "<\\/")
    weights = s["weights"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{esc(s["model"])} gallery - dreamviz</title>
<style>{_CSS}</style></head>
<body style="--ar:{w}/{h}">
<header><h1>{esc(s["model"])} <small class="meta">weights {esc(str(weights))}</small></h1>
<div class="meta">{done} units{esc(status)} &middot; {h}&times;{w} px &middot; {s["steps"]} steps
&middot; lr {s["lr"]:g} {esc(s["optimizer"])} &middot; {esc(s["param"])} &middot; transforms
{esc(s["transforms"])} &middot; seed {s["seed"]} &middot; dreamviz {esc(s["dreamviz"])}<br>
built with <code>{esc(manifest["command"])}</code></div>
<nav>{"".join(nav)}<label>tile size <input id="zoom" type="range" min="64" max="320"
value="136"></label></nav></header>
{"".join(parts)}
<div id="viewer" hidden><div class="panel"><img alt="">
<div class="info"><h3></h3><dl></dl>
<div>Render it again (in this folder):</div><pre class="from"></pre>
<div>or, without the PNG:</div><pre class="cmd"></pre>
<div>Settings (the full recipe is in the PNG's metadata):</div><pre class="recipe"></pre>
<div class="btns"><button class="copy">Copy command</button><button class="close">Close
(Esc)</button></div></div></div></div>
<script type="application/json" id="gallery-data">{data}</script>
<script>{_JS}</script>
</body></html>
"""


__all__ = [
    "GalleryResult",
    "Unit",
    "build",
    "distributed",
    "natural_maxima",
    "parse_indices",
    "render_html",
    "select_units",
    "unit_seed",
]
