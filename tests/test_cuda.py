"""On a CUDA GPU (skipped elsewhere; scripts/bench_gpu.sh runs it): render, saliency, dream and
gallery run there and agree with the CPU, and a real out-of-memory error halves the chunk
instead of failing."""

from __future__ import annotations

import pytest
import torch

import dreamviz
from dreamviz import batching

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.fixture(scope="module")
def gpu_model():
    return dreamviz.load_model(device="cuda")


@pytest.fixture
def no_tf32():
    """Full fp32 on the GPU for the comparisons with the CPU: by default convolutions run in
    TF32 (10-bit mantissa), which moved Integrated Gradients to cosine 0.984 on an H200."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def test_render_dream_saliency_gallery_on_cuda(gpu_model, lite0, tmp_path, no_tf32):
    r = dreamviz.render(gpu_model, "blocks.8:20", size=64, steps=8, batch=2, progress=False)
    assert r.images.device.type == "cpu" and torch.isfinite(r.history).all()
    assert "<img" in r._repr_html_()
    a = dreamviz.render(gpu_model, "blocks.8:20", size=64, steps=4, amp=True, progress=False)
    assert torch.isfinite(a.history).all()
    x = torch.rand(3, 3, 128, 128)
    for method in ("gradient", "smoothgrad", "integrated_gradients", "gradcam"):
        opts = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 8}}.get(method, {})
        on_gpu = dreamviz.saliency(gpu_model, x.cuda(), 281, method, **opts).cpu()
        on_cpu = dreamviz.saliency(lite0, x, 281, method, **opts)
        cos = torch.nn.functional.cosine_similarity(on_gpu.flatten(), on_cpu.flatten(), dim=0)
        assert cos > 0.99, (method, float(cos))
    d = dreamviz.dream(gpu_model, torch.rand(3, 96, 128), octaves=2, steps=2, progress=False)
    assert d.image.shape == (3, 96, 128)
    g = dreamviz.gallery.build(
        gpu_model, "blocks.3", "0-3", size=32, steps=2, natural=None, out=tmp_path, progress=False
    )
    assert len(g.rendered) == 4


def test_auto_chunks_fill_free_memory_but_not_more(gpu_model):
    free, _ = torch.cuda.mem_get_info()
    rows = batching.rows_per_pass(gpu_model, 224)
    _, per_row = batching.row_bytes(gpu_model, (224, 224))
    assert 1 <= rows <= dreamviz.defaults.BATCHING["max_rows"]
    assert rows * per_row <= free


def test_a_real_out_of_memory_halves_the_chunk(gpu_model):
    """Cap this process's CUDA memory, then ask for one pass of every row: the pass runs out of
    memory for real, and saliency still returns the maps, in smaller chunks."""
    x = torch.rand(8, 3, 384, 384, device="cuda")
    expected = dreamviz.saliency(gpu_model, x, 1, "smoothgrad", samples=8, internal_batch_size=4)
    torch.cuda.empty_cache()
    used = torch.cuda.memory_allocated()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((used + 3 * 2**30) / total)
    try:
        maps, info = dreamviz.saliency(
            gpu_model, x, 1, "smoothgrad", samples=8, internal_batch_size=64, return_info=True
        )
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert info.internal_batch_size < 64
    torch.testing.assert_close(maps, expected, rtol=1e-3, atol=1e-5)
