"""Small plain-torch architectures for the built-in model zoo.

Every model here keeps its constructor arguments in ``model.config`` (a JSON-serialisable dict), so
``build_model(type(model).__name__, model.config)`` rebuilds it; that is how weights are saved
and loaded without pickle. Modules carry stable names so hooks can target them: ``features[-1]``
(last CNN block), ``blocks[-1]`` (last ViT block), ``embedding`` (text CNN), ``head`` (classifier).
Parameters are initialised by ``init_weights(generator)`` so training never depends on the global
RNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "GlobalLSEPool",
    "ResidualBlock",
    "SmallResNet",
    "TextCNN",
    "TinyViT",
    "build_model",
    "make_activation",
]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
ACTIVATIONS = ("relu", "softplus")
POOLINGS = ("avg", "max", "lse")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def make_activation(activation: str, beta: float = 1.0) -> nn.Module:
    """Return a fresh ``nn.ReLU`` or ``nn.Softplus(beta)`` (a smooth ReLU whose gradient is a
    SmoothGrad-like average of the ReLU network's; Dombrowski et al., NeurIPS 2019)."""
    _check_choice("activation", activation, ACTIVATIONS)
    if activation == "softplus":
        if not beta > 0:
            raise ValueError(f"softplus_beta: expected a positive number, got {beta!r}")
        return nn.Softplus(beta=float(beta))
    return nn.ReLU()


class GlobalLSEPool(nn.Module):
    """LogSumExp pooling over all positions after ``start_dim``:
    ``(1/r) * log(mean(exp(r * x)))``.

    A smooth maximum: it tends to max pooling as the temperature ``r`` grows and to average
    pooling as ``r -> 0``. Kokhlikyan et al., "Investigating sanity checks for saliency maps with
    image and text classification" (arXiv:2106.07475) swap max pooling for LSE to smooth the
    network and its explanations. The pooled dims are dropped from the output.
    """

    def __init__(self, temperature: float = 10.0, start_dim: int = 2) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"lse_temperature: expected a positive number, got {temperature!r}")
        self.temperature = float(temperature)
        self.start_dim = int(start_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(self.start_dim)
        r = self.temperature
        return (torch.logsumexp(r * flat, dim=-1) - math.log(flat.shape[-1])) / r

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


def _global_pool(pooling: str, temperature: float) -> nn.Module:
    _check_choice("pooling", pooling, POOLINGS)
    if pooling == "lse":
        return GlobalLSEPool(temperature)
    if pooling == "max":
        return nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(1))
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


def _norm2d(norm: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


class ResidualBlock(nn.Module):
    """Basic residual block: two 3x3 convolutions, the first with ``stride``.

    With ``stride=2`` and padding 1 a side of length n leaves ``(n - 1) mod 2`` padded rows unused,
    so even sizes (e.g. 32) are padded unevenly and odd sizes (e.g. 33) evenly (Alsallakh et al.,
    "Mind the Pad", ICLR 2021). The shortcut is a 1x1 strided convolution when shapes change.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        padding_mode: str = "zeros",
        activation: str = "relu",
        softplus_beta: float = 1.0,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias,
                               padding_mode=padding_mode)
        self.bn1 = _norm2d(norm, out_channels)
        self.act1 = make_activation(activation, softplus_beta)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias,
                               padding_mode=padding_mode)
        self.bn2 = _norm2d(norm, out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=bias),
                _norm2d(norm, out_channels),
            )
        else:
            self.shortcut = nn.Identity()
        self.act2 = make_activation(activation, softplus_beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A small ResNet-style CNN for 32x32-ish images (the ``shapes-cnn`` / ``digits-cnn`` family).

    Layout: ``features = [stem, block1, block2, ...]`` where the stem is a stride-1 3x3 conv at
    ``widths[0]`` channels and each further width adds a residual block that downsamples with a
    stride-2 3x3 convolution; then global ``pool`` and a linear ``head``. Grad-CAM's usual target
    is ``features[-1]`` (named ``"features.<k>"``; see ``target_layer``).

    Args:
        in_channels: 3 for RGB, 1 for grayscale.
        num_classes: number of logits.
        widths: channel count of the stem and of each downsampling block.
        padding_mode: ``"zeros" | "reflect" | "replicate" | "circular"`` for every 3x3 conv.
        activation: ``"relu"`` or ``"softplus"`` (with ``softplus_beta``).
        pooling: global pooling, ``"avg" | "max" | "lse"`` (LogSumExp with ``lse_temperature``).
        norm: ``"batch"`` (BatchNorm after each conv) or ``"none"`` (biases instead).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 5,
        widths: Sequence[int] = (16, 32, 64),
        padding_mode: str = "zeros",
        activation: str = "relu",
        softplus_beta: float = 1.0,
        pooling: str = "avg",
        lse_temperature: float = 10.0,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ValueError(
                f"widths: expected a non-empty sequence of positive ints, got {widths}"
            )
        if int(in_channels) < 1 or int(num_classes) < 1:
            raise ValueError(
                f"in_channels/num_classes: expected positive ints, got {in_channels}/{num_classes}"
            )
        _check_choice("padding_mode", padding_mode, PADDING_MODES)
        _check_choice("activation", activation, ACTIVATIONS)
        _check_choice("norm", norm, ("batch", "none"))
        self.config: dict[str, Any] = {
            "in_channels": int(in_channels), "num_classes": int(num_classes), "widths": widths,
            "padding_mode": padding_mode, "activation": activation,
            "softplus_beta": float(softplus_beta), "pooling": pooling,
            "lse_temperature": float(lse_temperature), "norm": norm,
        }
        stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=norm == "none",
                      padding_mode=padding_mode),
            _norm2d(norm, widths[0]),
            make_activation(activation, softplus_beta),
        )
        blocks = [
            ResidualBlock(w_in, w_out, 2, padding_mode, activation, softplus_beta, norm)
            for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
        ]
        self.features = nn.Sequential(stem, *blocks)
        self.pool = _global_pool(pooling, lse_temperature)
        self.head = nn.Linear(widths[-1], num_classes)

    @property
    def target_layer(self) -> str:
        """Qualified name of the last feature block (the usual Grad-CAM layer)."""
        return f"features.{len(self.features) - 1}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(N, in_channels, H, W)`` float -> logits ``(N, num_classes)``."""
        return self.head(self.pool(self.features(x)))

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """He-normal convs, default-style linear head, unit BatchNorm; driven by ``generator``."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu",
                                        generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
            elif isinstance(module, nn.Linear):
                _init_linear(module, generator)


def _init_linear(module: nn.Linear, generator: torch.Generator | None, std: float | None = None):
    if std is None:
        # torch's default Linear initialisation, with an explicit generator
        nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(module.in_features)
        if module.bias is not None:
            nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    else:
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std, generator=generator)
        if module.bias is not None:
            module.bias.zero_()


class Attention(nn.Module):
    """Multi-head self-attention with timm-style names: ``qkv``, ``attn_drop``, ``proj``.

    The softmax is explicit and passes through ``attn_drop`` so a forward hook on
    ``attn.attn_drop`` sees the attention probabilities ``(N, heads, T, T)`` (attention rollout).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim: expected a multiple of num_heads={num_heads}, got {dim}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = self.attn_drop((q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    """Two-layer GELU MLP (``fc1``, ``act``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Image -> one token per ``patch_size`` x ``patch_size`` patch, ``(N, num_patches, dim)``.

    ``stem="patch"``: the classic non-overlapping strided conv ``proj`` (Dosovitskiy et al.).
    ``stem="conv"``: a convolutional stem (per factor 2: a stride-2 and a stride-1 3x3 conv, each
    with BatchNorm and GELU) and a 1x1 ``proj``, giving the same token grid. Early convolutions
    make small ViTs train much faster and more stably on little data (Xiao et al., "Early
    Convolutions Help Transformers See Better", NeurIPS 2021).
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int, stem: str = "patch",
                 stem_width: int | None = None) -> None:
        super().__init__()
        _check_choice("stem", stem, ("patch", "conv"))
        steps = int(math.log2(patch_size)) if stem == "conv" else 0
        if stem == "conv" and 2 ** steps != patch_size:
            raise ValueError(f"patch_size: stem='conv' needs a power of two, got {patch_size}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(steps):
            top = dim if stem_width is None else int(stem_width)
            width = max(top // 2 ** (steps - 1 - i), 8)
            layers += [nn.Conv2d(channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                       nn.GELU(), nn.Conv2d(width, width, 3, 1, 1, bias=False),
                       nn.BatchNorm2d(width), nn.GELU()]
            channels = width
        self.stem = nn.Sequential(*layers)
        if stem == "conv":
            self.proj = nn.Conv2d(channels, dim, 1)
        else:
            self.proj = nn.Conv2d(in_channels, dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stem(x)).flatten(2).transpose(1, 2)


def sincos_pos_embed(dim: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings ``(1, 1 + rows * cols, dim)``, zeros for CLS.

    Half the channels encode the row, half the column, each with the 1-D sin/cos frequencies of
    Vaswani et al. (2017); the 2-D form follows MAE (He et al., CVPR 2022) and "Better plain ViT
    baselines" (Beyer et al., 2022), where fixed embeddings train faster than learned ones.
    """
    if dim % 4:
        raise ValueError(f"dim: pos_embed='sincos' needs a multiple of 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid_size[0], dtype=torch.float64),
                                torch.arange(grid_size[1], dtype=torch.float64), indexing="ij")
    parts = []
    for coord in (rows.reshape(-1), cols.reshape(-1)):
        angles = coord[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    table = torch.cat(parts, dim=1).float()
    return torch.cat([torch.zeros(1, dim), table], dim=0)[None]


class TinyViT(nn.Module):
    """A tiny Vision Transformer (Dosovitskiy et al., ICLR 2021) with timm-style module names.

    ``patch_embed`` -> prepend ``cls_token`` -> add ``pos_embed`` -> ``blocks`` (pre-norm, each
    with ``norm1``, ``attn``, ``norm2``, ``mlp``) -> ``norm`` -> ``head`` on the CLS token. The
    token grid is ``image_size // patch_size`` per side; ``image_size`` must be divisible by
    ``patch_size``. ``stem="conv"`` replaces the patchify conv by a small convolutional stem with
    the same token grid (see ``PatchEmbed``; ``stem_width`` sets its last width, default ``dim``).

    Options that make a tiny ViT train quickly on a few thousand images (defaults keep the
    classic recipe): ``pos_embed="sincos"`` uses fixed 2-D sine-cosine position embeddings
    (a buffer, see ``sincos_pos_embed``); ``init="xavier"`` initialises linears Xavier-uniform
    with a zero head, as in Beyer et al., "Better plain ViT baselines for ImageNet-1k" (2022),
    instead of truncated normal std 0.02, whose tiny query/key/value/projection products start
    attention in a slow plateau; ``pool="cls+mean"`` feeds the head the average of the CLS token
    and the mean patch token (after the final ``norm``), which gives the stem a direct gradient
    path from the start. The CLS token stays in every block, so attention maps and rollout from
    the CLS row remain meaningful.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        num_classes: int = 5,
        dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        stem: str = "patch",
        pos_embed: str = "learned",
        stem_width: int | None = None,
        init: str = "trunc_normal",
        pool: str = "cls",
    ) -> None:
        super().__init__()
        _check_choice("pool", pool, ("cls", "cls+mean"))
        _check_choice("pos_embed", pos_embed, ("learned", "sincos"))
        _check_choice("init", init, ("trunc_normal", "xavier"))
        if int(patch_size) < 1 or int(image_size) % int(patch_size):
            raise ValueError(
                f"image_size: expected a multiple of patch_size={patch_size}, got {image_size}"
            )
        self.config: dict[str, Any] = {
            "image_size": int(image_size), "patch_size": int(patch_size),
            "in_channels": int(in_channels), "num_classes": int(num_classes), "dim": int(dim),
            "depth": int(depth), "num_heads": int(num_heads), "mlp_ratio": float(mlp_ratio),
            "stem": stem, "pos_embed": pos_embed,
            "stem_width": None if stem_width is None else int(stem_width), "init": init,
            "pool": pool,
        }
        self.grid_size = (image_size // patch_size, image_size // patch_size)
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.patch_embed = PatchEmbed(in_channels, dim, patch_size, stem, stem_width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if pos_embed == "sincos":
            self.register_buffer("pos_embed", sincos_pos_embed(dim, self.grid_size))
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    @property
    def target_layer(self) -> str:
        """Qualified name of the last transformer block's first norm (a common Grad-CAM choice
        for ViTs: its output still holds one token per patch)."""
        return f"blocks.{len(self.blocks) - 1}.norm1"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(N, C, image_size, image_size)`` float -> logits ``(N, num_classes)``."""
        expected = self.config["image_size"]
        if x.dim() != 4 or tuple(x.shape[-2:]) != (expected, expected):
            raise ValueError(
                f"x: expected shape (N, {self.config['in_channels']}, {expected}, {expected}), "
                f"got {tuple(x.shape)}"
            )
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        if self.config["pool"] == "cls+mean":
            return self.head(0.5 * (tokens[:, 0] + tokens[:, 1:].mean(dim=1)))
        return self.head(tokens[:, 0])

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Truncated-normal (std 0.02) linears, position and CLS embeddings; unit LayerNorms."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                if self.config["init"] == "xavier":
                    nn.init.xavier_uniform_(module.weight, generator=generator)
                    module.bias.zero_()
                else:
                    _init_linear(module, generator, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        if self.config["init"] == "xavier":
            self.head.weight.zero_()
        for conv in self.patch_embed.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5), generator=generator)
                if conv.bias is not None:
                    conv.bias.zero_()
            elif isinstance(conv, nn.BatchNorm2d):
                conv.reset_parameters()
        nn.init.trunc_normal_(self.cls_token, std=0.02, a=-0.04, b=0.04, generator=generator)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04, generator=generator)
        else:
            self.pos_embed.copy_(sincos_pos_embed(self.pos_embed.shape[-1], self.grid_size))


class TextCNN(nn.Module):
    """Kim-style sentence CNN (Kim, EMNLP 2014): ``embedding`` (``padding_idx`` rows stay zero and
    get no gradient) -> parallel 1-D ``convs`` of widths ``kernel_sizes`` -> activation ->
    max-over-time (or LogSumExp over time) -> ``dropout`` -> linear ``head``.

    ``forward(token_ids)`` takes ``LongTensor (N, T)``; ``forward_embeddings(emb)`` takes the
    embedding output ``(N, T, embed_dim)`` so attribution can work in embedding space (Captum's
    ``LayerIntegratedGradients(model, model.embedding)`` hooks ``embedding`` instead).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        embed_dim: int = 32,
        kernel_sizes: Sequence[int] = (3, 4, 5),
        num_filters: int = 32,
        dropout: float = 0.3,
        padding_idx: int = 0,
        activation: str = "relu",
        softplus_beta: float = 1.0,
        pooling: str = "max",
        lse_temperature: float = 10.0,
    ) -> None:
        super().__init__()
        if int(vocab_size) < 2:
            raise ValueError(f"vocab_size: expected an int >= 2, got {vocab_size!r}")
        _check_choice("pooling", pooling, ("max", "lse"))
        kernel_sizes = [int(k) for k in kernel_sizes]
        self.config: dict[str, Any] = {
            "vocab_size": int(vocab_size), "num_classes": int(num_classes),
            "embed_dim": int(embed_dim), "kernel_sizes": kernel_sizes,
            "num_filters": int(num_filters), "dropout": float(dropout),
            "padding_idx": int(padding_idx), "activation": activation,
            "softplus_beta": float(softplus_beta), "pooling": pooling,
            "lse_temperature": float(lse_temperature),
        }
        self.padding_idx = int(padding_idx)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, k) for k in kernel_sizes)
        self.acts = nn.ModuleList(make_activation(activation, softplus_beta) for _ in kernel_sizes)
        self.pool = GlobalLSEPool(lse_temperature) if pooling == "lse" else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_filters * len(kernel_sizes), num_classes)

    @property
    def target_layer(self) -> str:
        """The embedding layer, where token attributions are computed."""
        return "embedding"

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        """``token_ids``: ``LongTensor (N, T)`` -> logits ``(N, num_classes)``."""
        if token_ids.dim() == 1:
            token_ids = token_ids.unsqueeze(0)
        if token_ids.dim() != 2 or token_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"token_ids: expected an integer tensor (N, T), got {token_ids.dtype} "
                f"{tuple(token_ids.shape)}"
            )
        shortfall = max(self.config["kernel_sizes"]) - token_ids.shape[1]
        if shortfall > 0:  # too short for the widest filter: pad with the padding token
            token_ids = F.pad(token_ids, (0, shortfall), value=self.padding_idx)
        return self.forward_embeddings(self.embedding(token_ids.long()))

    def forward_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``embeddings``: ``(N, T, embed_dim)`` float -> logits ``(N, num_classes)``."""
        x = embeddings.transpose(1, 2)
        pooled = []
        for conv, act in zip(self.convs, self.acts, strict=True):
            h = act(conv(x))
            pooled.append(self.pool(h) if self.pool is not None else h.amax(dim=-1))
        return self.head(self.dropout(torch.cat(pooled, dim=1)))

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """N(0, 1) embeddings with a zero padding row; default-style conv and linear init."""
        nn.init.normal_(self.embedding.weight, generator=generator)
        self.embedding.weight[self.padding_idx].zero_()
        for conv in self.convs:
            nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(conv.in_channels * conv.kernel_size[0])
            nn.init.uniform_(conv.bias, -bound, bound, generator=generator)
        _init_linear(self.head, generator)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "SmallResNet": SmallResNet,
    "TinyViT": TinyViT,
    "TextCNN": TextCNN,
}


def build_model(
    architecture: str, config: dict[str, Any], seed: int | None = None
) -> nn.Module:
    """Build ``ARCHITECTURES[architecture](**config)``.

    With ``seed`` the weights come from ``init_weights(torch.Generator().manual_seed(seed))`` and
    construction runs inside a forked RNG, so the global RNG is neither read nor advanced.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"architecture: expected one of {sorted(ARCHITECTURES)}, got {architecture!r}"
        )
    if not isinstance(config, dict):
        raise TypeError(f"config: expected a dict of constructor arguments, got {type(config)}")
    cls = ARCHITECTURES[architecture]
    if seed is None:
        return cls(**config)
    with torch.random.fork_rng(devices=[]):
        model = cls(**config)
    model.init_weights(torch.Generator().manual_seed(int(seed)))
    return model
