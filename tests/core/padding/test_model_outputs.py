"""The padding capability runs any user's model through the adapter: dict, tuple and
``ModelOutput``-style outputs score the logits (not the first tensor), and a float64 model is
probed in float64 (issue 15's review: the blind-spot map scored an embedding, the probe failed
on tuples and on float64 models)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from visloupe.core import padding as P
from visloupe.widgets import PaddingInspector

from tests.helpers.nets import SmallCNN, random_images


class DictOut(nn.Module):
    """``{first: ..., "logits": base(x)}``: the first value is a wider embedding (or a 1-D aux
    score), so scoring the first tensor instead of the logits gives other numbers."""

    def __init__(self, base: nn.Module, first: str = "embedding") -> None:
        super().__init__()
        self.base, self.first = base, first

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.base(x)
        extra = (torch.cat([logits.flip(1), logits, logits], 1) if self.first == "embedding"
                 else logits.sum(1))
        return {self.first: extra, "logits": logits}


class TupleOut(nn.Module):
    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base(x), x.mean((2, 3))


def _base() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(num_classes=3).eval()


STIM, BG = torch.full((3, 4, 4), 2.0), torch.zeros(3, 12, 12)


@pytest.mark.parametrize("wrap", [lambda b: DictOut(b), lambda b: DictOut(b, "aux"), TupleOut])
def test_blind_spot_map_scores_the_logits(wrap) -> None:
    base = _base()
    expect = P.blind_spot_map(base, STIM, BG, target=1)
    got = P.blind_spot_map(wrap(base), STIM, BG, target=1)
    assert torch.equal(got.scores, expect.scores)
    with pytest.raises(ValueError, match="target: expected a class index below 3, got 5"):
        P.blind_spot_map(wrap(base), STIM, BG, target=5)  # in range of the 9-wide embedding


@pytest.mark.parametrize("wrap", [DictOut, TupleOut])
def test_blind_spot_probe_takes_any_output(wrap) -> None:
    base, data = _base(), random_images(4, 12)
    expect = P.blind_spot_probe(base, 12, data)
    got = P.blind_spot_probe(wrap(base), 12, data)
    assert got.target == expect.target and torch.equal(got.scores, expect.scores)


def test_float64_model_is_probed_in_float64() -> None:
    base, data = _base(), random_images(4, 12)
    model = _base().double()
    res = P.blind_spot_probe(model, 12, data.double())
    assert res.scores.dtype == torch.float64
    stim, bg = P.default_probe(model, 12, data)  # float32 data, float64 model
    assert stim.dtype == bg.dtype == torch.float64
    # the same network in float32 agrees to float32 precision
    ref = P.blind_spot_probe(base, 12, data)
    assert res.target == ref.target
    assert torch.allclose(res.scores.float(), ref.scores, atol=1e-5)
    assert all(p.dtype == torch.float64 for p in model.parameters())  # never cast


@pytest.mark.parametrize("kind", ["dict", "tuple", "float64"])
def test_padding_inspector_takes_user_models(kind) -> None:
    base, data = _base(), random_images(4, 16)
    if kind == "float64":
        model, data = base.double(), data.double()
    else:
        model = DictOut(base) if kind == "dict" else TupleOut(base)
    view = PaddingInspector(model, data)
    assert view.errors.value == ""  # the widget shows errors here; none
    shown = view._result["blind"]
    ref = P.blind_spot_probe(model, 16, data)
    assert shown.target == ref.target and torch.equal(shown.scores, ref.scores)
    assert f"(class {ref.target})" in view.captions[2].value
