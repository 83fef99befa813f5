"""The blind-spot probe and the input-size advice, as plain functions (``PaddingInspector`` shows
exactly what these return; Alsallakh et al., "Mind the Pad", ICLR 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int
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
    square (value 2) a quarter of the side."""
    n = check_int("input_size", input_size)
    channels = in_channels(model)
    if background is not None:
        bg = F.interpolate(background.float()[None], size=(n, n), mode="bilinear",
                           align_corners=False)[0]
    elif data is not None:
        bg = data.float().mean((0, 2, 3))[:, None, None].expand(-1, n, n).clone()
    else:
        bg = torch.zeros(channels, n, n)
    if stimulus is not None:
        return stimulus.float(), bg
    if data is not None:
        side = max(3, n // 2)
        stim = F.interpolate(data[:1].float(), size=(side, side), mode="bilinear",
                             align_corners=False)[0]
    else:
        side = max(3, n // 4)
        stim = torch.ones(channels, side, side) * 2.0
    return stim, bg


def blind_spot_probe(model: nn.Module, input_size: int, data: torch.Tensor | None = None, *,
                     stimulus: torch.Tensor | None = None,
                     background: torch.Tensor | None = None, target: int | None = None,
                     max_positions: int = 24) -> BlindSpotMap | None:
    """:func:`blind_spot_map` of the :func:`default_probe` at size ``n``, the stimulus moved with
    a stride giving at most ``max_positions`` positions per axis; ``target`` None: the class
    the model predicts for the stimulus at the centre. None when the stimulus exceeds ``n``."""
    n = check_int("input_size", input_size)
    stim, bg = default_probe(model, n, data, stimulus=stimulus, background=background)
    if stim.shape[-1] > n or stim.shape[-2] > n:
        return None
    if target is None:
        with eval_mode(model), torch.no_grad():
            centre = bg.clone()
            h, w = stim.shape[-2:]
            y, x = (n - h) // 2, (n - w) // 2
            centre[:, y:y + h, x:x + w] = stim
            logits = model(centre[None])
        target = int(torch.as_tensor(getattr(logits, "logits", logits)).argmax(1)[0])
    positions = n - stim.shape[-1] + 1
    stride = max(1, -(-positions // int(max_positions)))
    return blind_spot_map(model, stim, bg, target, stride=stride)


@dataclass(frozen=True)
class InputSizeAdvice:
    """What to change about the input size: ``uneven`` layers leave padded rows/columns unused
    at ``input_size``; ``suggested`` (None if none nearby) fixes ``fixed`` of them."""

    input_size: int
    uneven: int
    suggested: int | None
    fixed: int
    zero_padding: bool

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
        if self.zero_padding:
            text += " · zero padding still under-uses the border (try symmetric or circular)"
        return text


def input_size_advice(model: nn.Module, input_size: int, *, zero_padding: bool = True
                      ) -> InputSizeAdvice:
    """Count the layers of ``model`` that leave rows/columns unused at ``input_size`` and the
    nearby size (:func:`suggest_input_size`) that fixes them. ``zero_padding``: the model pads
    with zeros (adds the border caveat)."""
    n = check_int("input_size", input_size)
    audit = audit_padding(model, n)
    bad = int(((audit.leftover_h != 0) | (audit.leftover_w != 0)).sum())
    best, fixed = None, 0
    if bad:
        try:
            best = int(suggest_input_size(model, n))
            fixed = bad - int(uneven_count(model, best))
        except ValueError:
            best = None
    return InputSizeAdvice(n, bad, best, fixed, bool(zero_padding))
