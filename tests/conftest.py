"""Shared fixtures: the bundled model (loaded once), the sample photos, a tiny conv net."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import dreamviz

ASSETS = Path(__file__).resolve().parent.parent / "assets"

# The tests run tiny tensors; one thread avoids OpenMP oversubscription, which on a shared
# 2-core machine made a 90 ms forward+backward take 7 s with 2 threads.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def lite0() -> dreamviz.VisionModel:
    """The bundled EfficientNet-Lite0 on the CPU. Shared: do not change its state."""
    return dreamviz.load_model(device="cpu")


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    """The folder holding chelsea.jpg and coffee.jpg."""
    return ASSETS


def make_tiny_net(channels: int = 8, classes: int = 10) -> nn.Sequential:
    """conv-bn-ReLU(inplace) x2, pool, linear: small enough for any test, with in-place ops."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, classes),
    )


@pytest.fixture
def tiny_net():
    """A builder: ``tiny_net(channels=8, classes=10)`` returns a fresh small conv net."""
    return make_tiny_net
