"""The ImageNet-1k label space, offline: wnids, readable class names, the WordNet graph above them.

Read from ``imagenet_wordnet.json`` (built by ``scripts/build_wordnet_hierarchy.py``): the 1 000
wnids in the standard class-index order (``timm/data/_info/imagenet_synsets.txt``, sorted wnids,
as every ImageNet-1k classifier's output index uses) and the WordNet 3.0 hypernym graph above them
(Princeton licence, ``WORDNET_LICENSE.txt`` beside the file). Models and Task2Box share it.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from importlib import resources

__all__ = ["imagenet_class_index", "imagenet_class_names", "imagenet_wnids", "wordnet_graph"]


@lru_cache(maxsize=1)
def wordnet_graph() -> dict:
    """``{"imagenet_classes": [wnid, ...], "synsets": {wnid: {name, lemmas, parents}}, ...}``."""
    text = resources.files("visloupe.core.data").joinpath("imagenet_wordnet.json")
    return json.loads(text.read_text())


def imagenet_wnids() -> list[str]:
    """The 1 000 ImageNet-1k wnids in class-index order (index 285 is ``n02124075``)."""
    return list(wordnet_graph()["imagenet_classes"])


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    synsets = wordnet_graph()["synsets"]
    first = [synsets[w]["lemmas"][0] for w in wordnet_graph()["imagenet_classes"]]
    repeated = {name for name, count in Counter(first).items() if count > 1}
    names = []
    for wnid, name in zip(wordnet_graph()["imagenet_classes"], first, strict=True):
        if name in repeated:  # "crane" the bird and the machine: name the parent synset too
            parent = synsets[synsets[wnid]["parents"][0]]["lemmas"][0]
            name = f"{name} ({parent})"
        names.append(name)
    return tuple(names)


def imagenet_class_names() -> list[str]:
    """Readable names in class-index order: each synset's first WordNet lemma ("Egyptian cat",
    "espresso"); the two names WordNet gives twice (crane, maillot) carry their parent's."""
    return list(_names())


def imagenet_class_index(name_or_wnid: str) -> int:
    """The class index of a readable name (as in :func:`imagenet_class_names`) or a wnid."""
    if name_or_wnid in wordnet_graph()["imagenet_classes"]:
        return wordnet_graph()["imagenet_classes"].index(name_or_wnid)
    names = _names()
    if name_or_wnid not in names:
        raise ValueError(f"name_or_wnid: expected an ImageNet-1k class name such as 'espresso' or "
                         f"a wnid such as 'n07920052', got {name_or_wnid!r}")
    return names.index(name_or_wnid)
