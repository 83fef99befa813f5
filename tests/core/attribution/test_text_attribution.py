"""Token attributions at the embedding layer: completeness, padding, agreement, HTML."""

import re

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn
from visloupe.core.attribution.text import to_html, token_attributions
from visloupe.core.models.architectures import build_model


class ToyText(nn.Module):
    """Smooth bag-of-positions classifier: embedding -> tanh(linear) summed over time -> head."""

    def __init__(self, vocab: int = 20, dim: int = 6, padding_idx: int | None = 0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embedding = nn.Embedding(vocab, dim, padding_idx=padding_idx)
        self.mix = nn.Linear(dim, 8)
        self.head = nn.Linear(8, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
            if padding_idx is not None:
                self.embedding.weight[padding_idx].zero_()

    def forward_embeddings(self, e: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(e)).sum(dim=1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.forward_embeddings(self.embedding(ids))


IDS = torch.tensor([[3, 7, 1, 9, 0, 0], [5, 5, 2, 8, 4, 11]])


def test_completeness_on_a_toy_model():
    model = ToyText()
    res = token_attributions(model, IDS, n_steps=64)
    with torch.no_grad():
        logits = model(IDS)
        base = model(torch.zeros_like(IDS))
    assert torch.equal(res.target, logits.argmax(1))
    rows = torch.arange(2)
    torch.testing.assert_close(res.input_output, logits[rows, res.target])
    change = logits[rows, res.target] - base[rows, res.target]
    torch.testing.assert_close(res.scores.sum(1), change, rtol=1e-4, atol=1e-4)


def test_agrees_with_captum_ig_in_embedding_space():
    model = ToyText(seed=1)
    res = token_attributions(model, IDS, target=[2, 0], n_steps=32)
    with torch.no_grad():
        emb, base = model.embedding(IDS), model.embedding(torch.zeros_like(IDS))
    ref = IntegratedGradients(model.forward_embeddings).attribute(
        emb, baselines=base, target=torch.tensor([2, 0]), n_steps=32)
    torch.testing.assert_close(res.scores, ref.sum(2), rtol=1e-5, atol=1e-6)


def test_padding_is_exactly_zero_and_excluded_from_normalisation():
    # a pad row that is NOT zero: input x gradient would give pads a score without the mask
    model = ToyText(padding_idx=None, seed=2)
    for method in ("integrated_gradients", "input_x_gradient"):
        res = token_attributions(model, IDS, method=method, pad_id=0, n_steps=16)
        pads = IDS == 0
        assert torch.equal(res.mask, ~pads)
        assert torch.all(res.scores[pads] == 0) and torch.all(res.normalized[pads] == 0)
        assert torch.all(res.scores[~pads] != 0)
        peak = res.normalized.abs().amax(1)
        torch.testing.assert_close(peak, torch.ones(2))
        expected = res.scores[0, :4] / res.scores[0, :4].abs().max()
        torch.testing.assert_close(res.normalized[0, :4], expected)
    # input x gradient of the raw model does give the pads a score (so the mask matters)
    e = model.embedding(IDS).detach().requires_grad_(True)
    out = model.forward_embeddings(e)[torch.arange(2), res.target].sum()
    (g,) = torch.autograd.grad(out, e)
    assert (g * e).sum(2)[0, 4:].abs().min() > 0


def test_builtin_text_cnn_completeness_and_tokens():
    config = {"vocab_size": 30, "num_classes": 2, "embed_dim": 8, "kernel_sizes": [2, 3],
              "num_filters": 6, "activation": "softplus", "pooling": "lse"}
    model = build_model("TextCNN", config, seed=0)
    model.train()
    vocab = [f"w{i}" for i in range(30)]
    vocab[0] = "<pad>"
    res = token_attributions(model, IDS, vocab=vocab, n_steps=100)
    assert model.training  # mode restored
    change = res.input_output - res.baseline_output
    torch.testing.assert_close(res.scores.sum(1), change, rtol=1e-2, atol=1e-3)
    assert res.tokens[0] == ["w3", "w7", "w1", "w9", "<pad>", "<pad>"]
    html_text = res.to_html(0)
    assert html_text.count("<span") == 4 and "&lt;pad&gt;" not in html_text


def test_to_html_escapes_and_colours():
    text = to_html(["<script>", "a&b", "ok", "zero"], [2.0, -1.0, 0.5, 0.0])
    assert "<script>" not in text and "&lt;script&gt;" in text and "a&amp;b" in text
    alphas = [float(a) for a in re.findall(r"rgba\(\d+, \d+, \d+, ([0-9.]+)\)", text)]
    assert alphas == [1.0, 0.5, 0.25, 0.0]
    colours = re.findall(r"rgba\((\d+, \d+, \d+),", text)
    assert colours[0] == colours[2] != colours[1]  # positives share a colour, negatives differ
    assert "0, 150, 60" in colours[0] and "210, 30, 30" in colours[1]
    with pytest.raises(ValueError, match="scores"):
        to_html(["a", "b"], [1.0])


def test_bad_input():
    model = ToyText()
    with pytest.raises(TypeError, match="token_ids"):
        token_attributions(model, IDS.float())
    with pytest.raises(ValueError, match="method"):
        token_attributions(model, IDS, method="occlusion")
    with pytest.raises(ValueError, match="embedding"):
        token_attributions(model, IDS, embedding="nope")
    with pytest.raises(ValueError, match="target"):
        token_attributions(model, IDS, target=9)
