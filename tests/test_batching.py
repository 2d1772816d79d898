"""The batch-size policy picks chunks within bounds, and out-of-memory halves a chunk and retries
instead of failing: in the policy's own helpers, in saliency, in multi-view renders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import dreamviz
from dreamviz import batching
from dreamviz.attribution import saliency
from dreamviz.batching import Chunker, Splitter, balanced, rows_per_pass
from dreamviz.defaults import BATCHING
from dreamviz.errors import integer
from dreamviz.models import VisionModel


def oom(rows: int) -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError(f"CUDA out of memory (simulated: {rows} rows)")


class Picky(nn.Module):
    """Runs ``net``, but 'runs out of memory' on a batch of more than ``most`` rows."""

    def __init__(self, net: nn.Module, most: int):
        super().__init__()
        self.net, self.most, self.seen = net, most, []

    def forward(self, x):
        self.seen.append(x.shape[0])
        if x.shape[0] > self.most:
            raise oom(x.shape[0])
        return self.net(x)


# --------------------------------------------------------------------------- the policy


@pytest.mark.parametrize("size", [32, 64, 128, 224, 320, 512, 1024])
@pytest.mark.parametrize("layer", [None, "blocks.1", "blocks.8", "logits"])
def test_cpu_chunks_stay_within_bounds(lite0, size, layer):
    largest, total = batching.row_bytes(lite0, (size, size), layer and [layer])
    assert 0 < largest <= total
    rows = rows_per_pass(lite0, size, layer)
    assert 1 <= rows <= BATCHING["max_rows"]
    assert rows == BATCHING["cpu_min_rows"] or rows * largest <= BATCHING["cpu_bytes"]
    assert (rows + 1) * largest > BATCHING["cpu_bytes"] or rows == BATCHING["max_rows"]
    for total_rows in (1, 3, 17, 64):
        chunk = rows_per_pass(lite0, size, layer, rows=total_rows)
        assert 1 <= chunk <= min(rows, total_rows)
        assert -(-total_rows // chunk) == -(-total_rows // min(rows, total_rows))  # no extra pass


def test_cpu_chunks_shrink_with_the_image_and_grow_for_early_layers(lite0):
    sizes = [rows_per_pass(lite0, s) for s in (64, 128, 224, 448)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    assert rows_per_pass(lite0, 224, "blocks.0") >= rows_per_pass(lite0, 224)
    # the measured cases (docs/PERFORMANCE.md): 224 px photos go 4 a pass (8, 37 MiB, made
    # saliency 1.07-1.22x the bare passes and a gallery 0.85x batch 1), 128 px at least 8
    assert 4 <= rows_per_pass(lite0, 224) <= 5
    assert rows_per_pass(lite0, 128) >= 8
    for s in (64, 128, 224, 448):  # no single activation past glibc's 32 MiB mmap threshold
        largest, _ = batching.row_bytes(lite0, (s, s))
        assert rows_per_pass(lite0, s) * largest <= 32 * 2**20 or rows_per_pass(lite0, s) == 1


def test_cuda_chunks_fit_the_memory_budget(lite0, monkeypatch):
    free = {"bytes": 8 * 2**30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (free["bytes"], 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda dev=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda dev=None: 0)
    _, total = batching.row_bytes(lite0, (224, 224))
    rows = rows_per_pass(lite0, 224, device="cuda")
    budget = BATCHING["cuda_fraction"] * free["bytes"]
    assert rows * total * BATCHING["cuda_overhead"] <= budget
    assert (rows + 1) * total * BATCHING["cuda_overhead"] > budget
    free["bytes"] //= 4
    assert rows_per_pass(lite0, 224, device="cuda") < rows  # less memory, smaller chunks
    free["bytes"] = 2**20
    assert rows_per_pass(lite0, 224, device="cuda") == 1  # never 0
    free["bytes"] = 2**50
    assert rows_per_pass(lite0, 224, device="cuda") == BATCHING["max_rows"]


@pytest.mark.parametrize("total", [1, 5, 16, 64, 65, 100])
@pytest.mark.parametrize("most", [1, 3, 6, 8, 64])
def test_balanced_chunks(total, most):
    chunk = balanced(total, most)
    passes = -(-total // chunk)
    assert chunk <= most and passes == -(-total // most)  # as few passes as allowed
    assert passes * chunk - total < passes  # the chunks differ by at most one row


def test_batch_size_arguments():
    assert integer("batch", "auto", 1, auto=True) == "auto"
    assert integer("batch", 3, 1, auto=True) == 3
    assert integer("batch", np.int64(3), 1) == 3 and type(integer("batch", np.int64(3), 1)) is int
    for bad in (0, -1, 2.5, "16", True, None, "AUTO"):
        with pytest.raises(dreamviz.UsageError, match="batch must be an integer >= 1 or 'auto'"):
            integer("batch", bad, 1, auto=True)
    with pytest.raises(dreamviz.UsageError, match=r"k must be an integer in 1\.\.4, got 5"):
        integer("k", 5, 1, 4)
    with pytest.raises(dreamviz.UsageError, match="must be an integer >= 0, got 'auto'"):
        integer("k", "auto", 0)  # "auto" only where it is allowed


# --------------------------------------------------------------------------- out of memory


def test_chunker_halves_on_out_of_memory_and_keeps_every_row():
    seen = []

    def work(r0, r1):
        seen.append(r1 - r0)
        if r1 - r0 > 3:
            raise oom(r1 - r0)
        return list(range(r0, r1))

    chunker = Chunker(16)
    out = [r for chunk in chunker.run(37, work) for r in chunk]
    assert out == list(range(37))
    assert seen[:3] == [16, 8, 4] and max(seen[3:]) <= 3
    assert chunker.size == 2 and chunker.retries == 3 and chunker.largest == 2
    with pytest.raises(ValueError):  # other errors go through at once
        list(Chunker(4).run(8, lambda a, b: (_ for _ in ()).throw(ValueError("no"))))
    with pytest.raises(torch.OutOfMemoryError):  # one row that does not fit: the real error
        list(Chunker(4).run(8, lambda a, b: (_ for _ in ()).throw(oom(b - a))))


def test_splitter_halves_a_group_on_out_of_memory():
    calls = []

    def work(items):
        calls.append(len(items))
        if len(items) > 2:
            raise oom(len(items))
        return [i * 10 for i in items]

    assert Splitter()(work, range(7)) == [i * 10 for i in range(7)]
    assert calls[0] == 7 and max(calls[1:]) <= 4 and sorted(calls)[:4] == [1, 2, 2, 2]
    assert batching.is_oom(RuntimeError("MPS backend out of memory (MPS allocated ...)"))
    assert not batching.is_oom(RuntimeError("shape mismatch"))


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "integrated_gradients", "gradcam"])
def test_saliency_retries_smaller_chunks_instead_of_failing(method, tiny_net):
    opts = {"smoothgrad": {"samples": 5}, "integrated_gradients": {"steps": 12}}.get(method, {})
    x = torch.rand(3, 3, 16, 16)
    net = tiny_net()
    expected = saliency(net, x, [1, 2, 3], method, internal_batch_size=2, **opts)
    picky = Picky(net, most=2)
    maps, info = saliency(
        picky, x, [1, 2, 3], method, internal_batch_size=64, return_info=True, **opts
    )
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-7)
    assert max(picky.seen) > 2 and info.internal_batch_size <= 2  # it tried, then halved


def test_saliency_auto_batch_size_is_the_policy(lite0):
    x = torch.rand(4, 3, 224, 224)
    _, info = saliency(lite0, x, 1, "smoothgrad", samples=4, return_info=True)
    assert info.internal_batch_size == rows_per_pass(lite0, 224, ["logits"], rows=16)
    with pytest.raises(dreamviz.UsageError, match="internal_batch_size"):
        saliency(lite0, x, 1, internal_batch_size="many")


def crops_model(tiny_net, most: int = 10**9) -> VisionModel:
    return VisionModel(Picky(tiny_net(channels=8, classes=10), most), input_size=32)


def test_render_views_split_into_passes_when_they_exceed_the_budget(tiny_net, monkeypatch):
    kw = dict(batch=2, size=48, steps=5, transforms="crops", seed=1, progress=False)
    model = crops_model(tiny_net)
    whole = dreamviz.render(model, "net.3:1", **kw)  # 2 images x 4 views in one pass
    monkeypatch.setattr(
        batching, "BATCHING", {**BATCHING, "cpu_bytes": 1, "cpu_min_rows": 2}
    )  # 2 rows a pass: one view of the 2 images
    picky = crops_model(tiny_net, most=2)
    split = dreamviz.render(picky, "net.3:1", **kw)
    assert max(picky.net.seen) == 2
    torch.testing.assert_close(split.images, whole.images, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(split.history, whole.history, rtol=1e-4, atol=1e-5)


def test_render_redoes_a_step_with_fewer_views_on_out_of_memory(tiny_net, monkeypatch):
    kw = dict(batch=2, size=48, steps=5, transforms="crops", seed=1, progress=False)
    monkeypatch.setattr(batching, "BATCHING", {**BATCHING, "cpu_bytes": 1, "cpu_min_rows": 4})
    planned = dreamviz.render(crops_model(tiny_net), "net.3:1", **kw)  # 2 views a pass
    monkeypatch.setattr(batching, "BATCHING", {**BATCHING, "cpu_bytes": 2**40})
    picky = crops_model(tiny_net, most=4)
    redone = dreamviz.render(picky, "net.3:1", **kw)  # tries 4 views, runs out, halves
    passes = [rows for rows in picky.net.seen if rows > 1]  # not the probes of one image
    assert passes[0] == 8 and max(passes[1:]) == 4
    # the step was redone with the same random draws: the same images as if planned so
    assert torch.equal(redone.images, planned.images)
    assert torch.equal(redone.history, planned.history)


def test_render_without_views_is_untouched_by_the_policy(lite0, monkeypatch):
    kw = dict(size=40, steps=3, batch=2, progress=False)
    before = dreamviz.render(lite0, "blocks.2:1", **kw)
    monkeypatch.setattr(batching, "BATCHING", {**BATCHING, "cpu_bytes": 1})
    assert torch.equal(dreamviz.render(lite0, "blocks.2:1", **kw).images, before.images)


# --------------------------------------------------------------------------- galleries


def test_gallery_auto_batch_follows_the_policy_and_splits_on_out_of_memory(
    lite0, tmp_path, monkeypatch
):
    from dreamviz import engine, gallery

    sizes = []
    real = engine.render

    def picky(model, objective, **kw):  # 'out of memory' above 2 units a pass
        sizes.append(kw["batch"])
        if kw["batch"] > 2:
            raise oom(kw["batch"])
        return real(model, objective, **kw)

    monkeypatch.setattr(batching, "BATCHING", {**BATCHING, "cpu_bytes": 2**40})  # 6 a pass
    monkeypatch.setattr(engine, "render", picky)
    kw = dict(size=32, steps=2, progress=False, natural=None)
    result = gallery.build(lite0, "blocks.3", "0-5", out=tmp_path / "g", **kw)
    # all 6 at once, then halves of halves; the second half is cut to the size that fitted
    assert sizes == [6, 3, 2, 1, 2, 1]
    assert sorted(result.rendered) == [f"blocks.3:{c}" for c in range(6)]
    batches = {r["unit"]: r["batch_size"] for r in result.records}
    assert set(batches.values()) <= {1, 2}
    monkeypatch.setattr(engine, "render", real)
    # the same units as rendered two at a time from the start, up to float rounding
    again = gallery.build(lite0, "blocks.3", "0-5", out=tmp_path / "h", batch=2, **kw)
    for r in again.records:
        a = np.asarray(Image.open(tmp_path / "g" / r["file"]))
        b = np.asarray(Image.open(tmp_path / "h" / r["file"]))
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2, r["unit"]


def test_gallery_auto_batch_at_the_measured_sizes(lite0):
    # docs/PERFORMANCE.md, quiet machine: at 224 px batch 8 was 0.85x batch 1 per unit, batch
    # 4 1.0-1.16x; at 128 px batch 8 was 1.17-1.18x
    assert 2 <= rows_per_pass(lite0, 224, ["blocks.8"]) <= 5
    assert rows_per_pass(lite0, 128, ["blocks.8"], rows=16) >= 8
