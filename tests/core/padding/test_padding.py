"""visloupe.core.padding: the properties of research/padding.md §7 that catch a wrong
implementation (arithmetic tables, PyTorch dropping bottom/right padding, flip equivariance,
single-layer foveation counts per mode, padding-mode vectors, partial convolution)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from visloupe.core import padding as P
from visloupe.core.models import SmallResNet
from visloupe.core.padding.arithmetic import _trace


def conv(k: int, s: int, p: int, d: int = 1, mode: str = "zeros") -> nn.Conv2d:
    return nn.Conv2d(1, 1, k, s, p, dilation=d, bias=False, padding_mode=mode)


def ones_(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0)
    return model.double()


def resnet_stem() -> nn.Module:
    """ResNet stem and backbone down-sampling: conv7/2/p3, maxpool3/2/p1, three 3x3/2/p1."""
    return nn.Sequential(conv(7, 2, 3), nn.MaxPool2d(3, 2, 1), conv(3, 2, 1), conv(3, 2, 1),
                         conv(3, 2, 1))


def path_stack() -> nn.Module:
    """The brief's path-count stack: the stem, then a stride-1 3x3 after the pool and after each
    stride-2 3x3 (one conv per stage)."""
    return nn.Sequential(conv(7, 2, 3), nn.MaxPool2d(3, 2, 1), conv(3, 1, 1),
                         conv(3, 2, 1), conv(3, 1, 1), conv(3, 2, 1), conv(3, 1, 1),
                         conv(3, 2, 1), conv(3, 1, 1))


# ----------------------------------------------------------------------------- 1. arithmetic


def pairs(frame, prefix: str) -> list[tuple[int, int]]:
    return list(zip(frame[f"{prefix}_before_h"], frame[f"{prefix}_after_h"], strict=True))


def test_resnet_stem_table_224_vs_225() -> None:
    uneven = P.audit_padding(resnet_stem(), 224)
    assert uneven["in_h"].tolist() == [224, 112, 56, 28, 14]
    assert uneven["leftover_h"].tolist() == [1] * 5 and uneven["leftover_w"].tolist() == [1] * 5
    assert uneven["uneven"].all()
    assert pairs(uneven, "pad") == [(3, 2)] + [(1, 0)] * 4
    assert pairs(uneven, "tf_pad") == [(2, 3)] + [(0, 1)] * 4
    even = P.audit_padding(resnet_stem(), 225)
    assert even["in_h"].tolist() == [225, 113, 57, 29, 15]
    assert (even["leftover_h"] == 0).all() and not even["uneven"].any()
    assert pairs(even, "pad") == [(3, 3)] + [(1, 1)] * 4
    assert pairs(even, "tf_pad") == [(3, 3)] + [(1, 1)] * 4
    assert not even["tf_uneven"].any() and uneven["tf_uneven"].all()


def test_even_sizes_and_suggestion() -> None:
    assert P.even_input_sizes(resnet_stem(), 100, 300) == [129, 161, 193, 225, 257, 289]
    assert P.suggest_input_size(resnet_stem(), 224) == 225
    assert P.suggest_input_size(resnet_stem(), 225) == 225
    assert P.suggest_input_size(resnet_stem(), 200) == 193


def test_reference_resnet_with_shortcuts() -> None:
    net = P.reference_resnet(18, width=4)
    frame = P.audit_padding(net, 224)
    bad = frame[frame.uneven]
    assert set(bad.name) == {"conv1", "maxpool", "layer2.0.conv1", "layer2.0.downsample.0",
                             "layer3.0.conv1", "layer3.0.downsample.0", "layer4.0.conv1",
                             "layer4.0.downsample.0"}
    # the 1x1/2 shortcut has no padding: at an even size it drops a real row (after = -1)
    short = frame.set_index("name").loc["layer2.0.downsample.0"]
    assert (short.pad_before_h, short.pad_after_h, short.leftover_h) == (0, -1, 1)
    assert not P.audit_padding(net, 225).uneven.any()
    assert P.even_input_sizes(net, 100, 300) == [129, 161, 193, 225, 257, 289]
    assert P.uneven_count(net, 224) == 8 and P.uneven_count(net, 225) == 0


def test_skeleton_audit_matches_the_real_forward() -> None:
    """The fast shape-only skeleton and a real forward of the model give the same table."""
    nets = [P.reference_resnet(18, width=4), SmallResNet(3, 5, (8, 8, 8)),
            nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1, groups=3),
                          nn.MaxPool2d(3, 2, 0, ceil_mode=True),
                          nn.Conv2d(6, 4, 3, 2, 2, dilation=2),
                          nn.AvgPool2d(2, 2, 1, ceil_mode=True))]
    for net in nets:
        for hw in [(61, 64), (50, 47)]:
            fast = P.audit_padding(net, hw)
            real = _trace(net, torch.zeros(1, 3, *hw), meta=False)
            assert fast.to_dict("records") == real, (type(net).__name__, hw)


class _Scaled(nn.Module):
    """A module with its own parameter: no skeleton, so the audit runs the model on meta."""

    def __init__(self) -> None:
        super().__init__()
        self.body = resnet_stem()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * self.scale)


def test_models_without_a_skeleton_fall_back_to_the_model() -> None:
    net = _Scaled()
    assert P.audit_padding(net, 224).leftover_h.tolist() == [1] * 5
    assert P.suggest_input_size(net, 224) == 225
    fmap = P.foveation_map(net, 65)
    assert torch.equal(fmap, P.foveation_map(resnet_stem(), 65))


def test_out_sizes_agree_with_torch_for_random_layers() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        k, s, d = (int(torch.randint(1, 6, (1,), generator=g)),
                   int(torch.randint(1, 4, (1,), generator=g)),
                   int(torch.randint(1, 3, (1,), generator=g)))
        p = int(torch.randint(0, k, (1,), generator=g))
        n = int(torch.randint(d * (k - 1) + 1, 40, (1,), generator=g))
        layer = nn.Conv2d(1, 1, k, s, p, dilation=d)
        out = layer(torch.zeros(1, 1, n, n)).shape[-1]
        assert P.conv_out(n, k, s, p, d) == out
        row = P.audit_padding(layer, n).iloc[0]
        assert row.out_h == out and row.leftover_h == P.leftover(n, k, s, p, d)
        assert (row.pad_before_h, row.pad_after_h) == P.torch_effective_padding(n, k, s, p, d)


def test_non_square_ceil_mode_dilation_groups() -> None:
    net = nn.Sequential(nn.Conv2d(2, 4, 3, 2, 1, groups=2), nn.MaxPool2d(3, 2, 0, ceil_mode=True),
                        nn.Conv2d(4, 4, 3, 2, 2, dilation=2))
    frame = P.audit_padding(net, (33, 32))
    first = frame.iloc[0]
    assert (first.leftover_h, first.leftover_w, first.uneven, first.groups) == (0, 1, True, 2)
    pool = frame.iloc[1]  # 17 x 16 input, ceil mode: the last window overhangs on W
    assert (pool.in_h, pool.in_w, pool.out_h, pool.out_w) == (17, 16, 8, 8)
    assert (pool.pad_after_h, pool.pad_after_w, pool.leftover_w) == (0, 1, -1)
    dil = frame.iloc[2]
    assert dil.dilation == (2, 2) and dil.leftover_h == P.leftover(8, 3, 2, 2, 2)
    real = net(torch.zeros(1, 2, 33, 32))
    assert real.shape[-2:] == (frame.iloc[2].out_h, frame.iloc[2].out_w)


def test_small_resnet_even_sizes() -> None:
    net = SmallResNet(3, 5, (8, 8, 8))
    assert P.even_input_sizes(net, 20, 40) == [21, 25, 29, 33, 37]
    assert P.audit_padding(net, 32).uneven.sum() == 4  # two conv1 + two shortcuts
    assert not P.audit_padding(net, 33).uneven.any()


# ----------------------------------------------------------------------------- 2-3. torch drops


def test_pytorch_drops_bottom_right_padding() -> None:
    layer = ones_(nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False))
    out4 = layer(torch.ones(1, 1, 4, 4, dtype=torch.float64))[0, 0]
    assert out4.tolist() == [[4, 6], [6, 9]]
    out5 = layer(torch.ones(1, 1, 5, 5, dtype=torch.float64))[0, 0]
    assert out5.tolist() == [[4, 6, 4], [6, 9, 6], [4, 6, 4]]
    for n in range(4, 10):
        out = layer(torch.ones(1, 1, n, n, dtype=torch.float64))[0, 0]
        symmetric = torch.equal(out, out.flip(0, 1))
        assert symmetric == (P.leftover(n, 3, 2, 1) == 0), n


def test_flip_equivariance_iff_even_padding() -> None:
    net = ones_(nn.Sequential(conv(3, 2, 1), conv(3, 2, 1), conv(3, 2, 1)))
    g = torch.Generator().manual_seed(1)
    for n, even in ((32, False), (33, True), (40, False), (41, True)):
        x = torch.rand(1, 1, n, n, generator=g, dtype=torch.float64)
        same = torch.allclose(net(x.flip(-1, -2)), net(x).flip(-1, -2))
        assert same == even, n


# ----------------------------------------------------------------------------- 4. foveation


def one_d(fmap: torch.Tensor) -> list[float]:
    """The 1-D count vector of a separable map ``outer(f, f)``."""
    return (fmap.sum(0) / fmap.sum().sqrt()).tolist()


@pytest.mark.parametrize("mode,k,head", [
    ("zeros", 3, [2, 3, 3, 3]), ("circular", 3, [3, 3, 3, 3]), ("reflect", 3, [2, 4, 3, 3]),
    ("replicate", 3, [3, 3, 3, 3]), ("symmetric", 3, [3, 3, 3, 3]), ("zeros", 5, [3, 4, 5, 5]),
    ("circular", 5, [5, 5, 5, 5]), ("reflect", 5, [3, 6, 6, 5]), ("replicate", 5, [6, 4, 5, 5]),
    ("symmetric", 5, [5, 5, 5, 5]), ("partial", 3, [2.5, 3.5, 3, 3]),
])
def test_single_layer_counts_per_mode(mode: str, k: int, head: list[float]) -> None:
    fmap = P.foveation_map(conv(k, 1, k // 2), 16, padding_mode=mode)
    f = one_d(fmap)
    assert f[:4] == pytest.approx(head) and f[-4:] == pytest.approx(head[::-1])
    assert torch.allclose(fmap, torch.outer(torch.tensor(f, dtype=torch.float64),
                                            torch.tensor(f, dtype=torch.float64)))
    if mode in ("circular", "symmetric"):
        assert torch.all(fmap == fmap[0, 0])


def test_model_padding_mode_is_used_by_default() -> None:
    assert one_d(P.foveation_map(conv(3, 1, 1, mode="reflect"), 16))[:3] == [2, 4, 3]
    assert torch.all(P.foveation_map(conv(5, 1, 2, mode="circular"), 12) == 25)


def test_multilayer_circular_uniform_and_zero_asymmetric_iff_uneven() -> None:
    stack = nn.Sequential(conv(3, 1, 1), conv(5, 1, 2), conv(3, 1, 2, d=2))
    assert torch.all(P.foveation_map(stack, 20, "circular") == 9 * 25 * 9)  # k_h k_w per layer
    for n, even in ((224, False), (225, True), (63, False), (65, True)):
        fmap = P.foveation_map(resnet_stem(), n)
        assert torch.equal(fmap, fmap.flip(0, 1)) == even, n


def test_brief_path_counts_224_vs_225() -> None:
    f224 = one_d(P.foveation_map(path_stack(), 224))
    assert f224[:5] == pytest.approx([280, 396, 396, 689, 607])
    assert f224[-5:] == pytest.approx([138, 93, 93, 32, 32])
    f225 = one_d(P.foveation_map(path_stack(), 225))
    assert f225[:5] == pytest.approx([280, 396, 396, 689, 607])
    assert f225[-5:] == pytest.approx([607, 689, 396, 396, 280])


def test_skeleton_counts_equal_linearised_full_model() -> None:
    """Path counts on the one-channel skeleton equal d(sum)/d(x) of the linearised full model
    (1/C_in weights), for a residual network with BatchNorm, ReLU, max pooling and shortcuts."""
    from visloupe.core.padding.foveation import _path_counts, linearize

    for net, n in ((P.reference_resnet(18, width=4), 64), (SmallResNet(3, 5, (4, 8, 8)), 33),
                   (P.swap_padding(SmallResNet(3, 5, (4, 8)), "symmetric"), 20)):
        full = _path_counts(linearize(net), torch.ones(1, 3, n, n, dtype=torch.float64))
        fast = P.foveation_map(net, n)
        assert torch.allclose(full, fast, rtol=1e-10)


def test_foveation_leaves_the_model_alone() -> None:
    net = SmallResNet(3, 5, (4, 8))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    net.eval()
    before = net(x)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    calls: list[int] = []
    handle = net.features[0][0].register_forward_hook(lambda *args: calls.append(1))
    P.foveation_map(net, 32, padding_mode="partial")
    P.foveation_map(net, 32)
    P.audit_padding(net, 32)
    assert calls == []  # the user's hooks do not fire on our stand-in networks
    handle.remove()
    assert torch.equal(net(x), before)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


# ----------------------------------------------------------------------------- 5. modes


def test_padding_mode_vectors() -> None:
    x = torch.arange(5.0)[None]
    assert P.pad2d(x, (2, 2, 0, 0), "symmetric")[0].tolist() == [1, 0, 0, 1, 2, 3, 4, 4, 3]
    assert P.pad2d(x, (2, 2, 0, 0), "reflect")[0].tolist() == [2, 1, 0, 1, 2, 3, 4, 3, 2]
    assert P.pad2d(x[None, None], (2, 2, 0, 0), "circular")[0, 0, 0].tolist() == \
        [3, 4, 0, 1, 2, 3, 4, 0, 1]
    img = torch.rand(1, 2, 6, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(P.pad2d(img, (1, 1, 1, 1), "symmetric"),
                       F.pad(img, (1, 1, 1, 1), mode="replicate"))
    with pytest.raises(ValueError, match="reflect"):
        P.pad2d(img, (0, 0, 6, 6), "reflect")
    with pytest.raises(ValueError, match="mode"):
        P.pad2d(img, (1, 1, 1, 1), "mirror")


def test_swap_padding_copies_and_matches_native_modes() -> None:
    g = torch.Generator().manual_seed(0)
    base = SmallResNet(3, 5, (8, 16), norm="none").eval()
    x = torch.rand(2, 3, 17, 17, generator=g)
    before = base(x)
    for mode in ("reflect", "replicate", "circular"):
        swapped = P.swap_padding(base, mode).eval()
        native = SmallResNet(3, 5, (8, 16), padding_mode=mode, norm="none").eval()
        native.load_state_dict(swapped.state_dict())
        assert torch.allclose(swapped(x), native(x), atol=1e-6)
        assert swapped.state_dict().keys() == base.state_dict().keys()
    sym = P.swap_padding(base, "symmetric")
    assert isinstance(sym.features[0][0], P.PadConv2d) and sym.features[0][0].pad_mode == \
        "symmetric"
    assert torch.equal(base(x), before)  # the input model is never changed
    assert all(type(m) is nn.Conv2d for m in base.modules() if isinstance(m, nn.Conv2d))
    back = P.swap_padding(sym, "zeros")
    assert torch.allclose(back(x), base(x), atol=1e-6)
    layer = nn.Conv2d(2, 3, 3, 1, 2, bias=True)
    manual = F.conv2d(P.pad2d(img := x[:, :2], (2, 2, 2, 2), "symmetric"), layer.weight,
                      layer.bias)
    assert torch.allclose(P.swap_padding(layer, "symmetric")(img), manual, atol=1e-6)


class _PadThenConv(nn.Module):
    """A pad module, then a padding-free conv, then a conv with its own padding (custom
    forward, not an nn.Sequential)."""

    def __init__(self, mode: str = "zeros") -> None:
        super().__init__()
        self.p1 = nn.ZeroPad2d(1)
        self.c1 = nn.Conv2d(1, 2, 3)
        self.c2 = nn.Conv2d(2, 2, 3, padding=1, padding_mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(self.c1(self.p1(x)))


def test_swap_padding_swaps_pad_modules_too() -> None:
    """A model's own pad modules take the new mode: the swapped model computes what the same
    weights compute with the padding inside the convolution (and its foveation map agrees)."""
    net = _PadThenConv().double()
    x = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for mode in ("reflect", "replicate", "circular", "symmetric"):
        swapped = P.swap_padding(net, mode)
        ref = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)).double()
        ref.load_state_dict({"0.weight": net.c1.weight, "0.bias": net.c1.bias,
                             "1.weight": net.c2.weight, "1.bias": net.c2.bias})
        ref = P.swap_padding(ref, mode)
        assert torch.allclose(swapped(x), ref(x)), mode
        assert torch.equal(P.foveation_map(net, 9, mode), P.foveation_map(ref, 9)), mode
    circular = P.foveation_map(net, 9, "circular")
    assert torch.all(circular == 81)  # circular padding treats every pixel alike
    assert isinstance(net.p1, nn.ZeroPad2d)  # the input model is untouched
    audit = P.audit_padding(P.swap_padding(net, "symmetric"), 9).set_index("name")
    assert audit.loc["c1", "padding_mode"] == "symmetric"
    assert "SymmetricPad2d p1" in audit.loc["c1", "pad_source"]


def test_swap_padding_partial_folds_a_pad_module_into_its_conv(caplog) -> None:
    seq = ones_(nn.Sequential(nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(1, 2, 3, bias=False)))
    part = P.swap_padding(seq, "partial")
    assert isinstance(part[0], nn.Identity) and part[1].pads == (1, 0, 1, 0)
    ones = torch.ones(1, 1, 6, 6, dtype=torch.float64)
    assert torch.all(part(ones) == 9) and seq(ones)[0, 0, 0, 0] == 4  # zeros vs partial
    with caplog.at_level("WARNING", logger="visloupe.core.models.surgery"):
        kept = P.swap_padding(_PadThenConv(), "partial")
    assert isinstance(kept.p1, nn.ZeroPad2d) and "p1 (ZeroPad2d)" in caplog.text


def test_swap_padding_replaces_a_module_at_every_place_it_is_used() -> None:
    """One pad module (and one conv) used twice in a Sequential: both uses take the new mode,
    as in the model whose convs pad themselves; folded even pads become the conv's own padding,
    so same="dynamic" leaves them alone; a cropping pad is kept."""
    torch.manual_seed(0)
    pad, c1, c2 = nn.ZeroPad2d(1), nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 3)
    net = nn.Sequential(pad, c1, nn.ReLU(), pad, c2).double()
    ref = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(3, 3, 3, padding=1)).double()
    ref.load_state_dict({"0.weight": c1.weight, "0.bias": c1.bias, "2.weight": c2.weight,
                         "2.bias": c2.bias})
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    for mode in ("reflect", "partial"):
        swapped = P.swap_padding(net, mode)
        assert torch.allclose(swapped(x), P.swap_padding(ref, mode)(x)), mode
    again = P.swap_padding(P.swap_padding(net, "partial"), "keep", same="dynamic")
    assert torch.allclose(again(x), P.swap_padding(ref, "partial")(x))
    shared = nn.Sequential(c1, nn.ReLU(), c1)
    assert all(isinstance(m, P.PadConv2d) for m in P.swap_padding(shared, "reflect")[::2])
    block = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(3, 3, 3))  # a block used twice
    twice = nn.Sequential(block, nn.ReLU(), block).double()
    assert P.swap_padding(twice, "partial")(x).shape == twice(x).shape  # folded once
    crop = P.swap_padding(nn.Sequential(nn.ZeroPad2d(-1), nn.Conv2d(3, 3, 3, padding=1)),
                          "symmetric")
    assert isinstance(crop[0], nn.ZeroPad2d) and crop[0].padding == (-1, -1, -1, -1)


# ----------------------------------------------------------------------------- 6. partial conv


def test_partial_convolution_uniform_on_ones() -> None:
    layer = ones_(nn.Conv2d(1, 1, 3, 1, 1, bias=False))
    part = P.swap_padding(layer, "partial")
    ones = torch.ones(1, 1, 7, 9, dtype=torch.float64)
    assert torch.all(part(ones) == 9)
    zero = layer(ones)[0, 0]
    assert zero[0, 0] == 4 and zero[0, 4] == 6 and zero[3, 4] == 9
    x = torch.rand(1, 1, 7, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(part(x)[..., 1:-1, 1:-1], layer(x)[..., 1:-1, 1:-1])
    with_bias = P.swap_padding(nn.Conv2d(1, 2, 3, 1, 1), "partial").double()
    with torch.no_grad():
        with_bias.weight.fill_(0.5)
    out = with_bias(2 * ones)
    assert torch.allclose(out, out[..., :1, :1].expand_as(out))


# ----------------------------------------------------------------------------- 7. mean maps


def test_mean_feature_map_asymmetry_even_vs_uneven() -> None:
    net = nn.Sequential(conv(3, 2, 1), nn.ReLU(), conv(3, 2, 1), nn.ReLU(), conv(3, 2, 1),
                        nn.ReLU())
    ones_(net)
    for n, even in ((32, False), (33, True)):
        res = P.mean_feature_maps(net, torch.ones(4, 1, n, n, dtype=torch.float64))
        assert res.layers == ("1", "3", "5")
        for name in res.layers:
            assert (res.asymmetry[name] == 0) == even
            assert res.asymmetry[name] == pytest.approx(P.flip_asymmetry(res.maps[name]))
    assert all(not m._forward_hooks for m in net.modules())


def test_mean_feature_maps_are_means() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, 1, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, 2, 1))
    x = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    res = P.mean_feature_maps(net, x, layers=["1", "2"], batch_size=3)
    with torch.no_grad():
        a1 = net[1](net[0](x))
        a2 = net[2](a1)
    assert torch.allclose(res.channel_maps["1"], a1.mean(0), atol=1e-6)
    assert torch.allclose(res.maps["2"], a2.mean((0, 1)), atol=1e-6)
    assert torch.allclose(res.row_profiles["2"], a2.mean((0, 1, 3)), atol=1e-6)
    assert res.n_samples == 10 and list(res.to_dataframe().layer) == ["1", "2"]
    with pytest.raises(ValueError, match="layers"):
        P.mean_feature_maps(net, x, layers=["nope"])


def test_mean_feature_maps_reads_a_dataset() -> None:
    from visloupe.core.data import load_builtin

    ds = load_builtin("shapes", split="test", n=20, size=16)
    res = P.mean_feature_maps(SmallResNet(3, 5, (4, 8)), ds, max_samples=12, input_size=17)
    assert res.n_samples == 12 and res.maps[res.layers[0]].shape == (17, 17)


# ----------------------------------------------------------------------------- filters, blind spots


def test_filter_asymmetry_planted() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.Conv2d(2, 1, 1))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0, 1, 1] = 1.0  # centre: symmetric
        net[0].weight[1, 0, 0, 0] = 1.0  # top-left: maximally asymmetric
    frame = P.filter_asymmetry(net)
    assert list(frame.name) == ["0"]  # 1x1 kernels are skipped
    row = frame.iloc[0]
    assert row.asymmetry == pytest.approx((0 + np.sqrt(2)) / 2)
    assert row.centroid_dy == pytest.approx(-0.5) and row.centroid_dx == pytest.approx(-0.5)
    assert row.mean_filter.shape == (3, 3)


class _Masked(nn.Module):
    """Logit 0 = sum of the input weighted by a fixed mask; logit 1 = 0."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.conv.weight)
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (self.conv(x) * self.mask).sum((1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_blind_spot_map_planted_hole() -> None:
    mask = torch.ones(12, 12)
    mask[4:8, 6:10] = 0  # the blind spot
    model = _Masked(mask)
    res = P.blind_spot_map(model, torch.ones(1, 2, 2), torch.zeros(1, 12, 12), target=0,
                           score="logit")
    expect = F.conv2d(mask[None, None], torch.ones(1, 1, 2, 2))[0, 0]
    assert torch.allclose(res.scores, expect)
    assert res.scores.shape == (11, 11) and res.scores[5, 7] == 0
    strided = P.blind_spot_map(model, torch.ones(1, 2, 2), torch.zeros(1, 12, 12), 0, stride=3,
                               score="logit")
    assert strided.rows == (0, 3, 6, 9) and strided.scores.shape == (4, 4)
    assert strided.summary()["blind_fraction"] > 0
    with pytest.raises(ValueError, match="target"):
        P.blind_spot_map(model, torch.ones(1, 2, 2), torch.zeros(1, 12, 12), target=7)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="nn.Conv2d"):
        P.audit_padding(nn.Sequential(nn.Linear(3, 3)), 32)
    with pytest.raises(TypeError, match="model"):
        P.audit_padding("resnet", 32)
    with pytest.raises(ValueError, match="input_size: 4x4 is too small.*'1'.*2x2"):
        P.audit_padding(nn.Sequential(conv(3, 1, 0), conv(3, 1, 0)), 4)
    with pytest.raises(ValueError, match="input_size"):
        P.foveation_map(nn.Sequential(conv(3, 1, 0), conv(3, 1, 0)), 3)
    with pytest.raises(TypeError, match="input_size"):
        P.audit_padding(resnet_stem(), "224")
    with pytest.raises(ValueError, match="mode"):
        P.swap_padding(resnet_stem(), "mirror")
    with pytest.raises(ValueError, match="reflect"):
        P.foveation_map(conv(5, 1, 2), 2, padding_mode="reflect")
    with pytest.raises(ValueError, match="hi"):
        P.even_input_sizes(resnet_stem(), 300, 100)
    with pytest.raises(ValueError, match="near"):
        P.suggest_input_size(nn.Sequential(conv(3, 2, 1), conv(2, 2, 0)), 64, max_distance=0)
