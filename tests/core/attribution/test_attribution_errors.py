"""Bad input gets clear errors; the explainer contract (resolve_explainer/s); the registry API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from visloupe.core.attribution import (
    Explainer,
    MethodSpec,
    ParamSpec,
    available_methods,
    explain,
    method_spec,
    register_method,
    resolve_explainer,
    resolve_explainers,
    resolve_targets,
)
from visloupe.core.attribution.registry import METHODS


class Net(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


X = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("target", "error", "pattern"),
    [
        (3, ValueError, r"class indices in \[0, 2\] .*3 outputs.*got \[3\]"),
        ([0, -1], ValueError, r"got \[-1\]"),
        ([0, 1, 2], ValueError, r"one class index per image \(2\), got 3"),
        (1.5, TypeError, "target: expected None, an int"),
        (torch.tensor([0.0, 1.0]), TypeError, "integer class indices, got dtype torch.float32"),
        ([0, "a"], TypeError, "sequence of ints"),
        (True, TypeError, "int class index"),
    ],
)
def test_bad_targets(net, target, error, pattern):
    with pytest.raises(error, match=pattern):
        explain(net, X, target, "saliency")


def test_resolve_targets_forms():
    assert resolve_targets(2, 3, 4).tolist() == [2, 2, 2]
    assert resolve_targets(np.array([1, 0]), 2, 4).tolist() == [1, 0]
    assert resolve_targets(torch.tensor(3), 2, 4).tolist() == [3, 3]
    assert resolve_targets((0, 1), 2, 2).dtype == torch.long


@pytest.mark.parametrize(
    ("inputs", "error", "pattern"),
    [
        (X[0], ValueError, r"\(N, C, H, W\), got shape \(3, 8, 8\).*unsqueeze"),
        (X[None], ValueError, r"got shape \(1, 2, 3, 8, 8\)"),
        (X[:, :1], ValueError, r"expects 3 input channel\(s\), got 1"),
        (X.permute(0, 2, 3, 1), ValueError, r"got 8 .*channels-last \(N, H, W, C\)\? .*"
                                            r"x\.permute\(0, 3, 1, 2\)"),
        ((X * 255).to(torch.uint8), TypeError, r"float tensor, got dtype torch.uint8.*preprocess"),
        (X.tolist(), TypeError, "got list"),
        (X[:0], ValueError, "empty batch"),
    ],
)
def test_bad_inputs(net, inputs, error, pattern):
    with pytest.raises(error, match=pattern):
        explain(net, inputs, 0, "saliency")


def test_nan_inputs(net):
    bad = X.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="inputs: expected finite values, got 1 NaN/inf"):
        explain(net, bad, 0)


def test_numpy_inputs_accepted(net):
    torch.testing.assert_close(explain(net, X.numpy(), 0, "saliency"),
                               explain(net, X, 0, "saliency"))


def test_unknown_method_and_params(net):
    with pytest.raises(ValueError, match=r"unknown attribution method 'integrated_gradient' "
                                         r"\(did you mean \['integrated_gradients'"):
        explain(net, X, 0, "integrated_gradient")
    with pytest.raises(ValueError, match=r"available: \['saliency'"):
        method_spec("lime")
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['steps'\].*'n_steps'"):
        explain(net, X, 0, "integrated_gradients", steps=5)
    with pytest.raises(ValueError, match=r"n_steps \(method 'integrated_gradients'\): expected a "
                                         r"value in \[1, 1000\], got 0"):
        explain(net, X, 0, n_steps=0)
    with pytest.raises(TypeError, match="n_steps.*expected an int, got 2.5"):
        explain(net, X, 0, n_steps=2.5)
    with pytest.raises(ValueError, match=r"quadrature.*expected one of \['gausslegendre'"):
        explain(net, X, 0, "integrated_gradients", quadrature="simpson")
    with pytest.raises(TypeError, match="relu.*expected a bool"):
        explain(net, X, 0, "grad_cam", relu=1)


def test_bad_baseline_reduce_batch_size_model(net):
    with pytest.raises(ValueError, match=r"baseline: expected shape .*got \(3, 4, 4\)"):
        explain(net, X, 0, baseline=torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="baseline: expected None, 'zeros', 'mean'"):
        explain(net, X, 0, baseline="blur")
    with pytest.raises(ValueError, match=r"reduce: expected one of \['sum'"):
        explain(net, X, 0, reduce="mean")
    with pytest.raises(ValueError, match="batch_size: expected None or a positive int, got 0"):
        explain(net, X, 0, batch_size=0)
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module, got function"):
        explain(lambda x: x, X, 0)


def test_baseline_forms_give_ig_completeness(net):
    from visloupe.core.attribution import attribute

    for baseline in (0.5, "mean", torch.full((3, 8, 8), 0.5), torch.full((1, 3, 8, 8), 0.5)):
        attr = attribute(net, X, 1, baseline=baseline, n_steps=32)
        b = attr.new_zeros(X.shape)
        b += 0.5 if not isinstance(baseline, str) else X.mean(dim=(2, 3), keepdim=True)
        with torch.no_grad():
            delta = net(X)[:, 1] - net(b)[:, 1]
        torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), delta, rtol=0.02, atol=1e-3)


def test_model_with_wrong_output_shape():
    class Bad(nn.Module):
        def forward(self, x):
            return x.sum()

    with pytest.raises(ValueError, match=r"logits of shape \(N, num_classes\), got \(\)"):
        explain(Bad(), X, None, "saliency")


def test_register_method_and_specs():
    with pytest.raises(ValueError, match="already registered"):
        register_method(METHODS["saliency"])
    with pytest.raises(TypeError, match="expected a MethodSpec"):
        register_method("saliency")
    with pytest.raises(ValueError, match="kind: expected"):
        ParamSpec("x", 1, "integer")
    with pytest.raises(ValueError, match=r"x: expected a value in \[0, 1\], got 2"):
        ParamSpec("x", 2, "int", 0, 1)

    def doubled(forward, inputs, target, *, baseline, layer, scale=2.0):
        return scale * (inputs - baseline)

    spec = MethodSpec("test_doubled", "Doubled", doubled,
                      params=(ParamSpec("scale", 2.0, "float", 0.0, 10.0, 0.5),),
                      multiplies_by_input=True)
    try:
        register_method(spec)
        assert "test_doubled" in available_methods()
        maps = explain(Net(), X, 0, "test_doubled", scale=3.0)
        torch.testing.assert_close(maps, 3.0 * X.sum(dim=1))
    finally:
        METHODS.pop("test_doubled", None)


def test_resolve_explainer_contract(net):
    e = resolve_explainer("integrated_gradients", n_steps=8, reduce="abs_sum")
    assert isinstance(e, Explainer) and e.name == "integrated_gradients"
    torch.testing.assert_close(e(net, X, 0), explain(net, X, 0, n_steps=8, reduce="abs_sum"))
    assert hash(e.key) == hash(resolve_explainer("integrated_gradients", n_steps=8,
                                                 reduce="abs_sum").key)
    with pytest.raises(ValueError, match="has no parameter"):
        resolve_explainer("saliency", n_steps=3)

    def gradient_norm(model, inputs, target):
        return explain(model, inputs, target, "saliency", reduce="l2")

    g = resolve_explainer(gradient_norm)
    assert g.name == "gradient_norm"
    torch.testing.assert_close(g(net, X, 1), explain(net, X, 1, "saliency", reduce="l2"))

    def full_shape(model, inputs, target):
        return inputs

    with pytest.raises(ValueError, match=r"expected maps of shape \(N, H, W\) = \(2, 8, 8\), "
                                         r"got \(2, 3, 8, 8\)"):
        resolve_explainer(full_shape)(net, X, 0)
    with pytest.raises(TypeError, match="explainer: expected a registry method name"):
        resolve_explainer(42)


def test_resolve_explainers_forms():
    def mine(model, inputs, target):
        return inputs.sum(dim=1)

    d = resolve_explainers(["saliency", "saliency", mine])
    assert list(d) == ["saliency", "saliency (2)", "mine"]
    d = resolve_explainers({"IG-8": ("integrated_gradients", {"n_steps": 8}), "custom": mine})
    assert list(d) == ["IG-8", "custom"] and dict(d["IG-8"].kwargs) == {"n_steps": 8}
    assert list(resolve_explainers("grad_cam")) == ["grad_cam"]
    with pytest.raises(ValueError, match="at least one explainer"):
        resolve_explainers([])


@pytest.mark.parametrize("method", ["occlusion", "grad_cam", "integrated_gradients", "deeplift"])
def test_target_out_of_range_for_every_method_family(net, method):
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 2\].*got \[7\]"):
        explain(net, X, [0, 7], method)


def test_tuple_and_dict_outputs_are_adapted(net):
    class TupleOut(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x), torch.zeros(1)

    class DictOut(TupleOut):
        def forward(self, x):
            return {"logits": self.inner(x)}

    ref = explain(net, X, 1, "grad_cam", layer="act")
    for wrapper in (TupleOut(net), DictOut(net)):
        torch.testing.assert_close(explain(wrapper, X, 1, "grad_cam", layer="inner.act"), ref)
        torch.testing.assert_close(explain(wrapper, X, None, "saliency"),
                                   explain(net, X, None, "saliency"))


def test_a_preprocess_passed_as_explainer_is_named_everywhere() -> None:
    """``(model, inputs, explainers)`` with a preprocess in third place: every consumer of the
    explainer contract refuses it the same way (core, not one widget)."""
    from visloupe.core.evaluation import cose, run_randomization
    from visloupe.core.models import ImagePreprocess

    model, x = Net().eval(), torch.rand(2, 3, 16, 16)
    for misplaced in (ImagePreprocess(16), lambda image: torch.zeros(3, 16, 16)):
        for call, args in ((resolve_explainers, (misplaced,)),
                           (run_randomization, (model, x, misplaced)),
                           (cose, (model, x, misplaced))):
            with pytest.raises(TypeError, match="explainer: got .*looks like a preprocess"):
                call(*args)
    assert resolve_explainers(lambda m, inputs, target: inputs[:, 0])  # a real callable passes


def test_inputs_of_the_wrong_size_name_the_inputs() -> None:
    """A model built for 32x32 given 64x64: the error names ``inputs`` and the shape, in
    predict, explain and the metrics, not torch's matrix-multiply message alone."""
    from visloupe.core.evaluation import infidelity
    from visloupe.core.models import predict

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(),
                          nn.Linear(4 * 32 * 32, 5)).eval()
    x = torch.rand(2, 3, 64, 64)
    for call in (lambda: predict(model, x), lambda: explain(model, x, 0, "saliency"),
                 lambda: explain(model, x, 0, "integrated_gradients"),  # a bigger inner batch
                 lambda: explain(model, x, 0, "grad_cam"),  # its layer search runs first
                 lambda: infidelity(model, x, "saliency", n_samples=2)):
        with pytest.raises(ValueError, match=r"inputs: Sequential cannot run on inputs of "
                                             r"shape \(3, 64, 64\) per item \(.*mat1 and mat2"):
            call()

    class NotContiguous(nn.Module):  # a bug at any input size: passed on unchanged
        def forward(self, x):
            return x.transpose(2, 3).view(x.shape[0], -1)[:, :5]

    with pytest.raises(RuntimeError, match="^view size is not compatible"):
        predict(NotContiguous(), x)

    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("planted failure")

    with pytest.raises(RuntimeError, match="^planted"):  # other errors pass unchanged
        predict(Broken(), x)
