"""Hierarchies of datasets for Task2Box: each node is a dataset (the images of its leaf classes).

Overlap between datasets is ``|L_i ∩ L_j| / |L_i|`` over their leaf-class sets ``L``: 1 from a
child to an ancestor, ``|child| / |parent|`` back, 0 between disjoint nodes (the target Task2Box
regresses box overlap onto for hierarchies; Daroya et al., CVPR 2024). Two sources are offered:
random trees (no data at all) and the WordNet 3.0 hierarchy above the ImageNet-1k classes, read
from a small JSON built by ``scripts/build_wordnet_hierarchy.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..data.imagenet import wordnet_graph

__all__ = [
    "Hierarchy",
    "HierarchyFeatures",
    "hierarchical_features",
    "imagenet_hierarchy",
    "synthetic_hierarchy",
]


@dataclass(frozen=True)
class Hierarchy:
    """Datasets as sets of leaf classes.

    ``names[i]`` names dataset ``i``; ``leaves[i]`` is its sorted tuple of leaf-class ids
    (indices into ``leaf_names``); ``groups[i]`` is a coarse group label (e.g. the top-level
    ancestor) for colouring. Nodes are distinct leaf sets.
    """

    names: tuple[str, ...]
    leaves: tuple[tuple[int, ...], ...]
    leaf_names: tuple[str, ...]
    groups: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.names) != len(self.leaves):
            raise ValueError(f"names: expected {len(self.leaves)} names (one per leaf set), got "
                             f"{len(self.names)}")
        if self.groups and len(self.groups) != len(self.names):
            raise ValueError(f"groups: expected {len(self.names)} labels, got {len(self.groups)}")
        if any(len(s) == 0 for s in self.leaves):
            raise ValueError("leaves: every dataset needs at least one leaf class")

    def __len__(self) -> int:
        return len(self.names)

    def _membership(self) -> Tensor:
        m = torch.zeros(len(self.names), len(self.leaf_names), dtype=torch.float64)
        for i, s in enumerate(self.leaves):
            m[i, list(s)] = 1.0
        return m

    def overlap(self) -> Tensor:
        """``(N, N)`` float32 ``O[i, j] = |L_i ∩ L_j| / |L_i|`` (fraction of ``i`` inside ``j``)."""
        m = self._membership()
        inter = m @ m.T
        return (inter / m.sum(dim=1, keepdim=True)).float()

    def ancestors(self) -> Tensor:
        """``(N, N)`` bool ``A[c, p]``: ``p`` is an ancestor of ``c`` (``L_c`` a proper subset of
        ``L_p``). Same orientation as :meth:`overlap`: row = child, column = parent."""
        m = self._membership()
        inter = m @ m.T
        size = m.sum(dim=1)
        contained = inter == size[:, None]  # L_c ⊆ L_p
        return contained & (size[:, None] < size[None, :])

    def depth(self) -> Tensor:
        """``(N,)`` number of ancestors of each node (0 for roots)."""
        return self.ancestors().sum(dim=1)

    def subset(self, indices: Sequence[int]) -> Hierarchy:
        """The hierarchy restricted to the nodes ``indices`` (leaf ids unchanged)."""
        idx = [int(i) for i in indices]
        return Hierarchy(tuple(self.names[i] for i in idx), tuple(self.leaves[i] for i in idx),
                         self.leaf_names,
                         tuple(self.groups[i] for i in idx) if self.groups else ())


# ---------------------------------------------------------------------------------------------
# Random trees


def synthetic_hierarchy(depth: int = 3, branching: tuple[int, int] = (2, 5), roots: int = 3,
                        leaves_per_node: tuple[int, int] = (2, 4), seed: int = 0) -> Hierarchy:
    """A random forest of ``roots`` trees: each internal node has ``branching`` (inclusive range)
    children down to ``depth`` levels; nodes at the last level get ``leaves_per_node`` leaf
    classes. Every node is a dataset; groups are the roots' names."""
    if depth < 1 or roots < 1:
        raise ValueError(f"depth/roots: expected >= 1, got depth={depth}, roots={roots}")
    for name, (a, b) in (("branching", branching), ("leaves_per_node", leaves_per_node)):
        if not 1 <= a <= b:
            raise ValueError(f"{name}: expected (low, high) with 1 <= low <= high, got {(a, b)}")
    rng = np.random.default_rng(seed)
    names: list[str] = []
    leaf_sets: list[list[int]] = []
    groups: list[str] = []
    leaf_names: list[str] = []

    def grow(name: str, level: int, group: str) -> list[int]:
        index = len(names)
        names.append(name)
        leaf_sets.append([])
        groups.append(group)
        if level == depth:
            mine = []
            for k in range(int(rng.integers(leaves_per_node[0], leaves_per_node[1] + 1))):
                mine.append(len(leaf_names))
                leaf_names.append(f"{name}.{k}")
        else:
            mine = []
            for k in range(int(rng.integers(branching[0], branching[1] + 1))):
                mine += grow(f"{name}.{k}", level + 1, group)
        leaf_sets[index] = mine
        return mine

    for r in range(roots):
        grow(f"t{r}", 1, f"t{r}")
    return Hierarchy(tuple(names), tuple(tuple(sorted(s)) for s in leaf_sets), tuple(leaf_names),
                     tuple(groups))


# ---------------------------------------------------------------------------------------------
# WordNet / ImageNet


def imagenet_hierarchy(root: str | None = "instrumentality.n.03", min_leaves: int = 2,
                       group_level: int = 1) -> Hierarchy:
    """The ImageNet-1k WordNet hierarchy as datasets, offline (WordNet 3.0, Princeton licence).

    Every WordNet synset under ``root`` (a name like ``"instrumentality.n.03"``, a wnid like
    ``"n03575240"``, or None for all of WordNet) with at least ``min_leaves`` ImageNet-1k classes
    below it is a dataset; synsets with identical leaf sets are merged (the most specific name is
    kept). ``root`` itself is excluded. Groups: the ancestor ``group_level`` steps below ``root``
    (Task2Box Table 2 uses ``instrumentality.n.03``, whose 8 children with ImageNet leaves are
    device, container, conveyance, equipment, implement, furnishing, toiletry, system).
    """
    graph = wordnet_graph()
    synsets: dict[str, dict] = graph["synsets"]
    classes: list[str] = graph["imagenet_classes"]
    by_name = {v["name"]: k for k, v in synsets.items()}
    if root is not None:
        root_id = root if root in synsets else by_name.get(root)
        if root_id is None:
            raise ValueError(f"root: expected a WordNet synset name such as "
                             f"'instrumentality.n.03' or a wnid above the ImageNet classes, got "
                             f"{root!r}")
    else:
        root_id = None
    if min_leaves < 1:
        raise ValueError(f"min_leaves: expected >= 1, got {min_leaves}")

    ancestors: dict[str, set[str]] = {}

    def above(wnid: str) -> set[str]:
        if wnid not in ancestors:
            out: set[str] = set()
            for p in synsets[wnid]["parents"]:
                out.add(p)
                out |= above(p)
            ancestors[wnid] = out
        return ancestors[wnid]

    leaf_sets: dict[str, set[int]] = {}
    for k, wnid in enumerate(classes):
        for s in above(wnid) | {wnid}:
            leaf_sets.setdefault(s, set()).add(k)
    if root_id is not None:
        inside = leaf_sets[root_id]
        chosen = [s for s in leaf_sets if s != root_id and root_id in above(s)]
    else:
        inside = set(range(len(classes)))
        chosen = list(leaf_sets)
    chosen = [s for s in chosen if len(leaf_sets[s]) >= min_leaves]
    # Merge identical leaf sets, keeping the deepest (most specific) synset.
    best: dict[frozenset[int], str] = {}
    for s in chosen:
        key = frozenset(leaf_sets[s])
        if key not in best or len(above(s)) > len(above(best[key])):
            best[key] = s
    order = sorted(best.values(), key=lambda s: (-len(leaf_sets[s]), synsets[s]["name"]))
    # groups: the ancestor exactly ``group_level`` levels under the root along some path
    top = {s for s in synsets if root_id is None and not synsets[s]["parents"]} if root_id is None \
        else {root_id}
    children: dict[str, list[str]] = {}
    for k, v in synsets.items():
        for p in v["parents"]:
            children.setdefault(p, []).append(k)
    level_of: dict[str, int] = {}
    frontier = list(top)
    for t in frontier:
        level_of[t] = 0
    while frontier:
        nxt = []
        for s in frontier:
            for c in children.get(s, ()):
                if c not in level_of:
                    level_of[c] = level_of[s] + 1
                    nxt.append(c)
        frontier = nxt

    def group(s: str) -> str:
        cands = [a for a in above(s) | {s} if level_of.get(a) == group_level]
        if not cands:
            return synsets[s]["name"]
        return min(synsets[a]["name"] for a in cands)

    leaf_ids = sorted(inside)
    remap = {k: i for i, k in enumerate(leaf_ids)}
    return Hierarchy(
        names=tuple(synsets[s]["name"] for s in order),
        leaves=tuple(tuple(sorted(remap[k] for k in leaf_sets[s])) for s in order),
        leaf_names=tuple(synsets[classes[k]]["name"] for k in leaf_ids),
        groups=tuple(group(s) for s in order),
    )


# ---------------------------------------------------------------------------------------------
# Features


@dataclass(frozen=True)
class HierarchyFeatures:
    """Dataset features: ``mean`` ``(N, D)`` and ``mean_var`` ``(N, 2D)`` (``[mean; var]``),
    the analogues of Task2Box's "mean (CLIP)" and "mean, var (CLIP)" representations."""

    mean: Tensor
    var: Tensor

    @property
    def mean_var(self) -> Tensor:
        return torch.cat([self.mean, self.var], dim=1)


def hierarchical_features(hierarchy: Hierarchy, dim: int = 64, samples_per_leaf: int = 20,
                          node_scale: float = 1.0, leaf_scale: float = 1.0,
                          sample_noise: float = 1.0, feature_noise: float = 0.0,
                          seed: int = 0) -> HierarchyFeatures:
    """Synthetic "CLIP-like" embeddings with the hierarchy's structure, then pooled per dataset.

    Each dataset node ``n`` draws a direction ``v_n ~ N(0, node_scale² I)``; a leaf class's vector
    is the sum of ``v_n`` over the datasets containing it plus its own ``N(0, leaf_scale² I)``;
    image embeddings are class vectors plus ``N(0, sample_noise² I)``. A dataset's features are
    the mean and variance of its images' embeddings, plus optional ``feature_noise``.
    """
    if dim < 1 or samples_per_leaf < 1:
        raise ValueError(f"dim/samples_per_leaf: expected >= 1, got {dim}, {samples_per_leaf}")
    g = torch.Generator().manual_seed(seed)
    n, n_leaves = len(hierarchy), len(hierarchy.leaf_names)
    member = hierarchy._membership().float()  # (N, L)
    nodes = torch.randn(n, dim, generator=g) * node_scale
    classes = member.T @ nodes + torch.randn(n_leaves, dim, generator=g) * leaf_scale
    x = classes[:, None, :] + torch.randn(n_leaves, samples_per_leaf, dim,
                                          generator=g) * sample_noise
    s1 = x.sum(dim=1)  # (L, D)
    s2 = (x * x).sum(dim=1)
    count = member.sum(dim=1, keepdim=True) * samples_per_leaf
    mean = member @ s1 / count
    var = (member @ s2 / count - mean * mean).clamp(min=1e-8)
    if feature_noise > 0:
        mean = mean + torch.randn(mean.shape, generator=g) * feature_noise
        var = var * torch.exp(torch.randn(var.shape, generator=g) * feature_noise)
    return HierarchyFeatures(mean=mean, var=var)
