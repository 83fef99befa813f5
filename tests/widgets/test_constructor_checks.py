"""Every widget checks batch_size and seed when it is built, naming the argument, instead of
failing (or silently misbehaving) at the first computation."""

from __future__ import annotations

import pytest
from visloupe.core import data, models
from visloupe.widgets import (
    COSEExplorer,
    DatasetExplorer,
    SaliencyExplorer,
    SanityCheckExplorer,
    SplitIGExplorer,
)


@pytest.fixture(scope="module")
def model_and_data():
    model, _ = models.pretrained("shapes-cnn")
    return model, data.load_builtin("shapes", "test").select(range(3))


@pytest.mark.parametrize(("widget", "kwargs", "error", "match"), [
    (SaliencyExplorer, {"batch_size": -1}, ValueError, "batch_size: expected None or a positive"),
    (SplitIGExplorer, {"batch_size": "8"}, ValueError, "batch_size: expected None or a positive"),
    (COSEExplorer, {"batch_size": 0}, ValueError, "batch_size: expected None or a positive"),
    (COSEExplorer, {"seed": 1.5}, TypeError, "seed: expected an int, got float"),
    (SanityCheckExplorer, {"seed": "0"}, TypeError, "seed: expected an int, got str"),
    (DatasetExplorer, {"seed": "x"}, TypeError, "seed: expected an int, got str"),
])
def test_bad_batch_size_or_seed_is_named_at_construction(model_and_data, widget, kwargs, error,
                                                         match) -> None:
    model, ds = model_and_data
    with pytest.raises(error, match=match):
        if widget is DatasetExplorer:
            widget(ds, model=model, **kwargs)
        else:
            widget(model, ds, **kwargs)
