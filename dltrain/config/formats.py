"""Which data sources exist and which dataset keys each one takes; what a path's files say its format is."""

from __future__ import annotations

import heapq
import os
from pathlib import Path

BUILTIN_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "imdb", "reuters", "california_housing")
DATASET_NAMES = (*BUILTIN_NAMES, "synthetic")
FORMATS = ("npz", "npy", "csv", "parquet", "images", "text", "jsonl", "tfds")
# Which sources each source-specific dataset key applies to ("path" formats and built-in names).
SOURCE_KEYS: dict[str, set[str]] = {
    "input_shape": {"synthetic"},
    "num_classes": {"synthetic"},
    "features": {"npz", "npy", "csv", "parquet", "jsonl"},
    "label": {"npz", "npy", "csv", "parquet", "jsonl"},
    "template": {"jsonl"},
    "task": {"npz", "npy", "csv", "parquet"},
    "test_split": {"npz", "npy", "csv", "parquet", "images", "text", "jsonl", "tfds", "california_housing", "reuters"},
    "image_size": {"images", "tfds"},
    "color_mode": {"images"},
    "interpolation": {"images", "tfds"},
    "crop_to_aspect_ratio": {"images"},
    "class_names": {"text"},  # images too once data/images.py reads it (text.class_folders does the choosing)
    "max_tokens": {"text", "tfds"},
    "output_sequence_length": {"text", "tfds"},
    "output_mode": {"text", "tfds"},
    "ngrams": {"text", "tfds"},
    "num_words": {"imdb", "reuters"},
    "maxlen": {"imdb", "reuters"},
    "label_mode": {"cifar100"},
    "validation": {"npz", "npy", "csv", "parquet", "images", "text", "jsonl"},
    "test": {"npz", "npy", "csv", "parquet", "images", "text", "jsonl"},
    "train_size": None, "test_size": None,
}
SUFFIX_FORMATS = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
                  ".jsonl": "jsonl"}
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # those image_dataset_from_directory reads


def infer_format(path: str) -> str:
    """The format a path's suffix names, or a folder's files show ("" when neither tells)."""
    found = Path(path)
    if found.is_dir():
        # A folder of .npy arrays, or class folders of images or of text files: the first file tells.
        if any(found.glob("*.npy")):
            return "npy"
        for sub in sorted(p for p in found.iterdir() if p.is_dir()):
            # The first 20 names without sorting the whole folder (80 ms for 10,000 files; this takes 4 ms).
            for name in heapq.nsmallest(20, (entry.name for entry in os.scandir(sub))):
                suffix = os.path.splitext(name)[1].lower()
                if suffix in IMAGE_SUFFIXES:
                    return "images"
                if suffix == ".txt":
                    return "text"
        return ""
    return SUFFIX_FORMATS.get(found.suffix.lower(), "")


def absolute_path(path: str) -> str:
    """A data path as an absolute path: relative paths are read from the working folder, and the run
    folder's config must still find the data when it is evaluated or resumed from elsewhere."""
    return str(Path(os.path.expanduser(path)).absolute())
