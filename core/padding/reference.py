"""Plain-torch ResNet layouts (He et al., CVPR 2016) for auditing ImageNet-sized networks.

torchvision is not importable on every install (see DESIGN.md §4), so this module builds the
same stem/stage layout -- 7x7/2 convolution, 3x3/2 max pooling, four stages whose first block
down-samples with a stride-2 3x3 convolution and a 1x1/2 shortcut -- with random weights. The
padding arithmetic, foveation maps and timings depend on this layout only, not on the weights.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Bottleneck", "BasicBlock", "reference_resnet"]

_LAYOUTS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
            50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (the first with ``stride``) plus a shortcut."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (with ``stride``, as in torchvision's v1.5), 1x1 expand, plus a shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def reference_resnet(depth: int = 50, num_classes: int = 1000, in_channels: int = 3,
                     width: int = 64) -> nn.Module:
    """A ResNet-``depth`` (18, 34, 50 or 101) with random weights, in eval mode.

    Module names follow torchvision (``conv1``, ``maxpool``, ``layer1.0.conv2``,
    ``layer2.0.downsample.0``, ``fc``) so audits read the same. ``width`` scales the channels.
    """
    if depth not in _LAYOUTS:
        raise ValueError(f"depth: expected one of {sorted(_LAYOUTS)}, got {depth!r}")
    kind, counts = _LAYOUTS[depth]
    block = Bottleneck if kind == "bottleneck" else BasicBlock
    net = nn.Module()
    net.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    net.relu = nn.ReLU()
    net.maxpool = nn.MaxPool2d(3, 2, 1)
    cin = width
    for i, n in enumerate(counts):
        blocks = []
        for j in range(n):
            blocks.append(block(cin, width * 2 ** i, 2 if (j == 0 and i > 0) else 1))
            cin = width * 2 ** i * block.expansion
        setattr(net, f"layer{i + 1}", nn.Sequential(*blocks))
    net.avgpool = nn.AdaptiveAvgPool2d(1)
    net.fc = nn.Linear(cin, num_classes)
    return _ResNet(net).eval()


class _ResNet(nn.Module):
    def __init__(self, parts: nn.Module) -> None:
        super().__init__()
        for name, module in parts.named_children():
            setattr(self, name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
