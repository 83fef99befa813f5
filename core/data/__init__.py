"""visloupe.core.data: built-in data sets and one adapter that reads any image data the same way.

- :func:`load_builtin` / :func:`builtin_names`: ``shapes``, ``text``, ``digits``, ``photos`` as
  in-memory ``datasets.Dataset`` objects (no download).
- :func:`text_tokenizer`: the word tokenizer for the ``text`` corpus.
- :func:`as_image_source`: HF ``Dataset``/``IterableDataset``, torch datasets, folders, lists,
  arrays -> :class:`ImageSource` of :class:`Sample` (raw PIL image, label, mask).
"""

from .builtin import DIGIT_CLASSES, builtin_names, builtin_version, load_builtin
from .shapes import SHAPE_CLASSES
from .source import ImageSource, Sample, as_image_source, pil_to_tensor, to_pil, to_rgb
from .text import TEXT_CLASSES, TextTokenizer, text_tokenizer

__all__ = [
    "DIGIT_CLASSES",
    "ImageSource",
    "SHAPE_CLASSES",
    "Sample",
    "TEXT_CLASSES",
    "TextTokenizer",
    "as_image_source",
    "builtin_names",
    "builtin_version",
    "load_builtin",
    "pil_to_tensor",
    "text_tokenizer",
    "to_pil",
    "to_rgb",
]
