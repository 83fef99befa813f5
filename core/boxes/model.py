"""Task2Box: datasets and tasks as boxes whose asymmetric overlap encodes their relations.

Daroya, Sun, Maji, "Task2Box: Box Embeddings for Modeling Asymmetric Task Relationships",
CVPR 2024. A network maps each item's feature vector to a box (lower corner ``lo``, side lengths
in (0, 1) through a sigmoid); it is trained full-batch with Adam on all ordered training pairs so
that ``ov(i -> j) = Vol(B_i ∩ B_j) / Vol(B_i)`` matches a target matrix (hierarchy overlap or
transformed task affinity). The loss has four terms (paper weights in :data:`HIERARCHY_WEIGHTS`
and :data:`TASKONOMY_WEIGHTS`): the summed squared overlap error, an inverse-volume term that keeps
boxes from collapsing, a centre-distance term pulling related boxes together, and a regulariser
that makes boxes square. A free-box mode learns one box per item directly, to draw a given
relation matrix without features.

Conventions of the official code (``cvl-umass/task2box``): soft Gumbel boxes with volume
temperature 0.1 and intersection temperature 1e-4 (:mod:`.geometry`); the overlap term is a
*sum* of squared errors over the ordered training pairs (no negative sampling, targets floored
at 1e-12); ``j`` is predicted a parent of ``i`` iff ``ov(i->j) > ov(j->i)`` and
``ov(i->j) > t``, with ``t`` tuned on validation pairs over 0.1, ..., 0.9
(:func:`~visloupe.core.boxes.hierarchy_f1`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .geometry import (
    INTERSECTION_TEMPERATURE,
    VOLUME_TEMPERATURE,
    PairIndex,
    log_volume,
    pair_log_intersection,
    pairwise_log_overlap,
)

logger = logging.getLogger("visloupe.core.boxes")

__all__ = [
    "HIERARCHY_WEIGHTS",
    "TASKONOMY_WEIGHTS",
    "BoxNet",
    "FreeBoxes",
    "LossTerms",
    "LossWeights",
    "Relations",
    "Task2Box",
    "check_features",
    "check_overlap",
    "parent_rule",
    "task2box_loss",
]

_FLOOR = 1e-12


@dataclass(frozen=True)
class LossWeights:
    """Weights of the four Task2Box loss terms (``oloss_mult``, ``vloss_mult``, ``dloss_mult``,
    ``rloss_mult`` in the official code)."""

    overlap: float = 100.0
    volume: float = 0.7
    distance: float = 0.01
    square: float = 1.0


HIERARCHY_WEIGHTS = LossWeights(100.0, 0.7, 0.01, 1.0)
TASKONOMY_WEIGHTS = LossWeights(100.0, 0.01, 0.01, 1.0)


@dataclass(frozen=True)
class LossTerms:
    """The weighted total and the four unweighted terms of one loss evaluation (scalars)."""

    total: Tensor
    overlap: Tensor
    volume: Tensor
    distance: Tensor
    square: Tensor


# ---------------------------------------------------------------------------------------------
# Checks


def check_features(features: Any, name: str = "features", n: int | None = None) -> Tensor:
    """A finite float32 ``(N, D)`` tensor from a tensor/array, or a clear error."""
    if not isinstance(features, Tensor):
        try:
            features = torch.as_tensor(features)
        except Exception as error:
            raise TypeError(f"{name}: expected a (N, D) tensor or array, got "
                            f"{type(features).__name__}") from error
    if features.dim() != 2 or features.shape[0] < 1 or features.shape[1] < 1:
        raise ValueError(f"{name}: expected shape (N, D), got {tuple(features.shape)}")
    if not (features.is_floating_point() or features.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name}: expected numbers, got dtype {features.dtype}")
    features = features.float()
    if not torch.isfinite(features).all():
        bad = int((~torch.isfinite(features)).any(dim=1).nonzero()[0, 0])
        raise ValueError(f"{name}: contains NaN or infinite values (first in row {bad})")
    if n is not None and features.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows, got {features.shape[0]}")
    return features


def check_overlap(overlap: Any, n: int | None = None, name: str = "overlap",
                  allow_nan: bool = False) -> Tensor:
    """A float32 ``(N, N)`` tensor with values in [0, 1] (NaN allowed if ``allow_nan``)."""
    if not isinstance(overlap, Tensor):
        try:
            overlap = torch.as_tensor(overlap, dtype=torch.float32)
        except Exception as error:
            raise TypeError(f"{name}: expected an (N, N) tensor or array, got "
                            f"{type(overlap).__name__}") from error
    overlap = overlap.float()
    if overlap.dim() != 2 or overlap.shape[0] != overlap.shape[1]:
        raise ValueError(f"{name}: expected a square (N, N) matrix, got {tuple(overlap.shape)}")
    if n is not None and overlap.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n}, {n}) to match the {n} items, got "
                         f"{tuple(overlap.shape)}")
    finite = overlap[~torch.isnan(overlap)]
    if not allow_nan and torch.isnan(overlap).any():
        raise ValueError(f"{name}: contains NaN")
    if torch.isinf(finite).any() or (finite.numel() and (finite.min() < 0 or finite.max() > 1)):
        lo, hi = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 0.0)
        raise ValueError(f"{name}: expected values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return overlap


def adam(params: Any, lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel where this torch has it: several times faster on CPU for the
    small tensors of Task2Box and its pair classifiers; the same update rule."""
    params = list(params)  # a generator would be spent by a failed first attempt
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def _check_mask(mask: Any, n: int, name: str = "train_mask") -> Tensor:
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"{name}: expected a boolean (N, N) tensor, got dtype {mask.dtype}")
    if tuple(mask.shape) != (n, n):
        raise ValueError(f"{name}: expected shape ({n}, {n}), got {tuple(mask.shape)}")
    return mask


# ---------------------------------------------------------------------------------------------
# Networks


class BoxNet(nn.Module):
    """Feature -> box network of Task2Box: ``in -> [Linear -> ReLU -> BatchNorm1d]*`` per hidden
    width, then two linear heads: the lower corner ``lo`` and the side lengths through a sigmoid
    (so each side is in (0, 1)); ``hi = lo + side``."""

    def __init__(self, in_dim: int, dim: int = 2, hidden: Sequence[int] = (1024, 256, 128),
                 batchnorm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            width = h
        self.trunk = nn.Sequential(*layers)
        self.lower = nn.Linear(width, dim)
        self.size = nn.Linear(width, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        lo = self.lower(h)
        return lo, lo + torch.sigmoid(self.size(h))


class FreeBoxes(nn.Module):
    """One learnable box per item (no features): corners ``lo`` and sides ``sigmoid(size)``.

    Boxes start heavily overlapping (near-equal, jittered), so every pair gets a strong overlap
    gradient at first; boxes that start disjoint barely feel the soft-volume gradient."""

    def __init__(self, n: int, dim: int = 2, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.lo = nn.Parameter(torch.randn(n, dim, generator=generator) * 0.05)
        self.size = nn.Parameter(torch.randn(n, dim, generator=generator) * 0.1)

    def forward(self, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.lo, self.lo + torch.sigmoid(self.size)


# ---------------------------------------------------------------------------------------------
# Loss


class _LossPlan:
    """What a Task2Box loss needs from ``target`` and ``mask``, computed once per fit instead of
    once per epoch: the unordered pairs ``i < j`` that supervise in either direction (the soft
    intersection is symmetric, so each is computed once), their targets and mask weights in both
    directions, and the centre-distance weights."""

    def __init__(self, target: Tensor, mask: Tensor) -> None:
        n = target.shape[0]
        t = target.clamp(min=_FLOOR)
        m = mask.to(t.dtype)
        rows, cols = torch.triu_indices(n, n, offset=1, device=t.device)
        needed = (m[rows, cols] + m[cols, rows]) > 0
        self.rows, self.cols = rows[needed], cols[needed]
        self.pairs = PairIndex(self.rows, self.cols, n)
        self.ends = torch.stack((self.rows, self.cols), dim=1)  # (P, 2): owner of each direction
        # direction 0 is ov(i -> j) (divide by Vol(B_i)), direction 1 is ov(j -> i)
        self.target = torch.stack((t[self.rows, self.cols], t[self.cols, self.rows]), dim=1)
        self.weight = torch.stack((m[self.rows, self.cols], m[self.cols, self.rows]), dim=1)
        # sum_ij W_ij ||c_i - c_j||^2 = sum_k c_k^T L c_k over the d coordinates, with the graph
        # Laplacian L = diag(rowsum + colsum) - W - W^T of the pair weights W (symmetric)
        w = m * (t > _FLOOR).to(t.dtype)
        self.laplacian = torch.diag(w.sum(dim=0) + w.sum(dim=1)) - w - w.T

    def loss(self, lo: Tensor, hi: Tensor, weights: LossWeights, volume_temperature: float,
             intersection_temperature: float) -> LossTerms:
        d = lo.shape[1]
        log_own = log_volume(lo, hi, volume_temperature, intersection_temperature)
        inter = pair_log_intersection(lo, hi, self.pairs, None, volume_temperature,
                                      intersection_temperature)
        ov = (inter[:, None] - log_own[self.ends]).exp()  # (P, 2)
        l_overlap = ((ov - self.target) ** 2 * self.weight).sum()
        l_volume = ((1.0 / (log_own.exp() + _FLOOR)) ** (1.0 / d)).sum()
        centre = (lo + hi) / 2
        ct = centre.T  # (d, N) @ (N, N) is much faster on CPU than (N, N) @ (N, d)
        l_distance = (ct * (ct @ self.laplacian)).sum()
        side = hi - lo
        if d > 1:
            k, j = torch.triu_indices(d, d, offset=1, device=lo.device)
            l_square = (side[:, k] - side[:, j]).abs().sum() / d**2
        else:
            l_square = side.new_zeros(())
        total = (weights.overlap * l_overlap + weights.volume * l_volume
                 + weights.distance * l_distance + weights.square * l_square)
        return LossTerms(total, l_overlap.detach(), l_volume.detach(), l_distance.detach(),
                         l_square.detach())


def task2box_loss(lo: Tensor, hi: Tensor, target: Tensor, mask: Tensor,
                  weights: LossWeights = HIERARCHY_WEIGHTS,
                  volume_temperature: float = VOLUME_TEMPERATURE,
                  intersection_temperature: float = INTERSECTION_TEMPERATURE) -> LossTerms:
    """Task2Box's loss on boxes ``(N, d)`` against ``target`` ``(N, N)`` over pairs ``mask``
    (off-diagonal ordered pairs; the diagonal is ignored).

    - overlap: ``sum_{(i,j) in mask} (ov(i->j) - max(target_ij, 1e-12))^2``;
    - volume: ``sum_i (1 / (Vol(B_i) + 1e-12))^(1/d)`` (keeps boxes from shrinking away);
    - distance: ``sum ||c_i - c_j||^2`` over masked pairs with ``target_ij > 1e-12`` (centres);
    - square: ``(1/d^2) sum_i sum_{k<l} |s_ik - s_il|`` on side lengths ``s = hi - lo``.
    """
    mask = mask & ~torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device)
    return _LossPlan(target, mask).loss(lo, hi, weights, volume_temperature,
                                        intersection_temperature)


# ---------------------------------------------------------------------------------------------
# Relations


def parent_rule(overlap: Tensor, threshold: float = 0.5) -> Tensor:
    """Task2Box's hierarchy rule: ``j`` is predicted a parent of ``i`` iff ``ov(i->j) > ov(j->i)``
    and ``ov(i->j) > threshold``. ``(N, N)`` bool, row = child, column = parent, diagonal False."""
    p = (overlap > overlap.T) & (overlap > threshold)
    p.fill_diagonal_(False)
    return p


@dataclass(frozen=True)
class Relations:
    """Predicted relations: ``overlap[i, j] = ov(i->j)`` and ``parent[i, j]`` (``j`` contains
    ``i`` by :func:`parent_rule` at ``threshold``)."""

    overlap: Tensor
    parent: Tensor
    threshold: float
    names: tuple[str, ...] | None = None

    def to_dataframe(self) -> Any:
        """One row per predicted (child, parent) pair with both overlap directions."""
        import pandas as pd

        names = self.names or tuple(str(i) for i in range(self.overlap.shape[0]))
        rows = [{"child": names[i], "parent": names[j],
                 "ov(child->parent)": float(self.overlap[i, j]),
                 "ov(parent->child)": float(self.overlap[j, i])}
                for i, j in self.parent.nonzero().tolist()]
        return pd.DataFrame(rows, columns=["child", "parent", "ov(child->parent)",
                                           "ov(parent->child)"])


# ---------------------------------------------------------------------------------------------
# Model


def _weights(weights: LossWeights | str) -> LossWeights:
    if isinstance(weights, LossWeights):
        return weights
    presets = {"hierarchy": HIERARCHY_WEIGHTS, "taskonomy": TASKONOMY_WEIGHTS}
    if weights not in presets:
        raise ValueError(f"weights: expected a LossWeights or one of {sorted(presets)}, got "
                         f"{weights!r}")
    return presets[weights]


class Task2Box:
    """Feature -> box model (or, with ``free=True``, one learnable box per item).

    ``fit(features, overlap, train_mask)`` trains full-batch with Adam (paper: lr 1e-3, 1 350
    epochs for hierarchies, 3 000 for Taskonomy; free boxes default to lr 0.05);
    ``boxes(features)`` embeds any items, including new ones, with one forward pass in eval mode
    (BatchNorm running statistics), as in the paper's novel-dataset protocol. Overlap
    convention: ``overlap[i, j]`` is the fraction of item ``i`` inside item ``j``.
    """

    def __init__(self, dim: int = 2, hidden: Sequence[int] = (1024, 256, 128), *,
                 free: bool = False, batchnorm: bool = True, lr: float | None = None,
                 weights: LossWeights | str = "hierarchy",
                 volume_temperature: float = VOLUME_TEMPERATURE,
                 intersection_temperature: float = INTERSECTION_TEMPERATURE) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected an int >= 1, got {dim!r}")
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden: expected positive widths, got {hidden}")
        if lr is None:
            lr = 0.05 if free else 1e-3  # free boxes move their corners directly: larger steps
        if lr <= 0:
            raise ValueError(f"lr: expected > 0, got {lr}")
        self.dim = dim
        self.hidden = hidden
        self.free = bool(free)
        self.batchnorm = bool(batchnorm)
        self.lr = float(lr)
        self.weights = _weights(weights)
        self.volume_temperature = float(volume_temperature)
        self.intersection_temperature = float(intersection_temperature)
        self.net: nn.Module | None = None
        self.in_dim: int | None = None
        self.n_items: int | None = None
        self.history: list[float] = []

    def __repr__(self) -> str:
        state = "unfitted" if self.net is None else f"fitted, {len(self.history)} epochs"
        mode = "free" if self.free else f"hidden={self.hidden}"
        return f"Task2Box(dim={self.dim}, {mode}, {state})"

    # -- construction -------------------------------------------------------------------------

    def _build(self, n_or_in: int, seed: int) -> nn.Module:
        g = torch.Generator().manual_seed(seed)
        if self.free:
            return FreeBoxes(n_or_in, self.dim, generator=g)
        # nn.Linear draws its initial weights from the global RNG: seed it inside fork_rng so the
        # caller's global RNG state is left untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return BoxNet(n_or_in, self.dim, self.hidden, self.batchnorm)

    def _require_fit(self) -> nn.Module:
        if self.net is None:
            raise RuntimeError("Task2Box: call fit() (or load()) before predicting boxes")
        return self.net

    # -- training -----------------------------------------------------------------------------

    def fit(self, features: Any, overlap: Any, train_mask: Any = None, epochs: int = 1350,
            seed: int = 0) -> Task2Box:
        """Train on ``features`` ``(N, D)`` (None in free mode) to match ``overlap`` ``(N, N)``
        in [0, 1] on the ordered pairs where ``train_mask`` is True (default: all off-diagonal
        pairs; NaN targets are never used). Returns self; per-epoch losses in ``history``."""
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs: expected an int >= 1, got {epochs!r}")
        if self.free:
            if features is not None:
                raise ValueError("features: a free-box Task2Box learns one box per item; pass "
                                 "features=None")
            x = None
            target = check_overlap(overlap, allow_nan=True)
        else:
            x = check_features(features)
            target = check_overlap(overlap, n=x.shape[0], allow_nan=True)
        n = target.shape[0]
        mask = (~torch.eye(n, dtype=torch.bool) if train_mask is None
                else _check_mask(train_mask, n) & ~torch.eye(n, dtype=torch.bool))
        mask = mask & ~torch.isnan(target)
        if not mask.any():
            raise ValueError("train_mask: no training pair (all False off the diagonal, or "
                             "their targets are NaN)")
        if not self.free and n < 2 and self.batchnorm:
            raise ValueError(f"features: BatchNorm needs at least 2 items, got {n}")
        target = torch.nan_to_num(target, nan=0.0)
        net = self._build(n if self.free else x.shape[1], seed)
        self.net, self.n_items = net, n
        self.in_dim = None if self.free else x.shape[1]
        optimiser = adam(net.parameters(), self.lr)
        net.train()
        self.history = []
        plan = _LossPlan(target, mask)
        for epoch in range(epochs):
            optimiser.zero_grad(set_to_none=True)
            lo, hi = net(x)
            terms = plan.loss(lo, hi, self.weights, self.volume_temperature,
                              self.intersection_temperature)
            terms.total.backward()
            optimiser.step()
            self.history.append(float(terms.total.detach()))
            if epoch % 250 == 0:
                logger.debug("epoch %d: loss %.4g (overlap %.4g)", epoch, self.history[-1],
                             float(terms.overlap))
        net.eval()
        return self

    # -- prediction ---------------------------------------------------------------------------

    @torch.no_grad()
    def boxes(self, features: Any = None) -> tuple[Tensor, Tensor]:
        """Boxes ``(lo, hi)``, each ``(N, dim)``, of ``features`` (eval mode); in free mode the
        learned boxes (``features`` must be None)."""
        net = self._require_fit()
        net.eval()
        if self.free:
            if features is not None:
                raise ValueError("features: a free-box Task2Box has no feature network; pass "
                                 "features=None")
            lo, hi = net(None)
        else:
            x = check_features(features)
            if x.shape[1] != self.in_dim:
                raise ValueError(f"features: expected {self.in_dim} columns (as in fit), got "
                                 f"{x.shape[1]}")
            lo, hi = net(x)
        return lo.detach().clone(), hi.detach().clone()

    def overlap(self, features: Any = None) -> Tensor:
        """``(N, N)`` predicted ``ov(i -> j)`` of the items' boxes (soft boxes, as trained)."""
        lo, hi = self.boxes(features)
        with torch.no_grad():
            return pairwise_log_overlap(lo, hi, self.volume_temperature,
                                        self.intersection_temperature).exp()

    def predict_relations(self, features: Any = None, threshold: float = 0.5,
                          names: Sequence[str] | None = None) -> Relations:
        """Predicted parents by Task2Box's rule (:func:`parent_rule`) at ``threshold`` (tune it
        on validation pairs with :func:`visloupe.core.boxes.hierarchy_f1`)."""
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold: expected a value in [0, 1], got {threshold}")
        ov = self.overlap(features)
        if names is not None and len(names) != ov.shape[0]:
            raise ValueError(f"names: expected {ov.shape[0]} names, got {len(names)}")
        return Relations(ov, parent_rule(ov, threshold), float(threshold),
                         tuple(str(n) for n in names) if names is not None else None)

    # -- persistence --------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The JSON-serialisable settings needed to rebuild this model."""
        return {"format": "visloupe.task2box/1", "dim": self.dim, "hidden": list(self.hidden),
                "free": self.free, "batchnorm": self.batchnorm, "lr": self.lr,
                "weights": asdict(self.weights), "volume_temperature": self.volume_temperature,
                "intersection_temperature": self.intersection_temperature,
                "in_dim": self.in_dim, "n_items": self.n_items, "epochs_trained":
                len(self.history)}

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.safetensors`` (weights) and ``<path>.json`` (settings); returns the
        safetensors path. ``path`` may carry either suffix or none."""
        from safetensors.torch import save_file

        net = self._require_fit()
        stem = _stem(path)
        stem.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(tensors, str(stem.with_suffix(".safetensors")))
        stem.with_suffix(".json").write_text(json.dumps(self.config(), indent=2))
        return stem.with_suffix(".safetensors")

    @classmethod
    def load(cls, path: str | Path) -> Task2Box:
        """Rebuild a model written by :meth:`save` (no pickle involved)."""
        from safetensors.torch import load_file

        stem = _stem(path)
        meta_path = stem.with_suffix(".json")
        if not meta_path.exists():
            raise FileNotFoundError(f"path: {meta_path} not found (save() writes .json beside "
                                    ".safetensors)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != "visloupe.task2box/1":
            raise ValueError(f"path: {meta_path} is not a visloupe Task2Box file")
        model = cls(dim=meta["dim"], hidden=meta["hidden"], free=meta["free"],
                    batchnorm=meta["batchnorm"], lr=meta["lr"],
                    weights=LossWeights(**meta["weights"]),
                    volume_temperature=meta["volume_temperature"],
                    intersection_temperature=meta["intersection_temperature"])
        model.in_dim, model.n_items = meta["in_dim"], meta["n_items"]
        net = model._build(meta["n_items"] if meta["free"] else meta["in_dim"], 0)
        net.load_state_dict(load_file(str(stem.with_suffix(".safetensors"))))
        net.eval()
        model.net = net
        model.history = [math.nan] * int(meta.get("epochs_trained", 0))
        return model


def _stem(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
