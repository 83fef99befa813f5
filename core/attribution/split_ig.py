"""Split Integrated Gradients: IG cut where the path output saturates.

Miglani, Kokhlikyan, Alsallakh, Martin, Reblitz-Richardson, "Investigating Saturation Effects in
Integrated Gradients", ICML 2020 WHI workshop (arXiv:2010.12697). Along the straight path
``b + alpha (x - b)`` the target logit ``F(alpha)`` usually rises quickly and then plateaus, while
the gradients on the plateau stay large and mostly cancel. Split IG cuts the IG integral at the
first path point whose normalised progress ``P = (F - f(b)) / (f(x) - f(b))`` exceeds ``ratio``:
the *left* part (unsaturated, the proposed attribution) and the *right* part (saturated).

Semantics follow the authors' code (branch ``ExpandedIG`` of ``vivekmig/captum-1``):
``riemann_right`` steps ``alpha_k = k / n`` (k = 1..n) with weight ``1/n``; the split index
``i*`` is the first 0-based step with ``P > ratio`` (strict); left sums the steps ``k < i*`` and
right the steps ``k >= i*``; both are multiplied by the full ``x - b`` with no re-weighting.
Unlike the notebook, a path that never crosses the threshold puts every step on the left
(``split_index = n_steps``, right = 0), so nothing is counted twice, and the normalised progress
keeps the split meaningful when ``f(x) < f(b)``.

Defaults are the authors' notebook settings (``ImageNetSplitIG-Basic``): the all-zeros baseline
(zeros in the model's normalised input space), ``n_steps=200`` and the target logit, not a
softmax; ``ratio=0.9`` is the notebook's single-image demo (its metrics loop uses 0.95). Their
ABPC is :func:`visloupe.core.evaluation.abpc`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..models.adapter import eval_mode, model_device
from ..models.adapter import logits as model_logits
from .explain import check_batch_size, check_inputs, resolve_baseline, resolve_targets
from .registry import MethodSpec, ParamSpec, register_method

__all__ = ["SplitIGResult", "split_integrated_gradients"]

logger = logging.getLogger(__name__)

#: ``store_path=None`` keeps the per-step cumulative gradients when they fit in this many bytes.
STORE_PATH_LIMIT_BYTES = 512 * 2**20


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _logits_2d(model: nn.Module, x: Tensor) -> Tensor:
    logits = model_logits(model, x)
    if logits.dim() != 2:
        raise ValueError(
            f"model output: expected logits of shape (N, num_classes), got {tuple(logits.shape)}"
        )
    return logits


@torch.no_grad()
def _forward_logits(model: nn.Module, x: Tensor, batch_size: int | None) -> Tensor:
    """Logits of ``x`` in chunks of ``batch_size`` rows, without gradients."""
    step = x.shape[0] if batch_size is None else batch_size
    return torch.cat([_logits_2d(model, chunk) for chunk in x.split(step)])


def _crossed(outputs: Tensor, fx: Tensor, fb: Tensor, ratio: float) -> Tensor:
    """Where the normalised progress ``(F - f(b)) / (f(x) - f(b))`` exceeds ``ratio`` (strict,
    as in the authors' code). Never where ``f(x) == f(b)``: no progress is defined there."""
    change = fx - fb
    progress = (outputs - fb) / change
    return (progress > ratio) & (change != 0)


def _split_indices(path_outputs: Tensor, fx: Tensor, fb: Tensor, ratio: float) -> Tensor:
    """First 0-based step with normalised progress ``> ratio`` per image; ``n_steps`` if none."""
    crossed = _crossed(path_outputs, fx[:, None], fb[:, None], ratio)
    n_steps = path_outputs.shape[1]
    first = torch.where(crossed.any(dim=1), crossed.int().argmax(dim=1),
                        torch.full_like(crossed[:, 0], n_steps, dtype=torch.long))
    return first.long()


def _check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TypeError(f"ratio: expected a number >= 0, got {type(ratio).__name__}")
    ratio = float(ratio)
    if not (0.0 <= ratio < float("inf")):
        raise ValueError(f"ratio: expected a finite number >= 0, got {ratio}")
    return ratio


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SplitIGResult:
    """Split IG of a batch: full-shape ``(N, C, H, W)`` attributions and the path diagnostics.

    ``left`` (unsaturated part, the proposed attribution), ``right`` (saturated part) and
    ``ig = left + right`` (exactly; ``riemann_right`` IG up to float rounding). ``split_index``
    ``(N,)`` is the first 0-based step above the threshold (``n_steps`` when none is), so left
    sums steps ``k < split_index``; ``alpha_star = split_index / n_steps`` is the last path point
    on the left. ``alphas`` ``(n_steps,)``; ``path_outputs`` and ``grad_norms`` ``(N, n_steps)``
    hold ``F(alpha_k)`` and ``||grad F(alpha_k)||_2``; ``input_output``/``baseline_output`` ``(N,)``
    hold ``f(x)`` and ``f(b)`` for ``target`` ``(N,)``.

    ``cumulative_grads`` ``(N, n_steps, C, H, W)``, when stored, holds the running sums of the
    path gradients; it lets :meth:`resplit` move the split without calling the model.
    """

    left: Tensor
    right: Tensor
    ig: Tensor
    split_index: Tensor
    alpha_star: Tensor
    alphas: Tensor
    path_outputs: Tensor
    grad_norms: Tensor
    baseline_output: Tensor
    input_output: Tensor
    target: Tensor
    ratio: float
    n_steps: int
    delta: Tensor = field(repr=False)
    cumulative_grads: Tensor | None = field(default=None, repr=False)

    @property
    def progress(self) -> Tensor:
        """Normalised path progress ``(F(alpha) - f(b)) / (f(x) - f(b))``, ``(N, n_steps)``."""
        change = self.input_output - self.baseline_output
        return (self.path_outputs - self.baseline_output[:, None]) / change[:, None]

    @property
    def output_change(self) -> Tensor:
        """``f(x) - f(b)`` per image ``(N,)``: what IG's attributions sum to (completeness)."""
        return self.input_output - self.baseline_output

    def maps(self, part: str = "left") -> Tensor:
        """Channel-summed ``(N, H, W)`` map of ``part`` in ``{"left", "right", "ig"}``."""
        if part not in ("left", "right", "ig"):
            raise ValueError(f"part: expected 'left', 'right' or 'ig', got {part!r}")
        return getattr(self, part).sum(dim=1)

    def resplit(self, ratio: float) -> SplitIGResult:
        """The same result split at ``ratio`` instead, from the stored cumulative gradients:
        no model call. Identical to recomputing with that ratio (same ``batch_size``)."""
        if self.cumulative_grads is None:
            raise ValueError(
                "resplit: this result was computed with store_path=False (or the path did not "
                "fit the memory limit); recompute with store_path=True to move the split"
            )
        ratio = _check_ratio(ratio)
        split = _split_indices(self.path_outputs, self.input_output, self.baseline_output, ratio)
        left_grads = _left_grads_from_cumulative(self.cumulative_grads, split)
        left, right, ig = _combine(left_grads, self.cumulative_grads[:, -1], self.delta,
                                   self.n_steps)
        return dataclasses.replace(
            self, left=left, right=right, ig=ig, split_index=split,
            alpha_star=split.to(self.alphas.dtype) / self.n_steps, ratio=ratio,
        )

    def to_dict(self) -> dict[str, list]:
        """Per-image scalars: split, alpha*, f(x), f(b), and the sums of left, right and ig."""
        def flat(t: Tensor) -> list:
            return t.detach().cpu().tolist()

        return {
            "target": flat(self.target),
            "split_index": flat(self.split_index),
            "alpha_star": flat(self.alpha_star),
            "input_output": flat(self.input_output),
            "baseline_output": flat(self.baseline_output),
            "left_sum": flat(self.left.flatten(1).sum(1)),
            "right_sum": flat(self.right.flatten(1).sum(1)),
            "ig_sum": flat(self.ig.flatten(1).sum(1)),
        }


def _left_grads_from_cumulative(cumulative: Tensor, split: Tensor) -> Tensor:
    """Sum of the path gradients of steps ``k < split`` per image, read from running sums."""
    index = (split - 1).clamp(min=0)
    picked = cumulative[torch.arange(cumulative.shape[0], device=cumulative.device), index]
    zero = (split == 0).view(-1, *([1] * (picked.dim() - 1)))
    return torch.where(zero, torch.zeros_like(picked), picked)


def _combine(left_grads: Tensor, total_grads: Tensor, delta: Tensor,
             n_steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """left, right and ig attributions from gradient sums; ``ig`` is defined as ``left + right``
    so the identity is exact, and a split at ``n_steps`` gives ``right == 0`` exactly."""
    scale = delta / n_steps
    left = left_grads * scale
    right = (total_grads - left_grads) * scale
    return left, right, left + right


# --------------------------------------------------------------------------------------------
# computation
# --------------------------------------------------------------------------------------------


def split_integrated_gradients(
    model: nn.Module,
    inputs: Tensor,
    target: int | Sequence[int] | Tensor | None = None,
    baseline: Tensor | float | None = None,
    ratio: float = 0.9,
    n_steps: int = 200,
    *,
    batch_size: int | None = None,
    store_path: bool | None = None,
) -> SplitIGResult:
    """Split IG (Miglani et al., 2020) of ``inputs`` ``(N, C, H, W)``, one split per image.

    Args:
        model: returns logits ``(N, K)`` (or a tuple / ``ModelOutput`` holding them); put in
            ``eval()`` for the call and restored afterwards. The split uses the raw logit.
        target: class per image; None -> the predicted class.
        baseline: None (zeros), a number, or a tensor broadcastable to one image or the batch.
        ratio: fraction of ``f(x) - f(b)`` (usually in [0, 1]; the paper uses 0.9 and 0.95) past
            which the path counts as saturated. A ratio >= 1 keeps the whole path on the left
            unless ``F`` overshoots ``f(x)`` somewhere.
        n_steps: Riemann (right-point) steps along the path.
        batch_size: rows per model pass (path points of one or several images); None -> one
            image's ``n_steps`` points per pass.
        store_path: keep the running gradient sums ``(N, n_steps, C, H, W)`` so that
            :meth:`SplitIGResult.resplit` works. Memory: ``N * n_steps * C*H*W * itemsize`` bytes,
            e.g. 120 MB per 224x224 RGB image at 200 float32 steps, 2.4 MB at 32x32. None stores
            when that is at most ``STORE_PATH_LIMIT_BYTES`` (512 MiB).

    Cost: ``n_steps`` forward+backward rows per image plus one gradient-free forward of the
    input and of the baseline (for the threshold and the predicted class).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps: expected a positive int, got {n_steps!r}")
    ratio = _check_ratio(ratio)
    batch_size = check_batch_size(batch_size)
    inputs = check_inputs(model, inputs)
    out_device = inputs.device
    stateful = any(True for _ in model.parameters()) or any(True for _ in model.buffers())
    device = model_device(model) if stateful else out_device
    x = inputs.detach().to(device)
    b = resolve_baseline(baseline, x)
    n_images = x.shape[0]
    feature_shape = x.shape[1:]
    per_image = n_steps * feature_shape.numel() * x.element_size()
    if store_path is None:
        store_path = n_images * per_image <= STORE_PATH_LIMIT_BYTES
        if not store_path:
            logger.info("split IG: not storing the path (%d bytes > limit); resplit disabled",
                        n_images * per_image)

    with eval_mode(model):
        ends = _forward_logits(model, torch.cat([x, b]), batch_size)
        if target is None:
            target_t = ends[:n_images].argmax(dim=1)
        else:
            target_t = resolve_targets(target, n_images, ends.shape[1]).to(device)
        rows = torch.arange(n_images, device=device)
        fx = ends[:n_images][rows, target_t]
        fb = ends[n_images:][rows, target_t]
        if (fx == fb).any():
            logger.warning("split IG: f(x) == f(baseline) for some images; no split (all left)")

        alphas = torch.arange(1, n_steps + 1, device=device, dtype=x.dtype) / n_steps
        delta = x - b
        path_outputs = torch.empty(n_images, n_steps, device=device, dtype=x.dtype)
        grad_norms = torch.empty_like(path_outputs)
        cumulative = (torch.empty(n_images, n_steps, *feature_shape, device=device,
                                  dtype=x.dtype) if store_path else None)
        running = torch.zeros_like(x)           # running gradient sum per image
        left_grads = torch.zeros_like(x)        # snapshot of the running sum at the split
        split = torch.full((n_images,), n_steps, dtype=torch.long, device=device)
        found = torch.zeros(n_images, dtype=torch.bool, device=device)

        chunk = n_steps if batch_size is None else batch_size
        total_rows = n_images * n_steps
        view = (-1,) + (1,) * len(feature_shape)
        for start in range(0, total_rows, chunk):
            # the chunk's rows as contiguous runs of steps: (image, first step, last step + 1)
            segments = []
            row = start
            while row < min(start + chunk, total_rows):
                i, lo = divmod(row, n_steps)
                hi = min(n_steps, lo + min(start + chunk, total_rows) - row)
                segments.append((i, lo, hi))
                row += hi - lo
            z = torch.cat([b[i] + alphas[lo:hi].view(view) * delta[i]
                           for i, lo, hi in segments]).requires_grad_(True)
            row_targets = torch.cat([target_t[i:i + 1].expand(hi - lo) for i, lo, hi in segments])
            with torch.enable_grad():
                out = _logits_2d(model, z)
                if out.shape[0] != z.shape[0]:
                    raise ValueError(f"model output: expected {z.shape[0]} rows, got "
                                     f"{out.shape[0]}")
                picked = out.gather(1, row_targets[:, None])[:, 0]
                (grads,) = torch.autograd.grad(picked.sum(), z)
            outputs = picked.detach()
            norms = grads.flatten(1).norm(dim=1)
            offset = 0
            for i, lo, hi in segments:  # no host-device synchronisation in this loop
                m = hi - lo
                seg_out = outputs[offset:offset + m]
                path_outputs[i, lo:hi] = seg_out
                grad_norms[i, lo:hi] = norms[offset:offset + m]
                before = running[i].clone()
                sums = torch.cumsum(grads[offset:offset + m], dim=0) + before
                offset += m
                running[i] = sums[-1]
                if cumulative is not None:
                    cumulative[i, lo:hi] = sums
                crossed = _crossed(seg_out, fx[i], fb[i], ratio)
                hit = crossed.any()
                j = crossed.int().argmax()  # first crossing in this run (0 if none)
                previous = sums.index_select(0, (j - 1).clamp(min=0).view(1))[0]
                snapshot = torch.where(j == 0, before, previous)
                take = hit & ~found[i]
                left_grads[i] = torch.where(take, snapshot, left_grads[i])
                split[i] = torch.where(take, lo + j, split[i])
                found[i] = found[i] | hit
        # no crossing: every step is on the left, right is exactly zero
        left_grads[~found] = running[~found]

    left, right, ig = _combine(left_grads, running, delta, n_steps)
    result = SplitIGResult(
        left=left, right=right, ig=ig, split_index=split,
        alpha_star=split.to(x.dtype) / n_steps, alphas=alphas, path_outputs=path_outputs,
        grad_norms=grad_norms, baseline_output=fb, input_output=fx, target=target_t,
        ratio=ratio, n_steps=n_steps, delta=delta, cumulative_grads=cumulative,
    )
    if out_device != device:  # results come back on the inputs' device
        moved = {f.name: getattr(result, f.name).to(out_device)
                 for f in dataclasses.fields(result) if isinstance(getattr(result, f.name), Tensor)}
        result = dataclasses.replace(result, **moved)
    return result


# --------------------------------------------------------------------------------------------
# registry entry: explain(model, x, method="split_ig", part="left", ratio=0.9, n_steps=200)
# --------------------------------------------------------------------------------------------

SPLIT_PARTS = ("left", "right", "ig")


def split_ig_method(forward: nn.Module, inputs: Tensor, target: Tensor, *, baseline: Tensor,
                    layer: Any = None, ratio: float = 0.9, n_steps: int = 200,
                    part: str = "left", internal_batch_size: int = 0) -> Tensor:
    """Registry method: one part of Split IG (Miglani et al., 2020) as ``(n, C, H, W)``.
    ``part="left"`` is the paper's proposed attribution (the unsaturated part of the path)."""
    result = split_integrated_gradients(
        forward, inputs, target, baseline, ratio=ratio, n_steps=n_steps,
        batch_size=internal_batch_size or None, store_path=False,
    )
    return getattr(result, part)


register_method(MethodSpec(
    "split_ig", "Split IG", split_ig_method,
    params=(
        ParamSpec("ratio", 0.9, "float", 0.0, 1.0, 0.01,
                  description="fraction of f(x) - f(baseline) where the path counts as saturated"),
        ParamSpec("n_steps", 200, "int", 1, 2000, 1, description="riemann_right path steps"),
        ParamSpec("part", "left", "choice", choices=SPLIT_PARTS,
                  description="left = unsaturated (proposed), right = saturated, ig = both"),
        ParamSpec("internal_batch_size", 0, "int", 0, 4096, 1,
                  description="path points per forward pass (0 = one image's path)"),
    ),
    multiplies_by_input=True,
    description="Integrated Gradients cut where the path output reaches `ratio` of its rise; "
    "the left (unsaturated) part is the attribution (Miglani et al., ICML-WHI 2020).",
    map_kind="gradient",
))
