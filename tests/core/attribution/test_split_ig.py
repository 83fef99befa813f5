"""Split IG properties from the research brief (splitig.md §7), checked on analytic models."""

import math

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn
from visloupe.core.attribution.split_ig import split_integrated_gradients

SHAPE = (2, 3, 3)


class TanhScore(nn.Module):
    """f(x) = c * tanh(a * w.x): saturates after a * w.x ~ 2; one logit (and a second, -f)."""

    def __init__(self, w: torch.Tensor, a: float, c: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w.flatten().clone())
        self.a, self.c = a, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.c * torch.tanh(self.a * (x.flatten(1) @ self.w))
        return torch.stack([f, -f], dim=1)


class TanhMLP(nn.Module):
    """A smooth two-layer net with a large gain, so its logits saturate along the path."""

    def __init__(self, seed: int = 0, classes: int = 3, gain: float = 1.5) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = math.prod(SHAPE)
        self.fc1 = nn.Linear(d, 16).double()
        self.fc2 = nn.Linear(16, classes).double()
        with torch.no_grad():
            self.fc1.weight.copy_(torch.randn(16, d, generator=g, dtype=torch.float64) * gain)
            self.fc1.bias.copy_(torch.randn(16, generator=g, dtype=torch.float64))
            self.fc2.weight.copy_(torch.randn(classes, 16, generator=g, dtype=torch.float64) * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


class RowCounter(nn.Module):
    """Wraps a model and counts the rows it sees with and without gradient tracking."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.grad_rows = 0
        self.nograd_rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_rows += x.shape[0]
        else:
            self.nograd_rows += x.shape[0]
        return self.inner(x)


def _images(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=g, dtype=torch.float64)


def _captum_ig(model, x, b, target, n_steps):
    ig = IntegratedGradients(model)
    return ig.attribute(x, baselines=b, target=target, n_steps=n_steps, method="riemann_right")


def _reference_ig(model, x, b, target, n_steps):
    """Plain float64 riemann_right IG, one path point at a time (Captum builds its alphas and
    step sizes in float32, so it agrees only to ~1e-6)."""
    total = torch.zeros_like(x)
    for k in range(1, n_steps + 1):
        z = (b + k / n_steps * (x - b)).requires_grad_(True)
        out = model(z)[torch.arange(x.shape[0]), target].sum()
        total += torch.autograd.grad(out, z)[0]
    return total * (x - b) / n_steps


def test_left_plus_right_is_ig_and_completeness():
    model, x = TanhMLP(), _images(4)
    res = split_integrated_gradients(model, x, n_steps=200)
    assert torch.equal(res.left + res.right, res.ig)
    # agrees with riemann_right IG on the same path (Captum's is float32-accurate)
    ref = _reference_ig(model, x, torch.zeros_like(x), res.target, 200)
    torch.testing.assert_close(res.ig, ref, rtol=1e-10, atol=1e-12)
    ref = _captum_ig(model, x, torch.zeros_like(x), res.target, 200)
    torch.testing.assert_close(res.ig, ref, rtol=1e-5, atol=1e-5)
    # completeness up to the O(1/n) Riemann error
    change = res.output_change
    assert torch.all((res.ig.flatten(1).sum(1) - change).abs() <= 2e-2 * change.abs())
    # the predicted class was used and f(x), f(b) are its logits
    logits = model(x)
    assert torch.equal(res.target, logits.argmax(1))
    torch.testing.assert_close(res.input_output, logits.gather(1, res.target[:, None])[:, 0])


def test_left_identity_with_ig_of_scaled_input():
    model, x = TanhMLP(seed=3), _images(3, seed=4)
    b = torch.full_like(x, 0.1)
    res = split_integrated_gradients(model, x, baseline=b, ratio=0.8, n_steps=64)
    for i in range(x.shape[0]):
        k = int(res.split_index[i])
        assert 0 < k < 64
        alpha = k / 64
        assert res.alpha_star[i].item() == pytest.approx(alpha)
        x_alpha = b[i:i + 1] + alpha * (x[i:i + 1] - b[i:i + 1])
        ref = _reference_ig(model, x_alpha, b[i:i + 1], res.target[i:i + 1], k)
        torch.testing.assert_close(res.left[i:i + 1], ref, rtol=1e-10, atol=1e-12)
        ref = _captum_ig(model, x_alpha, b[i:i + 1], int(res.target[i]), k)
        torch.testing.assert_close(res.left[i:i + 1], ref, rtol=1e-5, atol=1e-5)


def test_split_point_invariant_and_partial_completeness():
    model, x = TanhMLP(seed=5), _images(4, seed=6)
    res = split_integrated_gradients(model, x, ratio=0.9, n_steps=400)
    p = res.progress
    for i in range(x.shape[0]):
        k = int(res.split_index[i])
        assert p[i, k] > 0.9
        assert torch.all(p[i, :k] <= 0.9)  # first crossing
        f_split = res.path_outputs[i, k - 1] if k > 0 else res.baseline_output[i]
        change = res.output_change[i].abs()
        assert abs(res.left[i].sum() - (f_split - res.baseline_output[i])) < 2e-2 * change
        assert abs(res.right[i].sum() - (res.input_output[i] - f_split)) < 2e-2 * change
    # path diagnostics: the last path point is x itself, the grad norms are those of the path
    torch.testing.assert_close(res.path_outputs[:, -1], res.input_output)
    z = x[:1].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(z)[0, res.target[0]], z)
    torch.testing.assert_close(res.grad_norms[0, -1], g.norm())


def test_linear_model_is_exact():
    d = math.prod(SHAPE)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(d, 2)).double()
    x = _images(2, seed=7)
    b = _images(1, seed=8)
    n = 50
    res = split_integrated_gradients(lin, x, target=1, baseline=b, ratio=0.73, n_steps=n)
    w = lin[1].weight[1].view(SHAPE)
    # progress is exactly alpha, so the split is the first k with (k+1)/n > 0.73
    assert res.split_index.tolist() == [36, 36]
    for i in range(2):
        full = w * (x[i] - b[0])
        torch.testing.assert_close(res.left[i], 36 / n * full)
        torch.testing.assert_close(res.right[i], (1 - 36 / n) * full)


@pytest.mark.parametrize("a", [0.7, 4.0])
def test_closed_form_split_of_saturating_tanh(a):
    g = torch.Generator().manual_seed(9)
    w = torch.randn(*SHAPE, generator=g, dtype=torch.float64)
    model = TanhScore(w, a=a, c=2.5).double()
    x = _images(3, seed=10)
    x[2] = -x[2] * torch.sign(w)  # s < 0: the logit falls, f(x) < f(b)
    r, n = 0.9, 500
    res = split_integrated_gradients(model, x, target=0, ratio=r, n_steps=n)
    for i in range(3):
        s = float((w * x[i]).sum())
        exact = math.atanh(r * math.tanh(a * abs(s))) / (a * abs(s))
        assert int(res.split_index[i]) == math.floor(exact * n)
        assert abs(res.alpha_star[i].item() - exact) < 1 / n
        # analytic partial completeness: left sums to F(alpha*) - F(0), up to the right-Riemann
        # error of a monotone integrand, at most max|F'| / n = c * a * |s| / n
        f_star = 2.5 * math.tanh(a * s * res.alpha_star[i].item())
        assert abs(res.left[i].sum().item() - f_star) <= 2.5 * a * abs(s) / n
    assert res.input_output[2] < res.baseline_output[2]


def test_no_double_counting_without_crossing():
    model, x = TanhMLP(seed=11), _images(2, seed=12)
    ref = split_integrated_gradients(model, x, ratio=0.5, n_steps=40)
    res = split_integrated_gradients(model, x, ratio=1.5, n_steps=40)
    assert res.split_index.tolist() == [40, 40]
    assert torch.count_nonzero(res.right) == 0
    assert torch.equal(res.ig, res.left)
    torch.testing.assert_close(res.ig, ref.ig, rtol=1e-12, atol=1e-12)  # not 2 * IG
    # f(x) == f(b): no progress at all, still no double counting
    flat = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), 2)).double()
    with torch.no_grad():
        flat[1].weight.zero_()
    const = split_integrated_gradients(flat, x, ratio=0.9, n_steps=10)
    assert const.split_index.tolist() == [10, 10]
    assert torch.count_nonzero(const.right) == 0

    class Bump(nn.Module):  # F(alpha) = S^2 (alpha - alpha^2): f(x) == f(0) but the path moves
        def forward(self, z):
            s = z.flatten(1).sum(1) / scale
            return torch.stack([s - s * s, s], dim=1)

    x_bump = torch.full((1, *SHAPE), 0.5)  # sums to 9 exactly, so f(x) == f(0) == 0 exactly
    scale = 9.0
    bump = split_integrated_gradients(Bump(), x_bump, target=0, ratio=0.5, n_steps=10)
    assert bump.path_outputs.abs().max() > 0.2 and bump.split_index.tolist() == [10]
    assert torch.count_nonzero(bump.right) == 0


def test_ratio_zero_puts_everything_right():
    # monotone path (w.x > 0): the first step already makes progress
    model = TanhScore(torch.ones(SHAPE, dtype=torch.float64), a=1.0, c=1.0).double()
    x = _images(2, seed=14)
    res = split_integrated_gradients(model, x, target=0, ratio=0.0, n_steps=30)
    assert res.split_index.tolist() == [0, 0]
    assert torch.count_nonzero(res.left) == 0
    assert torch.equal(res.right, res.ig)
    # a path that first dips below f(b) splits at its first point of positive progress
    mlp = TanhMLP(seed=13)
    res = split_integrated_gradients(mlp, _images(2, seed=14), ratio=0.0, n_steps=30)
    first = [int((p > 0).nonzero()[0]) for p in res.progress]
    assert res.split_index.tolist() == first and max(first) > 0


def test_batch_equals_one_by_one_and_chunking():
    model, x = TanhMLP(seed=15), _images(5, seed=16)
    batch = split_integrated_gradients(model, x, n_steps=60, batch_size=37)
    for i in range(5):
        one = split_integrated_gradients(model, x[i:i + 1], n_steps=60)
        assert one.split_index.item() == batch.split_index[i].item()
        torch.testing.assert_close(one.left[0], batch.left[i], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(one.right[0], batch.right[i], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(one.path_outputs[0], batch.path_outputs[i])


def test_resplit_equals_recompute_without_model_calls():
    model = RowCounter(TanhMLP(seed=17))
    x = _images(3, seed=18)
    res = split_integrated_gradients(model, x, ratio=0.9, n_steps=50, batch_size=32)
    for r in (0.3, 0.6, 0.95, 1.5, 0.0):
        calls = (model.grad_rows, model.nograd_rows)
        moved = res.resplit(r)
        assert (model.grad_rows, model.nograd_rows) == calls
        fresh = split_integrated_gradients(model, x, ratio=r, n_steps=50, batch_size=32)
        assert torch.equal(moved.split_index, fresh.split_index)
        for part in ("left", "right", "ig"):
            assert torch.equal(getattr(moved, part), getattr(fresh, part)), (r, part)
    # without the stored path the numbers are the same, but resplit refuses
    lean = split_integrated_gradients(model, x, ratio=0.9, n_steps=50, batch_size=32,
                                      store_path=False)
    assert lean.cumulative_grads is None
    assert torch.equal(lean.left, res.left) and torch.equal(lean.right, res.right)
    with pytest.raises(ValueError, match="store_path"):
        lean.resplit(0.5)


def test_model_passes_hit_the_lower_bound():
    model = RowCounter(TanhMLP(seed=19))
    x = _images(3, seed=20)
    split_integrated_gradients(model, x, n_steps=70, batch_size=50)
    assert model.grad_rows == 3 * 70  # n_steps forward+backward rows per image, no more
    assert model.nograd_rows == 2 * 3  # f(x) and f(b), forward only


def test_model_state_untouched_and_tuple_outputs():
    inner = TanhMLP(seed=21)

    class TupleOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(self.inner(x)), "extra"

    model = TupleOut().train()
    x = _images(2, seed=22)
    res = split_integrated_gradients(model, x, n_steps=20)
    plain = split_integrated_gradients(inner, x, n_steps=20)
    torch.testing.assert_close(res.left, plain.left)  # dropout was off (eval) during the call
    assert model.training and model.drop.training  # ...and the mode is restored
    assert all(p.grad is None for p in model.parameters())


def test_bad_input_messages():
    model, x = TanhMLP(), _images(2)
    with pytest.raises(ValueError, match="inputs"):
        split_integrated_gradients(model, x[0])
    with pytest.raises(TypeError, match="inputs"):
        split_integrated_gradients(model, x.long())
    with pytest.raises(ValueError, match="finite"):
        split_integrated_gradients(model, x.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="target"):
        split_integrated_gradients(model, x, target=7)
    with pytest.raises(ValueError, match="target"):
        split_integrated_gradients(model, x, target=[0, 1, 2])
    with pytest.raises(ValueError, match="ratio"):
        split_integrated_gradients(model, x, ratio=-0.1)
    with pytest.raises(ValueError, match="n_steps"):
        split_integrated_gradients(model, x, n_steps=0)
    with pytest.raises(ValueError, match="baseline"):
        split_integrated_gradients(model, x, baseline=torch.zeros(3, 2, 2, dtype=x.dtype))
    with pytest.raises(ValueError, match="batch_size"):
        split_integrated_gradients(model, x, batch_size=0)


def test_registered_method_serves_explain():
    from visloupe.core.attribution import explain
    from visloupe.core.attribution.registry import method_spec

    spec = method_spec("split_ig")
    assert spec.multiplies_by_input and spec.defaults["ratio"] == 0.9
    model, x = TanhMLP(seed=23), _images(2, seed=24)
    res = split_integrated_gradients(model, x, ratio=0.7, n_steps=40)
    for part in ("left", "right", "ig"):
        maps = explain(model, x, method="split_ig", ratio=0.7, n_steps=40, part=part)
        torch.testing.assert_close(maps, getattr(res, part).sum(1))
