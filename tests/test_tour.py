"""docs/tour.ipynb runs top to bottom in a fresh Jupyter kernel on the CPU (any failing cell fails
the test), shows its results as pictures, and is kept in git without outputs."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

# the test extras install both; a bare machine (the GPU check) skips the notebook
nbformat = pytest.importorskip("nbformat")
NotebookClient = pytest.importorskip("nbclient").NotebookClient

TOUR = Path(__file__).resolve().parent.parent / "docs" / "tour.ipynb"


def test_the_tour_is_stored_without_outputs():
    raw = json.loads(TOUR.read_text())
    nbformat.validate(nbformat.reads(TOUR.read_text(), as_version=4))
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"]


@pytest.mark.slow
def test_the_tour_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel is a new process; see conftest
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU, as in CI, whatever the machine
    nb = nbformat.read(TOUR, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=900,  # per cell, on a loaded 2-core machine
        resources={"metadata": {"path": str(tmp_path)}},  # the gallery goes to a temp folder
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    pictures = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            data = out.get("data", {})
            if "image/png" in data:
                Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).load()
                pictures += 1
            if "text/html" in data and "<img" in data["text/html"]:
                pictures += 1
    results = [c for c in nb.cells if c.cell_type == "code" and "text/html" in str(c.outputs)]
    assert len(results) >= 6, "render, class, batch, saliency x2, dream, gallery show themselves"
    assert pictures >= 7
    assert (tmp_path / "tour_gallery" / "index.html").is_file()
