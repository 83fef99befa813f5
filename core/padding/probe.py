"""The blind-spot probe and the input-size advice, as plain functions (``PaddingInspector`` shows
exactly what these return; Alsallakh et al., "Mind the Pad", ICLR 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_bool, check_int
from ..models.adapter import logits as model_logits
from ..models.adapter import model_device, model_dtype
from ._util import check_model as check_padding_model
from ._util import eval_mode, in_channels
from .arithmetic import audit_padding, suggest_input_size, uneven_count
from .bias import BlindSpotMap, blind_spot_map

__all__ = ["InputSizeAdvice", "blind_spot_probe", "check_padding_model", "default_probe",
           "input_size_advice"]


ZERO_PADDING_MODES = ("model", "zeros")
"""Modes that keep zero padding (the border stays under-used whatever the size)."""


def default_probe(model: nn.Module, input_size: int, data: torch.Tensor | None = None, *,
                  stimulus: torch.Tensor | None = None, background: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stimulus ``(C, h, w)`` and background ``(C, n, n)`` for a blind-spot map at size ``n``.

    ``background`` is resized to ``n``; without it, the mean colour of ``data (N, C, H, W)``,
    else zeros. Without ``stimulus``: the first data item shrunk to half the side, else a bright
    square (value 2) a quarter of the side. Both are in the model's dtype (a float64 model is
    probed in float64)."""
    n = check_int("input_size", input_size)
    channels = in_channels(model)
    dtype = model_dtype(model)
    if background is not None:
        bg = F.interpolate(background.to(dtype)[None], size=(n, n), mode="bilinear",
                           align_corners=False)[0]
    elif data is not None:
        bg = data.to(dtype).mean((0, 2, 3))[:, None, None].expand(-1, n, n).clone()
    else:
        bg = torch.zeros(channels, n, n, dtype=dtype)
    if stimulus is not None:
        return stimulus.to(dtype), bg
    if data is not None:
        side = max(3, n // 2)
        stim = F.interpolate(data[:1].to(dtype), size=(side, side), mode="bilinear",
                             align_corners=False)[0]
    else:
        side = max(3, n // 4)
        stim = torch.full((channels, side, side), 2.0, dtype=dtype)
    return stim, bg


def blind_spot_probe(model: nn.Module, input_size: int, data: torch.Tensor | None = None, *,
                     stimulus: torch.Tensor | None = None,
                     background: torch.Tensor | None = None, target: int | None = None,
                     max_positions: int = 24) -> BlindSpotMap | None:
    """:func:`blind_spot_map` of the :func:`default_probe` at size ``n``, the stimulus moved with
    a stride giving at most ``max_positions`` positions per axis; ``target`` None: the class
    the model predicts for the stimulus at the centre. None when the stimulus exceeds ``n``.
    Scores are probabilities, or the logit of a one-logit (binary) model."""
    n = check_int("input_size", input_size)
    max_positions = check_int("max_positions", max_positions)
    stim, bg = default_probe(model, n, data, stimulus=stimulus, background=background)
    if stim.shape[-1] > n or stim.shape[-2] > n:
        return None
    with eval_mode(model), torch.no_grad():
        centre = bg.clone()
        h, w = stim.shape[-2:]
        y, x = (n - h) // 2, (n - w) // 2
        centre[:, y:y + h, x:x + w] = stim
        logits = model_logits(model, centre[None].to(model_device(model)), "input_size")
    if target is None:
        target = int(logits.argmax(1)[0])
    positions = n - stim.shape[-1] + 1
    stride = max(1, -(-positions // int(max_positions)))
    # one logit (a binary classifier): its softmax is always 1, so the map records the logit
    score = "logit" if logits.dim() == 2 and logits.shape[1] == 1 else "probability"
    return blind_spot_map(model, stim, bg, target, stride=stride, score=score)


_STATIC_SOURCES = ("static SAME", "PadConv2d (explicit")
"""``pad_source`` prefixes of pads fixed when the model was built (TF-SAME ports and their
``swap_padding`` copies)."""


@dataclass(frozen=True)
class InputSizeAdvice:
    """What to change about the input size: ``uneven`` layers pad unevenly at ``input_size``;
    ``suggested`` (None if none nearby) fixes ``fixed`` of them.

    ``static``: how many of the uneven layers pad by amounts fixed when the model was built
    (static TF-SAME padding, e.g. EfficientNet ports built for 224): a new input size does not
    change those amounts, so the advice is to rebuild the model for ``rebuild_size`` (the
    nearest size at which TensorFlow's SAME rule pads every layer evenly) or to swap the padding.
    ``limitations``: layers whose padding cannot be read (the counts may be incomplete).
    Alsallakh et al., "Mind the Pad", ICLR 2021.
    """

    input_size: int
    uneven: int
    suggested: int | None
    fixed: int
    zero_padding: bool
    static: int = 0
    rebuild_size: int | None = None
    limitations: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """One line for people ("225 instead of 224 removes uneven padding at 5 layers")."""
        n = self.input_size
        if self.uneven == 0:
            text = f"{n}: no layer leaves padded rows or columns unused."
        elif self.suggested is None:
            text = f"{n}: {self.uneven} layers pad unevenly and no nearby size pads evenly."
        else:
            text = (f"{self.suggested} instead of {n} removes uneven padding at {self.fixed} "
                    f"layer{'s' if self.fixed != 1 else ''}")
        if self.static and self.suggested is not None and self.suggested == self.rebuild_size:
            text += (f" ({self.static} of them pad by static amounts, fixed when the model was "
                     f"built, that are even at {self.suggested})")
        elif self.static:
            size = self.rebuild_size
            target = (f"input size {size} (e.g. EfficientNet.from_name(..., image_size={size}))"
                      if size is not None else
                      "an input size that pads evenly (none found nearby)")
            unused = (f" (at {self.suggested} its extra bottom/right pad is simply never "
                      "reached)" if self.suggested is not None else "")
            text += (f" · {self.static} of the uneven layer{'s' if self.static != 1 else ''} "
                     "use static padding, fixed when the model was built: changing the input "
                     f"size alone does not change its amounts{unused}: rebuild the model for "
                     f"{target} or swap to dynamic/symmetric padding (swap_padding(model, "
                     "'keep', same='dynamic') or swap_padding(model, 'symmetric'))")
        if self.zero_padding:
            text += " · zero padding still under-uses the border (try symmetric or circular)"
        if self.limitations:
            k = len(self.limitations)
            text += (f" · the padding of {k} layer{'s' if k != 1 else ''} cannot be read "
                     "(audit_padding's limitation column): these counts may be incomplete")
        return text


def _rebuild_size(model: nn.Module, n: int) -> int | None:
    """The size nearest ``n`` at which the model rebuilt with TF-SAME padding for that size (its
    static pads recomputed by the TF rule: ``swap_padding(model, "keep", same="dynamic")``)
    pads every layer evenly; None if there is none nearby."""
    from .modes import swap_padding

    try:
        return int(suggest_input_size(swap_padding(model, "keep", same="dynamic"), n))
    except ValueError:
        return None


def zero_padded_convs(audit) -> int:
    """How many convolutions of an :func:`audit_padding` table pad (before or after, explicit
    pad modules included) with zeros."""
    pads = audit[["pad_before_h", "pad_after_h", "pad_before_w", "pad_after_w"]].sum(axis=1)
    convs = audit.type.str.contains("Conv")
    return int((convs & (pads > 0) & (audit.padding_mode == "zeros")).sum())


def input_size_advice(model: nn.Module, input_size: int, *, zero_padding: bool | None = None
                      ) -> InputSizeAdvice:
    """Count the layers of ``model`` that pad unevenly at ``input_size`` (explicit and TF-SAME
    pads included, see :func:`audit_padding`) and the nearby size (:func:`suggest_input_size`)
    that fixes them. Where uneven layers pad by static amounts fixed at construction, also the
    size to rebuild the model for. ``zero_padding``: the model pads with zeros (adds the border
    caveat); None reads it from the audit (some convolution that pads, pads with zeros)."""
    n = check_int("input_size", input_size)
    audit = audit_padding(model, n)
    if zero_padding is None:
        zero_padding = bool(zero_padded_convs(audit))
    zero_padding = check_bool("zero_padding", zero_padding)
    bad = int(audit.uneven.sum())
    static = int((audit.uneven & audit.pad_source.str.startswith(_STATIC_SOURCES)).sum())
    best, fixed = None, 0
    if bad:
        try:
            best = int(suggest_input_size(model, n))
            fixed = bad - int(uneven_count(model, best))
        except ValueError:
            best = None
    rebuild = _rebuild_size(model, n) if static else None
    return InputSizeAdvice(n, bad, best, fixed, bool(zero_padding), static, rebuild,
                           tuple(audit.attrs.get("limitations", ())))
