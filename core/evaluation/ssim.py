"""SSIM between saliency maps, with the conventions of COSE's official code.

COSE (Daroya, Sun, Maji, ICCV 2023 Workshops) compares maps with scikit-image's
``structural_similarity`` (Wang et al., IEEE TIP 2004) at ``win_size=5`` (after Adebayo et al.'s
*Sanity Checks for Saliency Maps*): a uniform window, the sample covariance (``N/(N-1)``),
``K1=0.01``, ``K2=0.03`` and the data range ``R = max(range(a), range(b))`` of the pair. The mean
is over the map cropped by ``(win-1)//2`` pixels (skimage's ``mssim``); with a validity mask it is
over the *full* map restricted to the mask eroded by the window, pixels outside the image
counting as valid (so the image border is not eroded). Window sums use half-sample-symmetric
padding, as scipy's ``uniform_filter``. Computed in float64, batched over maps.

One deliberate difference: when both maps are constant, ``R = 0`` and skimage returns NaN; here
``R`` is floored at 1e-12, so two equal constant maps score 1 and two different ones less.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ssim", "ssim_map"]

_K1, _K2 = 0.01, 0.03


def _as_maps(x: Any, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception as err:  # noqa: BLE001 - re-raised with the argument named
            raise TypeError(f"{name}: expected a tensor or array (N, H, W) or (H, W), got "
                            f"{type(x).__name__}") from err
    if x.dim() not in (2, 3):
        raise ValueError(f"{name}: expected maps (N, H, W) or one map (H, W), got shape "
                         f"{tuple(x.shape)}")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name}: expected real-valued maps, got dtype {x.dtype}")
    x = x.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: expected finite values, got NaN/inf")
    return x if x.dim() == 3 else x[None]


def _symmetric_pad(x: Tensor, r: int) -> Tensor:
    """Half-sample-symmetric padding by ``r`` (scipy's 'reflect': ``d c b a | a b c d``)."""
    if r == 0:
        return x
    h, w = x.shape[-2:]
    if r > h or r > w:
        # repeat the pattern for very small maps
        idx_h = _sym_index(h, r, x.device)
        idx_w = _sym_index(w, r, x.device)
        return x[..., idx_h, :][..., idx_w]
    x = torch.cat([x[..., :r, :].flip(-2), x, x[..., -r:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :r].flip(-1), x, x[..., -r:].flip(-1)], dim=-1)


def _sym_index(n: int, r: int, device: torch.device) -> Tensor:
    i = torch.arange(-r, n + r, device=device)
    period = 2 * n
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - 1 - i, i)


def _box_mean(x: Tensor, win: int) -> Tensor:
    """Mean over every ``win x win`` window of the last two dimensions (no padding): a
    separable running sum, about twice as fast as ``avg_pool2d`` in float64 on CPU."""
    h, w = x.shape[-2] - win + 1, x.shape[-1] - win + 1
    rows = x[..., 0:h, :].clone()
    for k in range(1, win):
        rows += x[..., k:k + h, :]
    out = rows[..., 0:w].clone()
    for k in range(1, win):
        out += rows[..., k:k + w]
    return out.div_(win * win)


def _check_win(win_size: Any, h: int, w: int) -> int:
    if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 3 or \
            win_size % 2 == 0:
        raise ValueError(f"win_size: expected an odd int >= 3, got {win_size!r}")
    if win_size > min(h, w):
        raise ValueError(f"win_size: {win_size} is larger than the maps ({h}x{w})")
    return win_size


def ssim_map(
    a: Tensor, b: Tensor, win_size: int = 5, data_range: float | Tensor | None = None
) -> Tensor:
    """The per-pixel SSIM map ``(N, H, W)`` (skimage's ``full=True`` output) of ``a`` and ``b``
    (``(N, H, W)`` or ``(H, W)``). ``data_range``: None for COSE's per-pair
    ``max(range(a), range(b))``, or a number / ``(N,)`` tensor."""
    x, y = _as_maps(a, "a"), _as_maps(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"b: expected the shape of a {tuple(x.shape)}, got {tuple(y.shape)}")
    n, h, w = x.shape
    win = _check_win(win_size, h, w)
    if data_range is None:
        rng_x = x.amax(dim=(1, 2)) - x.amin(dim=(1, 2))
        rng_y = y.amax(dim=(1, 2)) - y.amin(dim=(1, 2))
        r = torch.maximum(rng_x, rng_y)
    else:
        r = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).reshape(-1)
        if r.numel() == 1:
            r = r.expand(n)
        if r.numel() != n or not torch.isfinite(r).all() or (r < 0).any():
            raise ValueError(f"data_range: expected None, a number >= 0 or {n} of them, got "
                             f"{data_range!r}")
    r = r.clamp_min(1e-12).view(-1, 1, 1)
    c1, c2 = (_K1 * r) ** 2, (_K2 * r) ** 2
    cov_norm = win * win / (win * win - 1.0)
    # the five local means in one padded pooling pass over stacked channels
    stats = torch.stack((x, y, x * x, y * y, x * y), dim=1)
    means = _box_mean(_symmetric_pad(stats, win // 2), win)
    ux, uy, uxx, uyy, uxy = means.unbind(1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return num / den


def _erode(valid: Tensor, win: int) -> Tensor:
    """Binary erosion by a ``win x win`` square; outside the image counts as valid."""
    pad = win // 2
    v = F.pad(valid.to(torch.float64), (pad, pad, pad, pad), value=1.0)
    return _box_mean(v, win) > 1 - 1e-9


def ssim(
    a: Tensor,
    b: Tensor,
    win_size: int = 5,
    valid: Tensor | None = None,
    *,
    data_range: float | Tensor | None = None,
) -> Tensor:
    """Mean SSIM per pair of maps: ``(N,)`` float64 for ``(N, H, W)`` inputs, a 0-d tensor for
    ``(H, W)`` ones.

    Without ``valid``: the mean over the map cropped by ``(win_size-1)//2`` (skimage's
    ``mssim``). With ``valid`` (bool, same shape): the mean of the full map over ``valid``
    eroded by the window (border counted valid), as COSE scores translated/rotated pairs; NaN
    where the eroded mask is empty. ``data_range`` as in :func:`ssim_map`.
    """
    single = isinstance(a, Tensor) and a.dim() == 2
    full = ssim_map(a, b, win_size, data_range)
    win = win_size
    if valid is None:
        p = (win - 1) // 2
        out = full[:, p:full.shape[1] - p, p:full.shape[2] - p].mean(dim=(1, 2))
    else:
        if not isinstance(valid, Tensor):
            valid = torch.as_tensor(valid)
        v = valid if valid.dim() == 3 else valid[None]
        if tuple(v.shape) != tuple(full.shape):
            raise ValueError(f"valid: expected a mask of the maps' shape {tuple(full.shape)}, "
                             f"got {tuple(valid.shape)}")
        mask = _erode(v.to(full.device).bool(), win).to(torch.float64)
        count = mask.sum(dim=(1, 2))
        total = (full * mask).sum(dim=(1, 2))
        out = torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total,
                                                                                 float("nan")))
    return out[0] if single else out
