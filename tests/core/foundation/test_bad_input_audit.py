"""Bad input found by an audit of the public API (issue 14, "Bad input"): each of these gave a
raw library error, blamed the wrong argument, or was accepted silently with a wrong result;
each now raises an error that names the argument. 45 of the 49 cases failed on the code before
the change that named them (the other four already raised the right error by another path).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from visloupe.core import attribution, data, evaluation, jobs, models, padding
from visloupe.widgets import (
    DatasetExplorer,
    PaddingInspector,
    SaliencyExplorer,
    SanityCheckExplorer,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    model, pre = models.pretrained("shapes-cnn")
    ds = data.load_builtin("shapes", split="test").select(range(4))
    x = torch.stack([pre(im) for im in ds["image"]])
    return model, pre, ds, x


def cases(model, pre, ds, x):
    inf = evaluation.infidelity
    sens = evaluation.max_sensitivity
    return [
        # models
        (lambda: models.pretrained("shapes-cnn", retrain="no"), TypeError, "retrain"),
        (lambda: models.predict(model, x[0]), ValueError, "inputs: expected a batch"),
        (lambda: models.predict(model, x.tolist()), TypeError, "inputs: expected a tensor"),
        (lambda: models.predict(model, x[:, :1]), ValueError, "inputs: .*3 input channel"),
        (lambda: models.predict(model, torch.full_like(x, math.nan)), ValueError, "finite"),
        (lambda: models.predict(model, x[:0]), ValueError, "non-empty batch"),
        (lambda: models.load_model("/no/such.safetensors"), ValueError, "does not exist"),
        # attribution
        (lambda: attribution.explain_predicted(model, x, "saliency", target=1), TypeError,
         "target: explain_predicted"),
        (lambda: attribution.explain(model, x, torch.zeros(2, 2, dtype=torch.long),
                                     "saliency"), ValueError, "target: expected an int or a 1-D"),
        # robustness
        (lambda: inf(model, x, "saliency", 0, seed=None, n_samples=2), TypeError, "seed"),
        (lambda: inf(model, x, "saliency", 0, seed=1.5, n_samples=2), TypeError, "seed"),
        (lambda: sens(model, x, "saliency", 0, seed=2.7, n_samples=2), TypeError, "seed"),
        (lambda: inf(model, x, "saliency", 0, radius=0.0, n_samples=2), ValueError, "radius"),
        (lambda: sens(model, x, "saliency", 0, radius=0.0, n_samples=2), ValueError, "radius"),
        (lambda: sens(model, x, "saliency", 0, norm="l7", n_samples=2), ValueError, "norm"),
        (lambda: sens(model, x, "saliency", 0, norm=0, n_samples=2), ValueError, "norm"),
        # smoothing check
        (lambda: evaluation.smoothing_check({"o": model}, x[:2], ["saliency"],
                                            labels=torch.tensor([0, 1, 2]), n_samples=2),
         ValueError, "labels"),
        (lambda: evaluation.smoothing_check({"o": model}, x[:2, :1], ["saliency"], n_samples=2),
         ValueError, "inputs: .*channel"),
        (lambda: evaluation.smoothing_check({"o": model}, x[:2].tolist(), ["saliency"],
                                            n_samples=2), TypeError, "inputs"),
        (lambda: evaluation.smoothing_check({"o": model}, x[:2], ["saliency"],
                                            labels=torch.tensor([7, 9]), n_samples=2),
         ValueError, "labels: expected class indices in"),
        (lambda: evaluation.smoothing_check({"o": model}, x[:2], ["saliency"],
                                            sensitivity="no"), TypeError, "sensitivity"),
        # randomisation
        (lambda: evaluation.run_randomization(model, x[:2], ["saliency"], layers=["head"],
                                              progress=5), TypeError, "progress"),
        (lambda: evaluation.randomization_check(model, x[:2], ["saliency"], layers=["head"],
                                                aggregate="no"), TypeError, "aggregate"),
        # cose / compare_methods
        (lambda: evaluation.pixel_data(ds, pre, indices=[0, 10]), ValueError,
         "indices: .*out of range"),
        (lambda: evaluation.pixel_data(ds, pre, indices=[0, 0, 0]), ValueError, "repeats"),
        (lambda: evaluation.pixel_data(ds, pre, indices=[0, 1], n_images=1), ValueError,
         "not both"),
        (lambda: evaluation.pixel_data(ds, pre, indices=[0.0, 1.0]), TypeError, "indices"),
        (lambda: evaluation.compare_methods(model, ds, ["saliency"], preprocess=pre,
                                            metrics=["infidelity"],
                                            infidelity_kwargs={"foo": 1}),
         ValueError, "infidelity_kwargs: unknown"),
        # padding
        (lambda: padding.conv_out(8, 3, 0), ValueError, "s: expected"),
        (lambda: padding.tf_same_padding(8, 3, 0), ValueError, "s: expected"),
        (lambda: padding.suggest_input_size(model, 33, max_distance=-1), ValueError,
         "max_distance"),
        (lambda: padding.input_size_advice(model, 33, zero_padding="no"), TypeError,
         "zero_padding"),
        (lambda: padding.blind_spot_probe(model, 32, max_positions=0), ValueError,
         "max_positions"),
        # data: labels given with a list of images were dropped in silence
        (lambda: data.as_image_source(list(ds["image"]), labels=list("abcd")), TypeError,
         "labels: expected class indices"),
        (lambda: data.as_image_source(list(ds["image"]), labels=[0.5] * 4), TypeError,
         "labels"),
        (lambda: data.as_image_source(list(ds["image"]), labels=[-3] * 4), TypeError,
         "labels"),
        (lambda: data.as_image_source(list(ds["image"]), labels=[9] * 4,
                                      class_names=["a", "b"]), ValueError, "out of range"),
        (lambda: data.as_image_source(ds, class_names="abcde"), TypeError, "class_names"),
        (lambda: data.as_image_source(ds, class_names=["a", "a", "b", "c", "d"]), ValueError,
         "distinct"),
        # jobs
        (lambda: jobs.shard_ranges(10, 0), ValueError, "shard_size"),
        # widgets
        (lambda: SaliencyExplorer(model, ds, ["saliency"], preprocess=pre,
                                  class_names=["a", "b"]), ValueError, "class_names: expected 5"),
        (lambda: SaliencyExplorer(model, ds, ["saliency"], preprocess=pre,
                                  class_names="abcde"), TypeError, "class_names"),
        (lambda: SaliencyExplorer({"a": model, "b": torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(3072, 3))}, ds, ["saliency"], preprocess=pre),
         ValueError, "models: expected the same classes"),
        (lambda: SaliencyExplorer(model, ds, ["saliency"], preprocess=pre, auto_explain="no"),
         TypeError, "auto_explain"),
        (lambda: SaliencyExplorer(model, ds, ["saliency"], preprocess=pre, ids=list("abcd")),
         TypeError, "ids"),
        (lambda: SanityCheckExplorer(model, ds, ["saliency"], preprocess=pre, n_inputs=2,
                                     smoothed="yes"), TypeError, "smoothed"),
        (lambda: PaddingInspector(model, sizes=[]), ValueError, "sizes"),
        (lambda: DatasetExplorer(ds, layer="head"), ValueError, "layer"),
        (lambda: DatasetExplorer(ds, seed=None), TypeError, "seed"),
    ]


def test_bad_inputs_name_the_argument(setup):
    failures = []
    for k, (call, kind, pattern) in enumerate(cases(*setup)):
        try:
            call()
        except kind as err:
            import re

            if not re.search(pattern, str(err)):
                failures.append(f"case {k}: {kind.__name__} {err} does not match {pattern!r}")
        except Exception as err:  # noqa: BLE001 - collected, reported together
            failures.append(f"case {k}: expected {kind.__name__} ({pattern}), got "
                            f"{type(err).__name__}: {str(err)[:160]}")
        else:
            failures.append(f"case {k}: expected {kind.__name__} ({pattern}), nothing raised")
    assert not failures, "\n".join(failures)


def test_the_shipped_weights_are_untouched_by_a_bad_retrain_flag(setup, tmp_path):
    """``retrain="no"`` used to read as True: it retrained into the cache, which then shadowed
    the shipped weights for every later call."""
    with pytest.raises(TypeError, match="retrain"):
        models.pretrained("shapes-cnn", retrain="no", cache_dir=tmp_path)
    assert not (tmp_path / "shapes-cnn").exists()
    assert np.isfinite(float(models.predict(setup[0], setup[3]).sum()))
