"""Test networks shared by several test modules.

The ViT mimics reproduce the module trees of timm (``blocks[i].norm1``, ``num_prefix_tokens``)
and torchvision (``conv_proj``, ``class_token``, ``encoder.layers[i].ln_1``) -- neither library is
importable here -- and the Hugging Face ViT is built from a config with random weights.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class TimmBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TimmViT(nn.Module):
    """timm-style ViT: ``patch_embed.proj``, ``cls_token`` (+ ``dist_token``, ``reg_token``),
    ``blocks``, ``norm``, ``head``; any input size fixed at construction (non-square allowed)."""

    def __init__(self, image_hw=(24, 40), patch=4, n_dist=0, n_reg=0, dim=16, depth=2,
                 num_classes=3) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        grid = (image_hw[0] // patch, image_hw[1] // patch)
        self.num_prefix_tokens = 1 + n_dist + n_reg
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.extra_tokens = nn.Parameter(torch.randn(1, n_dist + n_reg, dim) * 0.1)
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_prefix_tokens + grid[0] * grid[1],
                                                  dim) * 0.1)
        self.blocks = nn.Sequential(*[TimmBlock(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        n = t.shape[0]
        t = torch.cat([self.cls_token.expand(n, -1, -1),
                       self.extra_tokens.expand(n, -1, -1), t], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(t))[:, 0])


class TvEncoderBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.self_attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class TorchvisionViT(nn.Module):
    """torchvision-style ``VisionTransformer`` module tree (``conv_proj``, ``class_token``,
    ``encoder.pos_embedding``, ``encoder.layers.encoder_layer_i.ln_1``, ``heads.head``)."""

    def __init__(self, image_size=32, patch_size=8, dim=16, depth=2, num_classes=4) -> None:
        super().__init__()
        self.image_size, self.patch_size = image_size, patch_size
        self.conv_proj = nn.Conv2d(3, dim, patch_size, patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        n = (image_size // patch_size) ** 2 + 1
        self.encoder = nn.Module()
        self.encoder.pos_embedding = nn.Parameter(torch.randn(1, n, dim) * 0.1)
        self.encoder.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", TvEncoderBlock(dim)) for i in range(depth)))
        self.encoder.ln = nn.LayerNorm(dim)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv_proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.class_token.expand(t.shape[0], -1, -1), t], 1)
        t = self.encoder.ln(self.encoder.layers(t + self.encoder.pos_embedding))
        return self.heads(t[:, 0])


class Permute(nn.Module):
    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class SwinLike(nn.Module):
    """Channels-last grid model (Swin/ConvNeXt-style): ``(N, h, w, C)`` through a LayerNorm, a
    Linear and a Tanh; with ``back=True`` the grid is permuted back to ``(N, C, h, w)`` (module
    ``to_first``) before pooling, otherwise pooled channels-last like Swin."""

    def __init__(self, dim=12, patch=4, num_classes=3, back=False) -> None:
        super().__init__()
        self.back = back
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.to_last = Permute(0, 2, 3, 1)
        self.norm = nn.LayerNorm(dim)
        self.mix = nn.Linear(dim, dim)
        self.act = nn.Tanh()
        self.to_first = Permute(0, 3, 1, 2)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.act(self.mix(self.norm(self.to_last(self.patch(x)))))
        if self.back:
            return self.head(self.to_first(z).mean(dim=(2, 3)))
        return self.head(z.mean(dim=(1, 2)))


class SmallCNN(nn.Module):
    def __init__(self, in_channels=3, num_classes=3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act2(self.conv2(self.act1(self.conv1(x))))).flatten(1))


class MLP(nn.Module):
    def __init__(self, size=8, num_classes=3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 10), nn.ReLU(),
                                 nn.Linear(10, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hf_vit(num_labels: int = 5):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=num_labels)
    return ViTForImageClassification(config).eval()


def tiny_cnn(size: int = 8, seed: int = 0) -> nn.Module:
    """conv-ReLU-maxpool-linear for ``(N, 3, size, size)`` inputs, 3 classes, in eval mode;
    seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(4 * (size // 2) ** 2, 3)).eval()


def random_images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    """``(n, 3, size, size)`` uniform pixels from a seeded generator."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
