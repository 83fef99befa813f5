"""visloupe.core.evaluation: how far to trust a saliency map.

- COSE (Daroya, Sun, Maji, ICCV-W 2023): :func:`cose` scores consistency under transformations
  that keep the prediction and sensitivity when it changes; :func:`compare_methods` tabulates it
  with :func:`infidelity` and :func:`max_sensitivity` (Yeh et al., NeurIPS 2019, via Captum).
- Torch-only augmentations with exact inverses and validity masks (:mod:`.transforms`; PIL's
  uint8 arithmetic for 8-bit data: :func:`is_8bit`, :func:`quantize_8bit`), and the SSIM COSE
  uses (:func:`ssim`). COSE compares maps scaled as the paper's code does (``postprocess=``).
- Reference explainers for calibration: constant, input intensity, uniform noise.
- Faithfulness: :func:`abpc` (area between perturbation curves, Split IG paper).
- Sanity checks (Adebayo et al. 2018; Kokhlikyan et al., arXiv:2106.07475):
  :func:`randomization_check` (cascading / independent re-initialisation; Spearman ±abs, SSIM,
  HOG; images and token ids; in :mod:`.sanity`), :func:`input_multiplier_summary`;
  :func:`smoothing_check` (:mod:`.smoothing`) compares infidelity / max-sensitivity of a model
  and its :func:`smooth_model` copy (ReLU -> Softplus, max pooling -> LogSumExp; the surgery is
  :mod:`visloupe.core.models.surgery`); :func:`text_infidelity` and
  :func:`multiplied_perturbation` (:mod:`.robustness`); ``text_explainer`` is re-exported from
  :mod:`visloupe.core.attribution`.
- Localisation against ground-truth object masks: :func:`energy_in_mask`, :func:`pointing_game`.
"""

from ..attribution.text import TextExplainer, text_explainer  # the explainer contract, text side
from .cose import COSEReport, PairView, PixelData, compare_methods, cose, explain_pair, pixel_data
from .faithfulness import ABPCResult, abpc
from .localisation import PointingGameResult, as_masks, energy_in_mask, pointing_game
from .pixels import MeanStd, model_view, pixel_inputs, split_preprocess
from .reference import (
    ConstantExplainer,
    InputIntensityExplainer,
    UniformNoiseExplainer,
    reference_explainers,
)
from .robustness import (
    infidelity,
    linf_perturbation,
    max_sensitivity,
    multiplied_perturbation,
    noise_perturbation,
    text_infidelity,
)
from .sanity import (
    RandomizationResult,
    aggregate_records,
    input_multiplier_summary,
    randomizable_layers,
    randomization_check,
    randomized_models,
    run_randomization,
)
from .similarity import MEASURE_TITLES, compare_maps, hog_similarity, spearman, ssim_similarity
from .smoothing import LSEPool2d, SmoothingReport, smooth_model, smoothing_check
from .ssim import ssim, ssim_map
from .transforms import (
    GEOMETRIC,
    PHOTOMETRIC,
    TRANSFORMS,
    apply_transform,
    describe_magnitude,
    invert_map,
    is_8bit,
    magnitude_bins,
    quantize_8bit,
    sample_magnitudes,
    transform_spec,
    validity_mask,
)

__all__ = [
    "MeanStd",
    "model_view",
    "pixel_inputs",
    "split_preprocess",
    "ABPCResult",
    "COSEReport",
    "ConstantExplainer",
    "GEOMETRIC",
    "InputIntensityExplainer",
    "LSEPool2d",
    "PHOTOMETRIC",
    "PairView",
    "PixelData",
    "PointingGameResult",
    "RandomizationResult",
    "SmoothingReport",
    "TRANSFORMS",
    "TextExplainer",
    "UniformNoiseExplainer",
    "abpc",
    "aggregate_records",
    "apply_transform",
    "as_masks",
    "compare_maps",
    "compare_methods",
    "cose",
    "energy_in_mask",
    "explain_pair",
    "hog_similarity",
    "MEASURE_TITLES",
    "infidelity",
    "input_multiplier_summary",
    "invert_map",
    "is_8bit",
    "linf_perturbation",
    "magnitude_bins",
    "max_sensitivity",
    "multiplied_perturbation",
    "noise_perturbation",
    "pixel_data",
    "pointing_game",
    "quantize_8bit",
    "randomizable_layers",
    "randomization_check",
    "randomized_models",
    "reference_explainers",
    "run_randomization",
    "sample_magnitudes",
    "smooth_model",
    "smoothing_check",
    "spearman",
    "ssim",
    "ssim_map",
    "ssim_similarity",
    "text_explainer",
    "text_infidelity",
    "describe_magnitude",
    "transform_spec",
    "validity_mask",
]
