"""visloupe.core.evaluation: how far to trust a saliency map.

- COSE (Daroya, Sun, Maji, ICCV-W 2023): :func:`cose` scores consistency under transformations
  that keep the prediction and sensitivity when it changes; :func:`compare_methods` tabulates it
  with :func:`infidelity` and :func:`max_sensitivity` (Yeh et al., NeurIPS 2019, via Captum).
- Torch-only augmentations with exact inverses and validity masks (:mod:`.transforms`), and the
  SSIM COSE uses (:func:`ssim`).
- Reference explainers for calibration: constant, input intensity, uniform noise.
- Faithfulness: :func:`abpc` (area between perturbation curves, Split IG paper).
- Localisation against ground-truth object masks: :func:`energy_in_mask`, :func:`pointing_game`.
"""

from .cose import COSEReport, PairView, PixelData, compare_methods, cose, explain_pair, pixel_data
from .faithfulness import ABPCResult, abpc
from .localisation import PointingGameResult, as_masks, energy_in_mask, pointing_game
from .reference import (
    ConstantExplainer,
    InputIntensityExplainer,
    UniformNoiseExplainer,
    reference_explainers,
)
from .robustness import infidelity, linf_perturbation, max_sensitivity, noise_perturbation
from .ssim import ssim, ssim_map
from .transforms import (
    GEOMETRIC,
    PHOTOMETRIC,
    TRANSFORMS,
    apply_transform,
    invert_map,
    magnitude_bins,
    sample_magnitudes,
    validity_mask,
)

__all__ = [
    "ABPCResult",
    "COSEReport",
    "ConstantExplainer",
    "GEOMETRIC",
    "InputIntensityExplainer",
    "PHOTOMETRIC",
    "PairView",
    "PixelData",
    "PointingGameResult",
    "TRANSFORMS",
    "UniformNoiseExplainer",
    "abpc",
    "apply_transform",
    "as_masks",
    "compare_methods",
    "cose",
    "energy_in_mask",
    "explain_pair",
    "infidelity",
    "invert_map",
    "linf_perturbation",
    "magnitude_bins",
    "max_sensitivity",
    "noise_perturbation",
    "pixel_data",
    "pointing_game",
    "reference_explainers",
    "sample_magnitudes",
    "ssim",
    "ssim_map",
    "validity_mask",
]
