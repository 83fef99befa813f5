"""Evaluation protocols and baselines of Task2Box (Daroya, Sun, Maji, CVPR 2024).

- Splits: :func:`pair_split` (existing datasets: ordered pairs into train/val/test) and
  :func:`novel_split` (novel datasets: nodes held out entirely, embedded from features only).
- Metrics: :func:`hierarchy_f1` (F1 of the "is parent" class with the threshold tuned on the
  validation pairs, the paper's rule ``ov(c->p) > ov(p->c) and ov(c->p) > t``) and
  :func:`spearman` (rank correlation with task affinities, Table 3).
- Baselines on the same features: pair classifiers (MLP and linear on ``[e_i; e_j]``), KL between
  diagonal Gaussians, Task2Vec-style asymmetric cosine/Euclidean distances, random scores.

Score matrices follow the overlap convention: ``scores[i, j]`` is high when ``j`` contains
(is a parent of) ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .model import _check_mask, adam, check_features, check_overlap

__all__ = [
    "HierarchyScore",
    "PairClassifier",
    "asymmetric_distance_scores",
    "gaussian_kl_scores",
    "hierarchy_f1",
    "novel_masks",
    "novel_split",
    "pair_split",
    "random_scores",
    "spearman",
]

PAPER_THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))


# ---------------------------------------------------------------------------------------------
# Splits


def pair_split(n: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
               stratify: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Ordered off-diagonal pairs of ``n`` items split at random into boolean ``(n, n)`` train,
    val and test masks (the "existing datasets" protocol; the paper's 80 % supervision).
    ``stratify``: an ``(n, n)`` bool label matrix whose positives are split in the same
    proportions (so every split sees some parents)."""
    if n < 2:
        raise ValueError(f"n: expected at least 2 items, got {n}")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions: expected three non-negative numbers summing to 1, got "
                         f"{fractions}")
    g = torch.Generator().manual_seed(seed)
    off = ~torch.eye(n, dtype=torch.bool)
    groups = [off]
    if stratify is not None:
        lab = _check_mask(stratify, n, "stratify")
        groups = [off & lab, off & ~lab]
    masks = [torch.zeros(n, n, dtype=torch.bool) for _ in range(3)]
    for group in groups:
        idx = group.flatten().nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        a = int(round(fractions[0] * len(idx)))
        b = a + int(round(fractions[1] * len(idx)))
        for m, part in zip(masks, (idx[:a], idx[a:b], idx[b:]), strict=True):
            m.view(-1)[part] = True
    return masks[0], masks[1], masks[2]


def novel_split(ancestors: Tensor, n_val: int, n_test: int, seed: int = 0,
                candidates: Sequence[int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Hold out ``n_val`` + ``n_test`` nodes that have at least one ancestor (the paper takes
    orders/families under training classes: 10 val, 100 test) from ``candidates`` (default all
    such nodes). Returns index tensors ``(train, val, test)``; novel nodes are scored as children
    of the training nodes only."""
    a = torch.as_tensor(ancestors).bool()
    n = a.shape[0]
    pool = [i for i in (candidates if candidates is not None else range(n)) if a[i].any()]
    if n_val < 1 or n_test < 1 or n_val + n_test > len(pool):
        raise ValueError(f"n_val/n_test: expected >= 1 each and at most {len(pool)} novel "
                         f"candidates in total, got {n_val} + {n_test}")
    g = torch.Generator().manual_seed(seed)
    pick = torch.tensor(pool)[torch.randperm(len(pool), generator=g)]
    val, test = pick[:n_val].sort().values, pick[n_val:n_val + n_test].sort().values
    held = set(val.tolist()) | set(test.tolist())
    train = torch.tensor([i for i in range(n) if i not in held])
    return train, val, test


def novel_masks(n: int, train: Tensor, novel: Tensor) -> Tensor:
    """``(n, n)`` bool: the pairs (novel child row, training parent column)."""
    m = torch.zeros(n, n, dtype=torch.bool)
    m[novel[:, None], train[None, :]] = True
    return m


# ---------------------------------------------------------------------------------------------
# Metrics


@dataclass(frozen=True)
class HierarchyScore:
    """Test F1/precision/recall of the positive ("is parent") class at the validation-tuned
    ``threshold``; ``val_f1`` is the best validation F1."""

    f1: float
    precision: float
    recall: float
    threshold: float
    val_f1: float

    def to_dict(self) -> dict[str, float]:
        return {"f1": self.f1, "precision": self.precision, "recall": self.recall,
                "threshold": self.threshold, "val_f1": self.val_f1}


def _prf(pred: Tensor, labels: Tensor) -> tuple[float, float, float]:
    tp = int((pred & labels).sum())
    npred, npos = int(pred.sum()), int(labels.sum())
    p = tp / npred if npred else 0.0
    r = tp / npos if npos else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return f, p, r


def hierarchy_f1(scores: Any, labels: Any, val_mask: Any, test_mask: Any,
                 rule: Literal["asymmetric", "threshold"] = "asymmetric",
                 thresholds: Sequence[float] | Literal["quantile"] | None = None) -> HierarchyScore:
    """F1 of hierarchy prediction with the threshold picked on validation pairs (Task2Box).

    ``scores`` ``(N, N)``: ``scores[i, j]`` high when ``j`` is a parent of ``i`` (box overlap,
    classifier probability, negative distance); ``labels`` ``(N, N)`` bool ancestor matrix in the
    same orientation. ``rule="asymmetric"`` predicts a parent iff ``scores[i,j] > scores[j,i]`` and
    ``scores[i,j] > t`` (the paper's rule for boxes); ``"threshold"`` uses ``scores[i,j] > t``.
    ``thresholds``: default the paper's grid 0.1 ... 0.9; ``"quantile"`` tries 200 quantiles of the
    validation scores (for unbounded scores such as distances).
    """
    s = torch.as_tensor(scores, dtype=torch.float64)
    if s.dim() != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"scores: expected a square (N, N) matrix, got {tuple(s.shape)}")
    n = s.shape[0]
    lab = _check_mask(labels, n, "labels")
    val, test = _check_mask(val_mask, n, "val_mask"), _check_mask(test_mask, n, "test_mask")
    if not val.any() or not test.any():
        raise ValueError("val_mask/test_mask: each needs at least one pair")
    if rule == "asymmetric":
        base = s > s.T
    elif rule == "threshold":
        base = torch.ones_like(lab)
    else:
        raise ValueError(f"rule: expected 'asymmetric' or 'threshold', got {rule!r}")
    if thresholds is None:
        grid = list(PAPER_THRESHOLDS)
    elif isinstance(thresholds, str):
        if thresholds != "quantile":
            raise ValueError(f"thresholds: expected a sequence or 'quantile', got {thresholds!r}")
        vals = s[val].numpy()
        grid = sorted(set(np.quantile(vals, np.linspace(0.0, 1.0, 201)).tolist()))
    else:
        grid = [float(t) for t in thresholds]
        if not grid:
            raise ValueError("thresholds: expected at least one threshold")
    best_t, best_f = grid[0], -1.0
    for t in grid:
        f, _, _ = _prf((base & (s > t))[val], lab[val])
        if f > best_f:
            best_t, best_f = t, f
    f, p, r = _prf((base & (s > best_t))[test], lab[test])
    return HierarchyScore(f1=f, precision=p, recall=r, threshold=float(best_t), val_f1=best_f)


def spearman(pred: Any, target: Any, mask: Any | None = None) -> float:
    """Spearman rank correlation of ``pred`` and ``target`` over ``mask`` (default: all
    off-diagonal entries), skipping NaN targets (Task2Box Table 3; scipy's ``spearmanr``)."""
    from scipy.stats import spearmanr

    p = torch.as_tensor(pred, dtype=torch.float64)
    t = torch.as_tensor(target, dtype=torch.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred/target: expected one shape, got {tuple(p.shape)} and "
                         f"{tuple(t.shape)}")
    if mask is None:
        m = ~torch.eye(p.shape[0], dtype=torch.bool) if p.dim() == 2 else torch.ones_like(p).bool()
    else:
        m = torch.as_tensor(mask).bool()
    m = m & ~torch.isnan(t) & ~torch.isnan(p)
    if int(m.sum()) < 3:
        raise ValueError(f"mask: expected at least 3 pairs to rank, got {int(m.sum())}")
    return float(spearmanr(p[m].numpy(), t[m].numpy()).statistic)


# ---------------------------------------------------------------------------------------------
# Baselines


def random_scores(n: int, seed: int = 0) -> Tensor:
    """Uniform random scores ``(n, n)`` (the papers' random baseline, p = 0.5 at t = 0.5)."""
    return torch.rand(n, n, generator=torch.Generator().manual_seed(seed))


def gaussian_kl_scores(mean: Any, var: Any) -> Tensor:
    """``scores[i, j] = -KL(N_i || N_j)`` for diagonal Gaussians (dataset features ``[mean;
    var]``): a child's narrow distribution inside its parent's broad one has a small KL."""
    mu = check_features(mean, "mean").double()
    v = check_features(var, "var", n=mu.shape[0]).double()
    if v.shape != mu.shape or (v <= 0).any():
        raise ValueError(f"var: expected positive values of shape {tuple(mu.shape)}")
    # KL(i||j) = 1/2 sum_k [v_i/v_j + (mu_j - mu_i)^2/v_j - 1 + log v_j - log v_i]
    inv = 1.0 / v
    term_ratio = v @ inv.T
    term_mean = (mu * mu) @ inv.T - 2 * mu @ (mu * inv).T + (mu * mu * inv).sum(1)[None, :]
    logdet = torch.log(v).sum(1)
    kl = 0.5 * (term_ratio + term_mean - mu.shape[1] + logdet[None, :] - logdet[:, None])
    return (-kl).float()


def asymmetric_distance_scores(features: Any, metric: Literal["cosine", "euclidean"] = "cosine",
                               alpha: float = 0.15, trivial: Any | None = None) -> Tensor:
    """Task2Vec's asymmetric distance as a parent score (Achille et al., ICCV 2019):
    ``scores[i, j] = -(d(j, i) - alpha * d(j, t0))``, i.e. a complex (far from the trivial
    embedding ``t0``, default the features' mean) candidate parent ``j`` close to ``i`` scores
    high."""
    x = check_features(features).double()
    t0 = x.mean(0) if trivial is None else torch.as_tensor(trivial, dtype=torch.float64)
    if metric == "cosine":
        xn = x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
        d = 1 - xn @ xn.T
        d0 = 1 - xn @ (t0 / t0.norm().clamp(min=1e-12))
    elif metric == "euclidean":
        d = torch.cdist(x, x)
        d0 = (x - t0).norm(dim=1)
    else:
        raise ValueError(f"metric: expected 'cosine' or 'euclidean', got {metric!r}")
    return (-(d.T - alpha * d0[None, :])).float()


class PairClassifier:
    """Baseline of Task2Box: a classifier on concatenated features ``[e_i; e_j]`` predicting the
    relation of the ordered pair. ``kind="mlp"``: ``2D -> 1024 -> 256 -> 128 -> 1``;
    ``"linear"``: ``2D -> 1``; sigmoid output. ``loss="bce"`` for hierarchies, ``"mse"`` for
    affinities. Trained with Adam (lr 1e-3) on shuffled mini-batches of training pairs (the paper:
    batches of 16 for 1 500 epochs; we default to fewer, larger batches to stay fast on CPU)."""

    def __init__(self, kind: Literal["mlp", "linear"] = "mlp",
                 hidden: Sequence[int] = (1024, 256, 128), loss: Literal["bce", "mse"] = "bce",
                 lr: float = 1e-3) -> None:
        if kind not in ("mlp", "linear"):
            raise ValueError(f"kind: expected 'mlp' or 'linear', got {kind!r}")
        if loss not in ("bce", "mse"):
            raise ValueError(f"loss: expected 'bce' or 'mse', got {loss!r}")
        self.kind, self.hidden, self.loss, self.lr = kind, tuple(hidden), loss, lr
        self.net: nn.Module | None = None

    def _build(self, in_dim: int, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.kind == "linear":
                return nn.Linear(2 * in_dim, 1)
            layers: list[nn.Module] = []
            width = 2 * in_dim
            for h in self.hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            return nn.Sequential(*layers, nn.Linear(width, 1))

    def fit(self, features: Any, targets: Any, train_mask: Any, epochs: int = 20,
            batch_size: int = 256, seed: int = 0) -> PairClassifier:
        """Train on the pairs of ``train_mask`` with ``targets`` ``(N, N)`` in [0, 1]."""
        x = check_features(features)
        n = x.shape[0]
        y = check_overlap(targets, n, "targets", allow_nan=True)
        mask = _check_mask(train_mask, n) & ~torch.isnan(y) & ~torch.eye(n, dtype=torch.bool)
        pairs = mask.nonzero()
        if len(pairs) == 0:
            raise ValueError("train_mask: no training pair")
        mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
        self._norm = (mu, sd)
        xs = (x - mu) / sd
        self.net = self._build(x.shape[1], seed)
        opt = adam(self.net.parameters(), self.lr)
        g = torch.Generator().manual_seed(seed)
        lossf = nn.BCEWithLogitsLoss() if self.loss == "bce" else None
        self.net.train()
        for _ in range(epochs):
            order = pairs[torch.randperm(len(pairs), generator=g)]
            for k in range(0, len(order), batch_size):
                b = order[k:k + batch_size]
                if len(b) < 2:
                    continue
                logit = self.net(torch.cat([xs[b[:, 0]], xs[b[:, 1]]], 1)).squeeze(1)
                t = y[b[:, 0], b[:, 1]]
                loss = lossf(logit, t) if lossf else ((torch.sigmoid(logit) - t) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.net.eval()
        return self

    @torch.no_grad()
    def scores(self, features: Any) -> Tensor:
        """``(N, N)`` predicted probabilities for every ordered pair of ``features``."""
        if self.net is None:
            raise RuntimeError("PairClassifier: call fit() first")
        x = check_features(features)
        mu, sd = self._norm
        xs = (x - mu) / sd
        n = xs.shape[0]
        left = xs[:, None, :].expand(n, n, -1)
        right = xs[None, :, :].expand(n, n, -1)
        out = torch.sigmoid(self.net(torch.cat([left, right], -1).reshape(n * n, -1)))
        return out.reshape(n, n)
