"""visloupe.core.models: the built-in model zoo and its weight cache.

- :func:`pretrained` ``(name) -> (model, preprocess)``: ``shapes-cnn``, ``shapes-vit``,
  ``digits-cnn``, ``text-cnn``, whose weights ship in the package (retrained from a fixed-seed
  recipe on request, cached as safetensors + JSON); :func:`available_models`,
  :func:`model_info`, :func:`checkpoints` (random init, per-epoch snapshots, final weights of
  the same run); :func:`train_builtin`, :func:`shipped_weights`.
- Architectures: :class:`SmallResNet` (stride-2 3x3 downsampling; padding mode, Softplus,
  LogSumExp pooling options), :class:`TinyViT`, :class:`TextCNN`; :func:`build_model`.
- Preprocess contract: :class:`ImagePreprocess` (PIL -> ``(C, H, W)``), :class:`TextPreprocess`
  (str -> ``LongTensor (T,)``).
- The model adapter (``adapter.py``), used by every capability for users' own models:
  :func:`as_logits` (tensors, tuples, ``ModelOutput``), :func:`eval_mode`, :func:`model_device`,
  :func:`model_dtype`, :func:`expected_in_channels`, :func:`check_model`, :func:`find_module`,
  :func:`hooks`, :func:`predict` (batched logits), :func:`logits` / :func:`run_model` (one call,
  shape errors naming the inputs).
- :func:`propose_target_layers` (Grad-CAM layers; token-grid layout for ViT-like models).
- Persistence without pickle: :func:`save_model`, :func:`load_model`.
- Surgery (always on a copy): :func:`swap_padding`, :func:`smooth_model` (Softplus / LogSumExp),
  :func:`reinitialize_layers` and :func:`randomized_copies` (randomisation checks).
"""

from .adapter import (
    all_modules,
    as_logits,
    check_inputs,
    check_model,
    config_value,
    eval_mode,
    expected_in_channels,
    find_module,
    hooks,
    input_size_error,
    logits,
    model_device,
    model_dtype,
    predict,
    run_model,
)
from .architectures import (
    ARCHITECTURES,
    GlobalLSEPool,
    ResidualBlock,
    SmallResNet,
    TextCNN,
    TinyViT,
    build_model,
    make_activation,
)
from .introspection import (
    LayerProposal,
    TokenLayout,
    infer_token_layout,
    propose_target_layers,
)
from .io import load_model, read_metadata, save_model
from .preprocess import ImagePreprocess, TextPreprocess
from .surgery import (
    RANDOMIZATION_MODES,
    AdaptiveLSEPool1d,
    AdaptiveLSEPool2d,
    LSEPool1d,
    LSEPool2d,
    SmoothingReport,
    SoftplusReLU6,
    has_own_parameters,
    lse_pool2d,
    randomized_copies,
    reinitialize_layers,
    smooth_model,
    swap_padding,
)
from .training import TrainConfig, TrainResult, accuracy, train_classifier
from .zoo import (
    available_models,
    cache_root,
    checkpoints,
    model_info,
    pretrained,
    shipped_weights,
    train_builtin,
)

__all__ = [
    "ARCHITECTURES",
    "LayerProposal",
    "TokenLayout",
    "all_modules",
    "as_logits",
    "check_inputs",
    "check_model",
    "config_value",
    "eval_mode",
    "expected_in_channels",
    "find_module",
    "hooks",
    "infer_token_layout",
    "input_size_error",
    "logits",
    "model_device",
    "model_dtype",
    "predict",
    "propose_target_layers",
    "run_model",
    "GlobalLSEPool",
    "ImagePreprocess",
    "ResidualBlock",
    "SmallResNet",
    "TextCNN",
    "TextPreprocess",
    "TinyViT",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "available_models",
    "build_model",
    "cache_root",
    "checkpoints",
    "load_model",
    "make_activation",
    "model_info",
    "pretrained",
    "shipped_weights",
    "train_builtin",
    "read_metadata",
    "save_model",
    "train_classifier",
    "RANDOMIZATION_MODES",
    "AdaptiveLSEPool1d",
    "AdaptiveLSEPool2d",
    "LSEPool1d",
    "LSEPool2d",
    "SoftplusReLU6",
    "SmoothingReport",
    "has_own_parameters",
    "lse_pool2d",
    "randomized_copies",
    "reinitialize_layers",
    "smooth_model",
    "swap_padding",
]
