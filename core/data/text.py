"""A small synthetic sentiment corpus and its word-level tokenizer.

Why: token-level attribution (Grad-CAM for text CNNs, sanity checks on text) needs a model that
trains in seconds offline and a corpus where the right answer is known. Reviews are built from
templates: a polarity word decides the label, a negation right before it ("not", "never",
"did not") flips it, intensifiers and neutral filler add words that carry no label. Because the
label is the XOR of "negated" and "polar word", a bag of words cannot solve it; word n-grams can
(a Kim-style CNN, Kim 2014, "Convolutional Neural Networks for Sentence Classification").
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
import torch

TEXT_CLASSES: tuple[str, ...] = ("negative", "positive")

POSITIVE_ADJ = ("good", "great", "excellent", "wonderful", "brilliant", "delightful",
                "enjoyable", "superb", "charming", "fantastic")
NEGATIVE_ADJ = ("bad", "terrible", "awful", "boring", "dull", "horrible", "poor",
                "disappointing", "mediocre", "tedious")
# (past tense, base form)
POSITIVE_VERB = (("loved", "love"), ("enjoyed", "enjoy"), ("liked", "like"), ("adored", "adore"))
NEGATIVE_VERB = (("hated", "hate"), ("disliked", "dislike"), ("despised", "despise"),
                 ("loathed", "loathe"))
INTENSIFIERS = ("very", "really", "extremely", "truly", "quite", "incredibly", "so")
VERB_INTENSIFIERS = ("really", "truly", "absolutely")
SUBJECTS = ("the movie", "this film", "the plot", "the acting", "the soundtrack", "the ending",
            "the story", "the cast", "the dialogue", "the script", "the camera work",
            "the pacing")
PREFIXES = ("honestly ,", "overall ,", "in my opinion ,", "to be fair ,", "i think", "for me ,",
            "frankly ,", "all in all ,")
NEUTRAL = ("we saw it on a sunday .", "it runs about two hours .", "the theater was half full .",
           "my friend picked it .", "it came out last year .", "i watched it at home .",
           "the tickets were cheap .", "there is a sequel .", "it is based on a book .")
NEGATORS = ("not", "never")

_TOKEN_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def _adj_clause(rng: np.random.Generator, positive: bool) -> str:
    """'<subject> was [not] [very] <adj>' whose meaning is `positive`."""
    negated = rng.random() < 0.45
    word_positive = positive != negated
    adj = str(rng.choice(POSITIVE_ADJ if word_positive else NEGATIVE_ADJ))
    subject = str(rng.choice(SUBJECTS))
    if negated:
        head = f"{rng.choice(('was', 'is'))} {rng.choice(NEGATORS)}"
    else:
        head = str(rng.choice(("was", "is", "felt", "seemed")))
    intens = f"{rng.choice(INTENSIFIERS)} " if rng.random() < 0.4 else ""
    if negated and not word_positive:
        intens = ""  # "not very bad" is not clearly positive; keep labels unambiguous
    return f"{subject} {head} {intens}{adj}"


def _verb_clause(rng: np.random.Generator, positive: bool) -> str:
    """'i [did not|never] [really] <verb> <subject>' whose meaning is `positive`."""
    negated = rng.random() < 0.45
    word_positive = positive != negated
    verbs = POSITIVE_VERB if word_positive else NEGATIVE_VERB
    past, base = verbs[int(rng.integers(len(verbs)))]
    subject = str(rng.choice(SUBJECTS))
    intens = f"{rng.choice(VERB_INTENSIFIERS)} " if rng.random() < 0.3 else ""
    if negated and not word_positive:
        intens = ""  # "did not really hate" is not clearly positive
    if negated:
        if rng.random() < 0.5:
            return f"i did not {intens}{base} {subject}"
        return f"i never {intens}{past} {subject}"
    return f"i {intens}{past} {subject}"


def _review(rng: np.random.Generator, positive: bool) -> str:
    clause = _verb_clause if rng.random() < 0.3 else _adj_clause
    text = clause(rng, positive)
    if rng.random() < 0.35:
        text = f"{text} and {_adj_clause(rng, positive)}"
    if rng.random() < 0.4:
        text = f"{rng.choice(PREFIXES)} {text}"
    text = f"{text} ."
    if rng.random() < 0.4:
        neutral = str(rng.choice(NEUTRAL))
        text = f"{neutral} {text}" if rng.random() < 0.5 else f"{text} {neutral}"
    return text


def _is_test_text(text: str) -> bool:
    """Fixed hash partition of the sentence space: the splits can never share a sentence."""
    return zlib.crc32(text.encode("utf-8")) % 5 == 0


def generate_text(n: int, split: str, seed: int) -> tuple[list[str], list[int]]:
    """``n`` unique reviews of ``split`` with balanced labels (0 negative, 1 positive)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7, 0 if split == "train" else 1]))
    labels = rng.permutation(np.arange(n) % 2)
    want_test = split == "test"
    seen: set[str] = set()
    texts: list[str] = []
    for label in labels:
        for _ in range(10_000):
            text = _review(rng, bool(label))
            if text not in seen and _is_test_text(text) == want_test:
                break
        else:  # pragma: no cover - the sentence space is far larger than any sensible n
            raise ValueError(f"n={n} is too large for the text corpus's sentence space")
        seen.add(text)
        texts.append(text)
    return texts, [int(x) for x in labels]


def _all_words() -> list[str]:
    pieces: list[str] = [*POSITIVE_ADJ, *NEGATIVE_ADJ, *INTENSIFIERS, *VERB_INTENSIFIERS,
                         *SUBJECTS, *PREFIXES, *NEUTRAL, *NEGATORS,
                         "was is felt seemed i did and ."]
    pieces += [w for pair in (*POSITIVE_VERB, *NEGATIVE_VERB) for w in pair]
    return sorted({t for p in pieces for t in _tokens(p)})


class TextTokenizer:
    """Word-level tokenizer for the built-in ``text`` corpus.

    Lower-cases, splits on whitespace and punctuation (punctuation marks become tokens).
    ``<pad>`` is id 0 and ``<unk>`` id 1; the corpus words follow in sorted order, so the
    vocabulary is the same in every process.
    """

    pad_token = "<pad>"
    unk_token = "<unk>"

    def __init__(self, words: Sequence[str]) -> None:
        self.vocab: dict[str, int] = {self.pad_token: 0, self.unk_token: 1}
        for w in words:
            self.vocab.setdefault(w, len(self.vocab))
        self._inverse = {i: w for w, i in self.vocab.items()}

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={len(self)})"

    def tokens(self, text: str) -> list[str]:
        """The token strings of ``text`` (lower-cased words and punctuation marks)."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        return _tokens(text)

    def encode(self, texts: Sequence[str] | str, max_len: int | None = None,
               min_len: int = 1) -> torch.Tensor:
        """Token ids, LongTensor ``(N, T)``; a single str gives ``N = 1``.

        Rows are right-padded with ``pad_id`` to ``max_len`` (longer texts are truncated) or, when
        ``max_len`` is None, to the longest text but at least ``min_len`` (a CNN with kernel
        width k needs ``T >= k``). Unknown words map to ``unk_id``.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts: expected a str or a sequence of str, "
                            f"got {type(texts).__name__}")
        if max_len is not None and (not isinstance(max_len, int) or max_len < 1):
            raise ValueError(f"max_len: expected a positive int or None, got {max_len!r}")
        ids = [[self.vocab.get(t, 1) for t in _tokens(text)] for text in texts]
        width = max_len if max_len is not None else max([min_len, *(len(r) for r in ids)])
        out = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            row = row[:width]
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_pad: bool = True) -> list[str]:
        """Token strings of one row of ids (1-D); padding is dropped unless ``skip_pad=False``."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids: expected a 1-D row of ids, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        out = []
        for i in ids:
            if skip_pad and int(i) == 0:
                continue
            if int(i) not in self._inverse:
                raise ValueError(f"ids: id {int(i)} is outside the vocabulary (size {len(self)})")
            out.append(self._inverse[int(i)])
        return out


def text_tokenizer() -> TextTokenizer:
    """A tokenizer whose vocabulary covers every word of the built-in ``text`` corpus.

    A fresh object each call (same vocabulary), so callers can never alter a shared one.
    """
    return TextTokenizer(_all_words())
