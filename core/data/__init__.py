"""visloupe.core.data: built-in data sets and one adapter that reads any image data the same way.

- :func:`load_builtin` / :func:`builtin_names`: ``shapes``, ``text``, ``digits``, ``photos`` as
  in-memory ``datasets.Dataset`` objects (no download).
- :func:`text_tokenizer`: the word tokenizer for the ``text`` corpus.
- :func:`as_image_source`: HF ``Dataset``/``IterableDataset``, torch datasets, folders, lists,
  arrays -> :class:`ImageSource` of :class:`Sample` (raw PIL image, label, mask, row id):
  ``select``, ``indices`` (the one stream policy, :data:`STREAM_LIMIT`), ``label_values``,
  ``fingerprint``, ``images``, ``tensors``, ``batches``; :func:`model_inputs` (tensors too).
- :func:`records`: raw records (bytes, paths, per-row errors) for profiling.
- :func:`imagenet_class_names`, :func:`imagenet_wnids`, :func:`wordnet_graph`: the ImageNet-1k
  label space, offline.
"""

from .builtin import DIGIT_CLASSES, builtin_names, builtin_version, load_builtin
from .imagenet import imagenet_class_index, imagenet_class_names, imagenet_wnids, wordnet_graph
from .records import RawRecord, RecordStream, records
from .shapes import SHAPE_CLASSES
from .source import (
    HIGH_BIT_MODES,
    STREAM_LIMIT,
    ImageSource,
    Sample,
    as_image_source,
    check_max_value,
    mode_max,
    model_inputs,
    pil_to_tensor,
    rgb_pixels,
    to_pil,
    to_rgb,
)
from .text import TEXT_CLASSES, TextTokenizer, text_tokenizer

__all__ = [
    "DIGIT_CLASSES",
    "HIGH_BIT_MODES",
    "ImageSource",
    "RawRecord",
    "RecordStream",
    "STREAM_LIMIT",
    "SHAPE_CLASSES",
    "Sample",
    "TEXT_CLASSES",
    "TextTokenizer",
    "as_image_source",
    "builtin_names",
    "builtin_version",
    "check_max_value",
    "imagenet_class_index",
    "imagenet_class_names",
    "imagenet_wnids",
    "load_builtin",
    "mode_max",
    "model_inputs",
    "pil_to_tensor",
    "rgb_pixels",
    "records",
    "text_tokenizer",
    "to_pil",
    "to_rgb",
    "wordnet_graph",
]
