"""Which data sources exist and which dataset keys each one takes; what a path's files say its format is."""

from __future__ import annotations

import heapq
import os
from pathlib import Path

BUILTIN_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "imdb", "reuters", "california_housing")
DATASET_NAMES = (*BUILTIN_NAMES, "synthetic")
FORMATS = ("npz", "npy", "csv", "parquet", "images", "text", "audio", "tfds", "timeseries", "tfrecord", "hf", "jsonl")
# Which sources each source-specific dataset key applies to ("path" formats and built-in names).
SOURCE_KEYS: dict[str, set[str]] = {
    "input_shape": {"synthetic"},
    "num_classes": {"synthetic", "images", "tfrecord"},  # images: with masks only (a segmentation's classes)
    "masks": {"images"},
    "skip_damaged": {"audio", "tfrecord"},
    "split": {"hf"},
    "features": {"npz", "npy", "csv", "parquet", "timeseries", "tfrecord", "hf", "jsonl"},
    "label": {"npz", "npy", "csv", "parquet", "timeseries", "tfrecord", "hf", "jsonl"},
    "template": {"jsonl"},
    "label_separator": {"csv", "parquet"},
    "text": {"csv", "parquet"},
    "sequence_length": {"timeseries"},
    "sampling_rate": {"timeseries", "audio"},  # rows kept (one in N) | the files' rate in Hz
    "sequence_stride": {"timeseries"},
    "horizon": {"timeseries"},
    "task": {"npz", "npy", "csv", "parquet"},
    "test_split": {"npz", "npy", "csv", "parquet", "images", "text", "audio", "tfds", "timeseries",
                   "california_housing", "reuters", "tfrecord", "hf", "jsonl"},
    "image_size": {"images", "tfds"},
    "color_mode": {"images"},
    "interpolation": {"images", "tfds"},
    "crop_to_aspect_ratio": {"images"},
    "class_names": {"text", "tfrecord"},  # images too once data/images.py reads it (text.class_folders does the choosing)
    "max_tokens": {"text", "tfds", "csv", "parquet", "hf"},
    "output_sequence_length": {"text", "tfds", "csv", "parquet", "audio", "hf"},
    "output_mode": {"text", "tfds", "csv", "parquet", "hf"},
    "ngrams": {"text", "tfds", "csv", "parquet", "hf"},
    "num_words": {"imdb", "reuters"},
    "maxlen": {"imdb", "reuters"},
    "label_mode": {"cifar100"},
    "validation": {"npz", "npy", "csv", "parquet", "images", "text", "audio", "tfrecord", "hf", "jsonl"},
    "test": {"npz", "npy", "csv", "parquet", "images", "text", "audio", "tfrecord", "hf", "jsonl"},
    "train_size": None, "test_size": None, "fold": None,
}
SUFFIX_FORMATS = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
                  ".tfrecord": "tfrecord", ".tfrecords": "tfrecord", ".jsonl": "jsonl"}
# The files `datasets`' save_to_disk writes at the top of a DatasetDict folder or of a Dataset folder.
HF_MARKERS = ("dataset_dict.json", "state.json")
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # those image_dataset_from_directory reads
AUDIO_SUFFIXES = (".wav",)  # those audio_dataset_from_directory reads


def infer_format(path: str) -> str:
    """The format a path's suffix names, or a folder's files show ("" when neither tells)."""
    found = Path(path)
    if found.is_dir():
        if any((found / marker).is_file() for marker in HF_MARKERS):
            return "hf"
        # A folder of .npy arrays, or class folders of images, text or .wav files: the first file tells.
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
                if suffix in AUDIO_SUFFIXES:
                    return "audio"
        return ""
    return SUFFIX_FORMATS.get(found.suffix.lower(), "")


def absolute_path(path: str) -> str:
    """A data path as an absolute path: relative paths are read from the working folder, and the run
    folder's config must still find the data when it is evaluated or resumed from elsewhere."""
    return str(Path(os.path.expanduser(path)).absolute())
