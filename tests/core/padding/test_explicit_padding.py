"""Explicit padding in the audit (Alsallakh et al., "Mind the Pad", ICLR 2021, on ports of
TensorFlow models): pad modules, static and dynamic TF-SAME convolutions and ``F.pad`` count as the
padding of the layer they feed; unreadable padding is stated, never reported as 0."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from visloupe.core import padding as P
from visloupe.core.padding.arithmetic import _trace


def _same(n: int, k: int, s: int) -> tuple[int, int]:
    """TF SAME by hand: output ceil(n/s), total pad (out-1)s + k - n, extra at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class StaticSame(nn.Conv2d):
    """Duck-typed like ``efficientnet_lite_pytorch``'s ``Conv2dStaticSamePadding``: own padding
    0, a ``static_padding`` ZeroPad2d fixed at construction for ``image_size``."""

    def __init__(self, cin: int, cout: int, k: int, s: int, image_size: int) -> None:
        super().__init__(cin, cout, k, s, bias=False)
        top, bottom = _same(image_size, k, s)
        self.static_padding = nn.ZeroPad2d((top, bottom, top, bottom))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.static_padding(x), self.weight, self.bias, self.stride,
                        self.padding, self.dilation, self.groups)


class Conv2dSame(nn.Conv2d):
    """Named and written like timm's dynamic ``Conv2dSame``: TF SAME on each input in forward."""

    def __init__(self, cin: int, cout: int, k: int, s: int) -> None:
        super().__init__(cin, cout, k, s, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = _same(x.shape[-1], self.kernel_size[1], self.stride[1])
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias,
                        self.stride, 0, self.dilation, self.groups)


def hand_net() -> nn.Sequential:
    return nn.Sequential(
        nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 4, 3, 2),          # 0, 1
        nn.ConstantPad2d((1, 1, 2, 2), 0.5), nn.Conv2d(4, 4, (5, 3)),  # 2, 3
        StaticSame(4, 4, 5, 2, image_size=16),                      # 4
        nn.ReflectionPad2d(1), nn.MaxPool2d(3, 2),                  # 5, 6
        nn.ReplicationPad2d((0, 0, 1, 1)), nn.ZeroPad2d((1, 1, 0, 0)),  # 7, 8
        nn.Conv2d(4, 2, 3, 1, padding=1),                           # 9
    )


def side_pads(row) -> tuple[int, int, int, int]:
    """Effective (top, bottom, left, right) of an audit row."""
    return row.pad_before_h, row.pad_after_h, row.pad_before_w, row.pad_after_w


def test_hand_built_explicit_pads_against_hand_amounts() -> None:
    """32x32 input; amounts worked out by hand:
    - 0 -> 1: ZeroPad (0,1 | 0,1), 3x3/2: padded 33, out 16, windows reach row 32: (0, 1) uneven;
    - 2 -> 3: ConstantPad 0.5 (t,b 2,2 | l,r 1,1), 5x3/1: out 16, even;
    - 4: static SAME built for 16, 5x5/2: (1, 2) -> padded 19, out 8, all used: (1, 2) uneven;
    - 5 -> 6: ReflectionPad 1, maxpool 3/2 on 8: padded 10, out 4, span 9: (1, 0) uneven;
    - 7 + 8 -> 9: Replication (t,b 1,1) then Zero (l,r 1,1) merged, plus the conv's own 1:
      (2, 2 | 2, 2) on 4x4, 3x3/1: out 6, even."""
    net = hand_net()
    frame = P.audit_padding(net, 32)
    assert list(frame.name) == ["1", "3", "4", "6", "9"]
    assert frame.in_h.tolist() == [32, 16, 16, 8, 4]  # the sizes before the explicit pads
    out = net(torch.zeros(1, 3, 32, 32))
    assert frame.out_h.tolist() == [16, 16, 8, 4, 6] and out.shape[-2:] == (6, 6)
    rows = list(frame.itertuples(index=False))
    assert [side_pads(r) for r in rows] == [(0, 1, 0, 1), (2, 2, 1, 1), (1, 2, 1, 2),
                                            (1, 0, 1, 0), (2, 2, 2, 2)]
    assert frame.explicit_pad.tolist() == [(0, 1, 0, 1), (1, 1, 2, 2), (1, 2, 1, 2),
                                           (1, 1, 1, 1), (1, 1, 1, 1)]
    assert frame.padding.tolist() == [(0, 0), (0, 0), (0, 0), (0, 0), (1, 1)]  # own argument
    assert frame.uneven.tolist() == [True, False, True, True, False]
    assert frame.leftover_h.tolist() == [0, 0, 0, 1, 0]
    assert frame.padding_mode.tolist() == ["zeros", "constant(0.5)", "zeros", "reflect",
                                           "replicate+zeros"]
    assert frame.pad_source.tolist() == [
        "ZeroPad2d 0 + conv", "ConstantPad2d 2 + conv", "static SAME (static_padding)",
        "ReflectionPad2d 5 + pool", "ReplicationPad2d 7 + ZeroPad2d 8 + conv"]
    assert (frame.limitation == "").all() and frame.attrs["limitations"] == []
    assert P.uneven_count(net, 32) == 3
    # the TF SAME reference columns describe the un-padded map
    assert (rows[2].tf_pad_before_h, rows[2].tf_pad_after_h) == _same(16, 5, 2) == (1, 2)
    # skeleton, meta device and a real forward give the same table
    real = _trace(net, torch.zeros(1, 3, 32, 32), meta=False)
    meta = _trace(net, torch.zeros(1, 3, 32, 32, device="meta"), meta=True)
    assert frame.to_dict("records") == real == meta
    # at 33 the explicit (0, 1) pad of the first conv is never reached: (0, 0), even
    first = P.audit_padding(net, 33).iloc[0]
    assert side_pads(first) == (0, 0, 0, 0) and not first.uneven


def test_dynamic_same_conv_uses_the_traced_size() -> None:
    net = nn.Sequential(Conv2dSame(3, 4, 3, 2), nn.ReLU(), Conv2dSame(4, 4, 5, 2))
    for n in (32, 33, 40, 41):
        frame = P.audit_padding(net, n)
        sizes = [n, -(-n // 2)]
        for row, m, k in zip(frame.itertuples(index=False), sizes, (3, 5), strict=True):
            before, after = _same(m, k, 2)
            assert row.in_h == m and side_pads(row) == (before, after, before, after)
            assert row.explicit_pad == (before, after, before, after)
            assert row.pad_source == "dynamic SAME (TF rule on the input)"
            assert row.uneven == (before != after) and row.limitation == ""
        assert frame.out_h.tolist() == [-(-n // 2), -(-n // 4)]
        assert net(torch.zeros(1, 3, n, n)).shape[-1] == frame.out_h.iloc[-1]
    assert P.audit_padding(net, 32).uneven.tolist() == [True, True]  # (0,1) then (1,2) on 16
    assert not P.audit_padding(net, 33).uneven.any()  # (1,1) on 33, (2,2) on 17
    assert P.suggest_input_size(net, 32) == 33
    # swap_padding turns it into a PadConv2d with the TF rule: the same function
    swapped = P.swap_padding(net, "zeros")
    assert isinstance(swapped[0], P.PadConv2d) and swapped[0].extra_pads == "same"
    x = torch.rand(2, 3, 30, 27, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(swapped(x), net(x), atol=1e-6)
    assert P.audit_padding(swapped, 32)[["pad_before_h", "pad_after_h"]].values.tolist() == \
        [[0, 1], [1, 2]]


def test_efficientnet_ports_dynamic_same_padding() -> None:
    enet = pytest.importorskip("efficientnet_lite_pytorch")
    conv = enet.utils.Conv2dDynamicSamePadding(3, 8, 3, 2, bias=False)
    row = P.audit_padding(conv, 224).iloc[0]
    assert side_pads(row) == (0, 1, 0, 1) and row.uneven and row.out_h == 112
    assert side_pads(P.audit_padding(conv, 225).iloc[0]) == (1, 1, 1, 1)


@pytest.fixture(scope="module")
def lite0():
    enet = pytest.importorskip("efficientnet_lite_pytorch")
    return {size: enet.EfficientNet.from_name("efficientnet-lite0", image_size=size).eval()
            for size in (224, 225)}


STRIDED = ["_conv_stem", "_blocks.1._depthwise_conv", "_blocks.3._depthwise_conv",
           "_blocks.5._depthwise_conv", "_blocks.11._depthwise_conv"]


def test_efficientnet_lite0_224_vs_225(lite0) -> None:
    """Built for 224, TF SAME pads (0, 1) before 3x3/2 and (1, 2) before 5x5/2 (DESIGN.md §4):
    5 of the 49 convolutions pad unevenly; built for 225 none does."""
    a224 = P.audit_padding(lite0[224], 224)
    assert len(a224) == 49 and (a224.type == "Conv2dStaticSamePadding").all()
    bad = a224[a224.uneven]
    assert list(bad.name) == STRIDED and P.uneven_count(lite0[224], 224) == 5
    assert [k for k, _ in bad.kernel] == [3, 3, 5, 3, 5]
    assert bad.in_h.tolist() == [224, 112, 56, 28, 14]
    assert [side_pads(r) for r in bad.itertuples(index=False)] == \
        [(0, 1, 0, 1), (0, 1, 0, 1), (1, 2, 1, 2), (0, 1, 0, 1), (1, 2, 1, 2)]
    assert (bad.leftover_h == 0).all()  # every pad is used: the asymmetry is TF's own
    assert (bad.pad_source == "static SAME (static_padding)").all()
    assert a224.attrs["limitations"] == []
    a225 = P.audit_padding(lite0[225], 225)
    assert len(a225) == 49 and not a225.uneven.any() and P.uneven_count(lite0[225], 225) == 0
    even = a225.set_index("name").loc[STRIDED]
    assert [side_pads(r) for r in even.itertuples(index=False)] == \
        [(1, 1, 1, 1), (1, 1, 1, 1), (2, 2, 2, 2), (1, 1, 1, 1), (2, 2, 2, 2)]
    assert even.in_h.tolist() == [225, 113, 57, 29, 15]
    # the model built for 224, as it is: only 223 (its extra bottom/right pads never reached)
    assert P.even_input_sizes(lite0[224], 215, 235) == [223]
    rebuilt = P.swap_padding(lite0[224], "keep", same="dynamic")
    assert P.even_input_sizes(rebuilt, 215, 235) == [225]
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = lite0[224](x)
        assert torch.allclose(rebuilt.eval()(x), ref, atol=1e-5)  # at 224 the TF rule agrees
        assert torch.allclose(P.swap_padding(lite0[224], "zeros").eval()(x), ref, atol=1e-5)


def test_efficientnet_lite0_advice(lite0) -> None:
    advice = P.input_size_advice(lite0[224], 224)
    assert (advice.uneven, advice.static, advice.suggested, advice.fixed,
            advice.rebuild_size, advice.limitations) == (5, 5, 223, 5, 225, ())
    text = advice.text
    assert "changing the input size alone does not change its amounts" in text
    assert ("rebuild the model for input size 225 (e.g. EfficientNet.from_name(..., "
            "image_size=225)) or swap to dynamic/symmetric padding") in text
    assert P.input_size_advice(lite0[225], 225).uneven == 0


def test_swap_padding_of_static_same_keeps_the_amounts() -> None:
    net = nn.Sequential(StaticSame(2, 3, 3, 2, image_size=16), nn.ReLU(),
                        StaticSame(3, 3, 5, 2, image_size=8))
    x = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    zeros = P.swap_padding(net, "zeros")
    assert [m.extra_pads for m in zeros if isinstance(m, P.PadConv2d)] == \
        [(0, 1, 0, 1), (1, 2, 1, 2)]
    assert zeros.state_dict().keys() == net.state_dict().keys()
    assert torch.allclose(zeros(x), net(x), atol=1e-6)
    sym = P.swap_padding(net, "symmetric")
    first = sym[0]
    manual = F.conv2d(P.pad2d(x, (0, 1, 0, 1), "symmetric"), first.weight, None, 2)
    assert first.pad_mode == "symmetric" and torch.allclose(first(x), manual, atol=1e-6)
    assert P.audit_padding(sym, 16)["explicit_pad"].tolist() == [(0, 1, 0, 1), (1, 2, 1, 2)]
    # dynamic: the TF rule on each input -- at 17 (1,1) and then (2,2) on 9
    dyn = P.swap_padding(net, "zeros", same="dynamic")
    assert [m.extra_pads for m in dyn if isinstance(m, P.PadConv2d)] == ["same", "same"]
    assert not P.audit_padding(dyn, 17).uneven.any() and P.audit_padding(net, 17).uneven.any()
    assert torch.allclose(dyn(x), net(x), atol=1e-6)  # at the built size, the same function
    assert type(net[0]) is StaticSame  # the input model is never changed
    with pytest.raises(ValueError, match="same"):
        P.swap_padding(net, "zeros", same="even")
    with pytest.raises(ValueError, match="pads"):
        P.PadConv2d(1, 1, 3, pads=(1, 2))


class OwnForward(nn.Conv2d):
    """A conv subclass that pads in its own forward: the audit cannot read it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (1, 2, 1, 2)))


class PadThenScale(nn.Module):
    """An F.pad whose output reaches the conv only through another operation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)) * 2)


class PadThenConv(PadThenScale):
    """An F.pad in an arbitrary forward that feeds the conv directly: it is read."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def test_unreadable_padding_is_a_stated_limitation(caplog) -> None:
    own = nn.Sequential(nn.Conv2d(3, 3, 3, 1, 1), OwnForward(3, 4, 5, 2))
    frame = P.audit_padding(own, 56)
    row = frame.iloc[1]
    assert frame.limitation.iloc[0] == ""
    assert "own forward" in row.limitation and "cannot be read" in row.limitation
    assert "(1, 2, 1, 2)" in row.limitation  # the pad it was seen making, for the reader
    assert frame.attrs["limitations"] == [f"1: {row.limitation}"]
    advice = P.input_size_advice(own, 56)
    assert advice.limitations == (f"1: {row.limitation}",) and "cannot be read" in advice.text
    with caplog.at_level(logging.WARNING, logger="visloupe.core.padding"):
        P.uneven_count(own, 56)
    assert "cannot be read" in caplog.text

    indirect = P.audit_padding(PadThenScale(), 32).iloc[0]
    assert indirect.explicit_pad == (0, 0, 0, 0) and indirect.in_h == 33
    assert "(0, 1, 0, 1)" in indirect.limitation and "not counted" in indirect.limitation

    direct = P.audit_padding(PadThenConv(), 32).iloc[0]
    assert direct.limitation == "" and direct.pad_source == "F.pad + conv"
    assert direct.in_h == 32 and side_pads(direct) == (0, 1, 0, 1) and direct.uneven


def test_unreadable_static_padding_module() -> None:
    conv = StaticSame(3, 4, 3, 2, image_size=32)
    conv.static_padding = nn.Upsample(scale_factor=1)  # not a pad: amounts unknown
    row = P.audit_padding(nn.Sequential(conv), 32).iloc[0]
    assert "static_padding is a Upsample" in row.limitation


def test_same_pools_in_the_audit_and_the_foveation_map() -> None:
    enet = pytest.importorskip("efficientnet_lite_pytorch")
    ref = P.foveation_map(nn.Sequential(nn.Conv2d(1, 1, 3, 1, 1), nn.ZeroPad2d((0, 1, 0, 1)),
                                        nn.AvgPool2d(3, 2), nn.Conv2d(1, 1, 3, 1, 1)), 16)
    for pool, source in ((enet.utils.MaxPool2dStaticSamePadding(3, 2, image_size=16),
                          "static SAME (static_padding)"),
                         (enet.utils.MaxPool2dDynamicSamePadding(3, 2),
                          "dynamic SAME (TF rule on the input)")):
        net = nn.Sequential(nn.Conv2d(1, 1, 3, 1, 1), pool, nn.Conv2d(1, 1, 3, 1, 1))
        row = P.audit_padding(net, 16).iloc[1]
        assert side_pads(row) == (0, 1, 0, 1) and row.uneven and row.pad_source == source
        assert torch.equal(P.foveation_map(net, 16), ref)  # the pad is no path, on either side


def test_efficientnet_lite0_foveation(lite0) -> None:
    """The skeleton's static-SAME stand-ins count the paths of the linearised full model; the
    map is flip-symmetric only for the model built for (and run at) 225."""
    from visloupe.core.padding.foveation import _path_counts, linearize

    enet = pytest.importorskip("efficientnet_lite_pytorch")
    small = enet.EfficientNet.from_name("efficientnet-lite0", image_size=33).eval()
    full = _path_counts(linearize(small), torch.ones(1, 3, 33, 33, dtype=torch.float64))
    assert torch.allclose(P.foveation_map(small, 33), full, rtol=1e-10)
    f224, f225 = P.foveation_map(lite0[224], 224), P.foveation_map(lite0[225], 225)
    # counts reach ~1e15: float64 sums in another order differ in the last bits
    assert torch.allclose(f225, f225.flip(0, 1), rtol=1e-12)
    assert not torch.allclose(f224, f224.flip(0, 1), rtol=1e-3)
