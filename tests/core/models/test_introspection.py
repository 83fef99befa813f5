"""visloupe.core.models.adapter (logits, eval mode, device) and .introspection (target-layer
proposals, token layouts)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from helpers.nets import (
    MLP,
    SmallCNN,
    SwinLike,
    TimmBlock,
    TimmViT,
    TorchvisionViT,
    hf_vit,
)
from torch import nn
from visloupe.core.models.adapter import (
    all_modules,
    as_logits,
    eval_mode,
    logits,
    model_device,
    model_dtype,
)
from visloupe.core.models.introspection import (
    LayerProposal,
    TokenLayout,
    infer_token_layout,
    propose_target_layers,
    resolve_layer,
)


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
               for m in model.modules())


# ----------------------------------------------------------------------------- logits adapter


def test_as_logits_variants():
    t = torch.randn(2, 3)
    assert as_logits(t) is t
    assert as_logits((t, torch.zeros(1))) is t
    assert as_logits(["aux", t]) is t
    assert as_logits({"logits": t, "hidden": torch.zeros(1)}) is t
    assert as_logits({"scores": t}) is t
    from transformers.modeling_outputs import ImageClassifierOutput

    assert as_logits(ImageClassifierOutput(logits=t)) is t


def test_as_logits_rejects_non_tensors():
    with pytest.raises(TypeError, match="got str"):
        as_logits("logits")
    with pytest.raises(TypeError, match="containing a tensor"):
        as_logits((1, 2))
    with pytest.raises(TypeError, match="'logits' tensor"):
        as_logits({"a": 1})


def test_logits_on_hf_model_returns_tensor():
    model = hf_vit()
    out = logits(model, torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)


# ----------------------------------------------------------------------------- token layout


@pytest.mark.parametrize(
    ("n_tokens", "hw", "expected"),
    [
        (197, (224, 224), TokenLayout(1, (14, 14))),  # ViT-B/16 with CLS
        (198, (224, 224), TokenLayout(2, (14, 14))),  # DeiT: CLS + distillation
        (261, (224, 224), TokenLayout(5, (16, 16))),  # patch 14, CLS + 4 registers
        (257, (256, 256), TokenLayout(1, (16, 16))),  # not 14x14
        (61, (24, 40), TokenLayout(1, (6, 10))),  # non-square input
        (64, (32, 32), TokenLayout(0, (8, 8))),  # no prefix
        (71, (30, 40), TokenLayout(1, (7, 10))),  # patch 4 with floor division
    ],
)
def test_infer_token_layout(n_tokens, hw, expected):
    assert infer_token_layout(n_tokens, hw) == expected


def test_infer_token_layout_with_patch_size_and_errors():
    assert infer_token_layout(69, (32, 32), patch_size=4) == TokenLayout(5, (8, 8))
    assert infer_token_layout(20, (16, 32), patch_size=(4, 8)) == TokenLayout(4, (4, 4))
    with pytest.raises(ValueError, match="do not fit a 8x8 patch grid"):
        infer_token_layout(80, (32, 32), patch_size=4)
    with pytest.raises(ValueError, match="cannot lay out 5000 tokens"):
        infer_token_layout(5000, (32, 32))
    with pytest.raises(ValueError, match="n_tokens"):
        infer_token_layout(0, (32, 32))


def test_token_layout_to_grid_roundtrip():
    layout = TokenLayout(2, (3, 5))
    grid = torch.randn(2, 7, 3, 5)
    tokens = torch.cat([torch.randn(2, 2, 7), grid.flatten(2).transpose(1, 2)], dim=1)
    assert torch.equal(layout.to_grid(tokens), grid)
    with pytest.raises(ValueError, match=r"\(N, 17, D\)"):
        layout.to_grid(tokens[:, 1:])


# ----------------------------------------------------------------------------- proposals


@pytest.mark.parametrize(("n_dist", "n_reg"), [(0, 0), (1, 0), (0, 4)])
def test_timm_style_vit_proposal(n_dist, n_reg):
    torch.manual_seed(0)
    model = TimmViT((24, 40), 4, n_dist, n_reg)
    best = propose_target_layers(model, (3, 24, 40))[0]
    assert best.name == "blocks.1.norm1" and best.module is model.blocks[1].norm1
    assert best.kind == "tokens"
    assert best.layout == TokenLayout(1 + n_dist + n_reg, (6, 10))
    assert best.layout.grid != (14, 14)
    assert no_hooks(model)


def test_torchvision_style_vit_proposal():
    model = TorchvisionViT()
    best = propose_target_layers(model)[0]  # input size read from model.image_size
    assert best.name == "encoder.layers.encoder_layer_1.ln_1"
    assert best.layout == TokenLayout(1, (4, 4)) and "torchvision" in best.reason


def test_hf_vit_proposal():
    model = hf_vit()
    best = propose_target_layers(model)[0]  # input size from config.image_size
    assert best.name.endswith("1.layernorm_before")
    assert best.layout == TokenLayout(1, (8, 8)) and "Hugging Face" in best.reason
    assert isinstance(best, LayerProposal)


def test_cnn_proposal_is_last_spatial_map_and_hooks_removed():
    model = SmallCNN().train()
    props = propose_target_layers(model, (3, 16, 16))
    assert props[0].kind == "conv" and props[0].name == "act2"
    assert props[0].output_shape == (1, 6, 8, 8)
    assert [p.name for p in props][:3] == ["act2", "conv2", "act1"]
    assert model.training and all(m.training for m in model.modules())
    assert no_hooks(model)


def test_cnn_proposal_skips_1x1_maps():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=4), nn.ReLU(), nn.Conv2d(2, 2, 2),
                          nn.Flatten(), nn.Linear(2, 2))
    props = propose_target_layers(model, (1, 8, 8))  # 8 -> 2x2 -> 1x1
    assert props[0].name == "1" and props[0].output_shape == (1, 2, 2, 2)
    assert all(p.output_shape[-1] > 1 for p in props)


def test_channels_last_proposal():
    model = SwinLike()
    props = propose_target_layers(model, (3, 16, 24))
    best = props[0]
    assert best.kind == "tokens" and best.layout.channels_last
    assert best.layout.grid == (4, 6)
    assert best.name == "act" and best.output_shape == (1, 4, 6, 12)


def test_mlp_has_no_proposal_and_resolve_layer_explains():
    model = MLP()
    assert propose_target_layers(model, (3, 8, 8)) == []
    with pytest.raises(ValueError, match="no module producing a spatial map"):
        resolve_layer(model, None, (3, 8, 8))


class _TwiceBlock(nn.Module):
    """One conv block applied twice (weight sharing): no module runs once on a spatial map."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.block(self.block(x)).mean((2, 3)))


def test_shared_blocks_are_named_when_no_layer_qualifies():
    model = _TwiceBlock()
    assert propose_target_layers(model, (3, 8, 8)) == []
    with pytest.raises(ValueError, match=r"layer: every module of _TwiceBlock producing a "
                                         r"spatial map is called more than once .*'block'"):
        resolve_layer(model, None, (3, 8, 8))
    with pytest.raises(ValueError, match="'block' is called 2 times"):
        resolve_layer(model, "block", (3, 8, 8))


class _SharedTail(nn.Module):
    """A stem called once, then one block called twice: the last spatial layers are shared."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.block(self.block(self.stem(x))).mean((2, 3)))


def test_falling_back_past_shared_layers_says_so(caplog):
    """Grad-CAM on the stem of a shared-tail model is a real choice, not a silent one: the
    proposal's reason and a warning name the skipped shared layers."""
    with caplog.at_level("INFO", logger="visloupe.core.models.introspection"):
        best = propose_target_layers(_SharedTail(), (3, 8, 8))[0]
    assert best.name == "stem"
    assert "block (2 calls)" in best.reason and "shared" in best.reason
    assert "block" in caplog.text
    assert "shared" not in propose_target_layers(SmallCNN(), (3, 16, 16))[0].reason


def test_resolve_layer_errors():
    model = SmallCNN()
    with pytest.raises(ValueError, match=r"close names: \['conv2'"):
        resolve_layer(model, "conv3", (3, 16, 16))
    with pytest.raises(ValueError, match="not part of the model"):
        resolve_layer(model, nn.Conv2d(1, 1, 1), (3, 16, 16))
    with pytest.raises(ValueError, match="outputs shape"):
        resolve_layer(model, "fc", (3, 16, 16))
    with pytest.raises(TypeError, match="layer: expected"):
        resolve_layer(model, 3, (3, 16, 16))
    shared = nn.ReLU()
    reused = nn.Sequential(nn.Conv2d(3, 2, 3), shared, nn.Conv2d(2, 2, 3), shared)
    with pytest.raises(ValueError, match="called 2 times"):
        resolve_layer(reused, "1", (3, 16, 16))
    assert resolve_layer(model, model.conv2, (3, 16, 16)).name == "conv2"


def test_resolve_layer_cache_follows_model_edits():
    """Proposals are cached per model and shape; swapping a submodule under the same name must
    not hand back the old module (explain would hook a layer that is no longer called)."""
    model = SmallCNN()
    first = resolve_layer(model, "conv2", (3, 16, 16))
    assert resolve_layer(model, "conv2", (3, 16, 16)) is first  # cached
    best = resolve_layer(model, None, (3, 16, 16))
    model.act2 = nn.ReLU()
    model.conv2 = nn.Conv2d(4, 6, 3, stride=1, padding=1)  # now keeps the size
    again = resolve_layer(model, "conv2", (3, 16, 16))
    assert again.module is model.conv2 and again is not first
    assert resolve_layer(model, None, (3, 16, 16)).module is model.act2 is not best.module
    assert again.output_shape == (1, 6, 16, 16)  # the new stride, not a stale trace
    assert resolve_layer(model, None, (3, 12, 12)).output_shape[-1] == 12  # per input shape


def test_dry_pass_failure_names_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        propose_target_layers(TimmViT((24, 40)), (3, 32, 32))  # pos_embed sized for 24x40


def test_eval_mode_restores_flags_on_error():
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2))
    model.train()
    model[1].eval()
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("boom")
    assert model.training and model[0].training and not model[1].training


def test_all_modules_and_first_parameter_match_torch_walks():
    """The fast walks give nn.Module.modules() / parameters() exactly: same order, shared
    modules and tied parameters once, None children skipped."""
    shared = nn.Linear(3, 3)
    model = nn.Sequential(OrderedDict(
        pre=nn.Identity(),  # no parameters: the first parameter sits deeper
        a=nn.Sequential(shared, nn.ReLU(), nn.Sequential(nn.Conv2d(3, 4, 1), shared)),
        b=shared,
        c=TimmBlock(8),
    ))
    model.a.register_module("gap", None)
    tied = nn.Linear(3, 3)
    tied.weight = shared.weight
    model.add_module("tied", tied)
    walked = all_modules(model)
    expected = list(model.modules())
    assert len(walked) == len(expected)
    assert all(a is b for a, b in zip(walked, expected, strict=True))
    assert len(walked) < len(list(model.modules(remove_duplicate=False)))
    model.double()
    assert model_dtype(model) == torch.float64
    assert model_device(model) == next(model.parameters()).device
    assert model_dtype(nn.ReLU()) == torch.float32 and model_device(nn.ReLU()).type == "cpu"
