"""visloupe.core.evaluation: how far to trust a saliency map.

- Faithfulness: :func:`abpc` (area between perturbation curves, Split IG paper) and
  :func:`max_sensitivity`.
- Localisation against ground-truth object masks: :func:`energy_in_mask`, :func:`pointing_game`.
"""

from .faithfulness import ABPCResult, abpc, linf_perturbation, max_sensitivity
from .localisation import PointingGameResult, as_masks, energy_in_mask, pointing_game

__all__ = [
    "ABPCResult",
    "PointingGameResult",
    "abpc",
    "as_masks",
    "energy_in_mask",
    "linf_perturbation",
    "max_sensitivity",
    "pointing_game",
]
