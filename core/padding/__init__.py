"""visloupe.core.padding: spatial bias from padding (Alsallakh et al., "Mind the Pad -- CNNs can
develop blind spots", ICLR 2021).

- Arithmetic: :func:`audit_padding` (per-layer table of PyTorch's and TensorFlow SAME's effective
  padding), :func:`even_input_sizes`, :func:`suggest_input_size`, :func:`uneven_count`,
  :func:`conv_out`, :func:`leftover`, :func:`torch_effective_padding`, :func:`tf_same_padding`.
  Explicit pads (pad modules, ``F.pad``, static/dynamic TF-SAME convs of EfficientNet-style
  ports) count as the padding of the layer they feed: :func:`layer_padding` (:class:`LayerPad`).
- Foveation: :func:`foveation_map` (exact per-pixel path counts), :func:`linearize`.
- Padding surgery: :func:`swap_padding`, :func:`pad2d`, :class:`PadConv2d`,
  :class:`SymmetricPad2d`, :data:`PADDING_MODES`
  (zeros, reflect, replicate, circular, symmetric, partial).
- Learned bias: :func:`mean_feature_maps` (:class:`MeanFeatureMaps`), :func:`filter_asymmetry`,
  :func:`blind_spot_map` (:class:`BlindSpotMap`), :func:`flip_asymmetry`.
- :func:`reference_resnet`: plain-torch ResNet-18/34/50/101 layouts (random weights) to audit.
"""

from .arithmetic import (
    AUDIT_COLUMNS,
    audit_padding,
    conv_out,
    even_input_sizes,
    leftover,
    suggest_input_size,
    tf_same_padding,
    torch_effective_padding,
    uneven_count,
)
from .bias import (
    BlindSpotMap,
    MeanFeatureMaps,
    blind_spot_map,
    filter_asymmetry,
    flip_asymmetry,
    mean_feature_maps,
)
from .explicit import LayerPad, layer_padding
from .foveation import SumPool2d, foveation_map, linearize
from .modes import PADDING_MODES, PadConv2d, SymmetricPad2d, pad2d, swap_padding
from .reference import reference_resnet

__all__ = [
    "AUDIT_COLUMNS",
    "PADDING_MODES",
    "BlindSpotMap",
    "LayerPad",
    "MeanFeatureMaps",
    "PadConv2d",
    "SumPool2d",
    "SymmetricPad2d",
    "audit_padding",
    "blind_spot_map",
    "conv_out",
    "even_input_sizes",
    "filter_asymmetry",
    "flip_asymmetry",
    "foveation_map",
    "layer_padding",
    "leftover",
    "linearize",
    "mean_feature_maps",
    "pad2d",
    "reference_resnet",
    "suggest_input_size",
    "swap_padding",
    "tf_same_padding",
    "torch_effective_padding",
    "uneven_count",
]
from .probe import (
    InputSizeAdvice,
    blind_spot_probe,
    check_padding_model,
    default_probe,
    input_size_advice,
)

__all__ += ["InputSizeAdvice", "blind_spot_probe", "check_padding_model", "default_probe",
            "input_size_advice"]
