"""visloupe.core.attribution: saliency maps for image classifiers.

``explain(model, inputs, target, method, ...) -> (N, H, W)`` and ``attribute(...)`` (full shape)
run any registered method (``available_methods()``, ``method_spec(name)``): Captum's gradient and
perturbation methods, Grad-CAM / Grad-CAM++ for CNN maps and ViT token grids, and methods other
modules add with ``register_method``. ``resolve_explainer(s)`` implement the explainer contract
used by the evaluation modules for images, ``text_explainer`` / ``resolve_text_explainers`` the
same contract for token-id models (``(model, token_ids, target) -> (N, T)``, at the embedding
layer); ``postprocess`` holds the map operations widgets and metrics share, and the
``postprocess=`` conventions ``explain`` and the explainers take (``"paper"``: COSE's official
scaling, min-max for CAMs and PAIR's ``VisualizeImageGrayscale`` for gradient maps, chosen by
``MethodSpec.map_kind``).
"""

from . import methods, cam  # noqa: F401, I001  (register the built-in methods, in display order)
from .explain import (
    Explainer,
    LogitsModule,
    attribute,
    check_inputs,
    explain,
    explain_predicted,
    image_seed,
    resolve_baseline,
    resolve_explainer,
    resolve_explainers,
    resolve_targets,
)
from .postprocess import (
    MAP_KINDS,
    POSTPROCESSES,
    REDUCTIONS,
    apply_postprocess,
    clip_percentile,
    normalize,
    pair_grayscale,
    reduce_channels,
    resolve_postprocess,
    upsample,
)
from .split_ig import SplitIGResult, split_integrated_gradients  # registers "split_ig"
from .methods import deeplift_unsupported
from .text import (
    TEXT_EXPLAINERS,
    TextExplainer,
    TokenAttributions,
    check_token_ids,
    embedding_layer,
    is_token_ids,
    resolve_text_explainers,
    text_explainer,
    token_attributions,
)
from .text import to_html as tokens_to_html
from .registry import (
    METHODS,
    MethodSpec,
    ParamSpec,
    available_methods,
    method_spec,
    register_method,
)

__all__ = [
    "MAP_KINDS",
    "METHODS",
    "POSTPROCESSES",
    "REDUCTIONS",
    "SplitIGResult",
    "TEXT_EXPLAINERS",
    "TextExplainer",
    "TokenAttributions",
    "Explainer",
    "LogitsModule",
    "MethodSpec",
    "ParamSpec",
    "apply_postprocess",
    "attribute",
    "available_methods",
    "check_inputs",
    "check_token_ids",
    "clip_percentile",
    "deeplift_unsupported",
    "embedding_layer",
    "explain",
    "explain_predicted",
    "image_seed",
    "is_token_ids",
    "method_spec",
    "normalize",
    "pair_grayscale",
    "reduce_channels",
    "register_method",
    "resolve_baseline",
    "resolve_explainer",
    "resolve_explainers",
    "resolve_postprocess",
    "resolve_targets",
    "resolve_text_explainers",
    "split_integrated_gradients",
    "text_explainer",
    "token_attributions",
    "tokens_to_html",
    "upsample",
]
