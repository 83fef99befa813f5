"""visloupe.core.cache: the cache key follows behaviour (architecture, module configuration,
weights, preprocess), so embed/confusion never return another model's rows from disk."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from visloupe.core import profiling
from visloupe.core.cache import model_fingerprint, preprocess_fingerprint
from visloupe.core.models import ImagePreprocess
from visloupe.core.padding import swap_padding


class Net(nn.Module):
    def __init__(self, act: nn.Module | None = None, pool: nn.Module | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.act = act or nn.ReLU()
        self.pool = pool or nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


class Wider(Net):
    """The same parameters under another class: a different architecture."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.conv(x) * 2)).flatten(1))


def _images(n: int = 6) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)) for _ in range(n)]


def _fresh(model: nn.Module, images: list, **kw) -> np.ndarray:
    return profiling.embed(model, images, cache=False, **kw)


@pytest.mark.parametrize("change", ["padding", "activation", "pooling", "architecture",
                                    "weights"])
def test_embed_cache_misses_when_the_model_behaves_differently(tmp_path, change: str) -> None:
    images = _images()
    base = Net()
    first = profiling.embed(base, images, cache=tmp_path)
    if change == "padding":
        other = swap_padding(base, "circular")
    elif change == "activation":
        other = Net(act=nn.Softplus(beta=2.0))
    elif change == "pooling":
        other = Net(pool=nn.AdaptiveMaxPool2d(1))
    elif change == "architecture":
        other = Wider()
        other.load_state_dict(base.state_dict())
    else:
        other = copy.deepcopy(base)
        with torch.no_grad():
            other.conv.weight[0, 0, 0, 0] += 0.5
    assert model_fingerprint(other) != model_fingerprint(base)
    got = profiling.embed(other, images, cache=tmp_path)
    want = _fresh(other, images)
    assert np.allclose(got, want, atol=1e-6) and not np.allclose(got, first, atol=1e-4)
    # the same behaviour again is a hit: identical rows, and the base entry is still intact
    assert np.array_equal(profiling.embed(base, images, cache=tmp_path), first)


def test_a_module_config_change_alone_changes_the_key() -> None:
    base = Net(act=nn.Softplus(beta=1.0))
    other = copy.deepcopy(base)
    other.act.beta = 5.0  # no weight changes
    assert model_fingerprint(other) != model_fingerprint(base)
    assert model_fingerprint(copy.deepcopy(base)) == model_fingerprint(base)
    hooked = copy.deepcopy(base)
    hooked.act.register_forward_hook(lambda _m, _i, out: out * 0)
    assert model_fingerprint(hooked) != model_fingerprint(base)


def test_preprocess_changed_in_place_misses(tmp_path) -> None:
    images = _images()
    pre = ImagePreprocess(size=(12, 12), mode="RGB", mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    model = Net()
    first = profiling.embed(model, images, preprocess=pre, cache=tmp_path)
    pre2 = copy.deepcopy(pre)
    pre2.mean = (0.1, 0.1, 0.1)  # a setting changed in place
    got = profiling.embed(model, images, preprocess=pre2, cache=tmp_path)
    assert np.allclose(got, _fresh(model, images, preprocess=pre2), atol=1e-6)
    assert not np.allclose(got, first, atol=1e-4)


def test_random_preprocess_has_no_key() -> None:
    gen = torch.Generator().manual_seed(0)

    def jitter(img: Image.Image) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
        return x + 0.01 * torch.randn(x.shape, generator=gen)

    assert preprocess_fingerprint(jitter, _images(1)[0]) is None
    assert preprocess_fingerprint(None) == "default"
