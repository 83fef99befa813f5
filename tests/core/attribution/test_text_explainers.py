"""The explainer contract for token-id models lives in core/attribution (one contract for images
and text): text_explainer / resolve_text_explainers, the same objects the evaluation face shows."""

from __future__ import annotations

import pytest
import torch
from visloupe.core import attribution, evaluation
from visloupe.core.attribution import (
    TextExplainer,
    check_token_ids,
    is_token_ids,
    resolve_text_explainers,
    text_explainer,
)
from visloupe.core.models import TextCNN


def test_text_explainers_resolve_and_run() -> None:
    assert evaluation.text_explainer is attribution.text_explainer
    assert evaluation.TextExplainer is TextExplainer
    model = TextCNN(20, 2, embed_dim=8, kernel_sizes=(2,), num_filters=3)
    model.init_weights(torch.Generator().manual_seed(0))
    ids = torch.tensor([[3, 4, 5, 0], [7, 2, 0, 0]])
    fns = resolve_text_explainers(["saliency", "saliency", text_explainer("input_x_gradient")])
    assert list(fns) == ["saliency", "saliency (2)", "input_x_gradient"]
    for fn in fns.values():
        scores = fn(model.eval(), ids, 1)
        assert scores.shape == ids.shape and (scores[ids == 0] == 0).all()
    assert is_token_ids(ids) and not is_token_ids(ids.float())
    with pytest.raises(TypeError, match="inputs: expected integer token ids"):
        check_token_ids(ids.float(), "inputs")
    with pytest.raises(ValueError, match="text methods"):
        resolve_text_explainers("grad_cam")
