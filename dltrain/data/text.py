"""`format: text`: a folder per class of .txt files (keras.utils.text_dataset_from_directory's layout), read
into memory and turned into token ids or word vectors by a TextVectorization layer saved in the model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.config import DatasetConfig
from dltrain.data.types import DatasetInfo, Source, Split
from dltrain.errors import DataError

SUFFIX = ".txt"  # the only files text_dataset_from_directory reads
INPUT_NAME = "text"
_LISTED = 3  # skipped files named in a note; the rest are counted


def class_folders(config: DatasetConfig) -> list[str]:
    """The class folders to read, in label order: `class_names`, else every folder sorted by name (as Keras)."""
    root = Path(config.path)
    if not root.is_dir():
        raise DataError(f"'{config.path}' is not a folder", key="dataset.path",
                        hint="a text dataset is a folder with one subfolder of .txt files per class")
    # Hidden folders are skipped, as Keras does (.ipynb_checkpoints, .git).
    found = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if config.class_names is not None:
        missing = [name for name in config.class_names if name not in found]
        if missing:
            raise DataError(f"class folder{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                            f"not found in '{config.path}'", key="dataset.class_names",
                            hint=f"the folders there are: {', '.join(found) or 'none'}")
        return list(config.class_names)
    if len(found) < 2:
        raise DataError(f"'{config.path}' has {len(found)} class folder{'' if len(found) == 1 else 's'}; "
                        "a text dataset needs at least 2", key="dataset.path",
                        hint="put the .txt files of each class in a subfolder named after the class")
    return found


def _files(folder: Path) -> list[Path]:
    # Subfolders count too, in a fixed order (Keras walks each class folder recursively).
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() == SUFFIX and p.is_file())


def vector_shape(config: DatasetConfig) -> tuple[int | None, ...]:
    """The shape of one vectorized text: token ids (None: padded to each batch's longest) or a word vector."""
    return (config.output_sequence_length,) if config.output_mode == "int" else (config.max_tokens,)


def describe(config: DatasetConfig) -> DatasetInfo:
    """Classes from the folder names; the input shape is what the TextVectorization layer gives."""
    names = class_folders(config)
    return DatasetInfo(Path(config.path).name, vector_shape(config), len(names), names, features=None)


def read(config: DatasetConfig, seed: int) -> Source:
    """Every class folder's texts as a (n,) array of str, labelled by the folder's place in the class list."""
    info = describe(config)
    root = Path(config.path)
    texts: list[str] = []
    labels: list[int] = []
    skipped: list[str] = []
    for label, name in enumerate(info.class_names):
        files = _files(root / name)
        if not files:
            raise DataError(f"class folder '{name}' in '{config.path}' has no {SUFFIX} files", key="dataset.path",
                            hint=f"add {SUFFIX} files to it, or leave it out with 'class_names:' under 'dataset'")
        read_here = 0
        for file in files:
            try:
                texts.append(file.read_bytes().decode("utf-8"))
            except UnicodeDecodeError:
                skipped.append(str(file.relative_to(root)))
                continue
            labels.append(label)
            read_here += 1
        if not read_here:
            raise DataError(f"no file in class folder '{name}' in '{config.path}' is UTF-8 text", key="dataset.path",
                            hint="convert the files to UTF-8, e.g. iconv -f latin1 -t utf-8")
    if skipped:
        listed = ", ".join(skipped[:_LISTED]) + (f" and {len(skipped) - _LISTED} more" if len(skipped) > _LISTED else "")
        info.notes.append(f"skipped {len(skipped)} file{'s' if len(skipped) > 1 else ''} that "
                          f"{'are' if len(skipped) > 1 else 'is'} not UTF-8 text: {listed}")
    # An object array holds each text at its own length; a fixed-width str array would pad every text
    # to the longest (aclImdb: 25,000 x 13,704 characters x 4 bytes = 1.4 GB instead of 33 MB).
    x = np.empty(len(texts), dtype=object)
    x[:] = texts
    return Source(Split(x, np.asarray(labels, dtype=np.int64)), None, info, preprocessing(config))


def vectorized(config: DatasetConfig, texts: Any, name: str | None = None) -> Any:
    """A TextVectorization layer with the config's text keys, adapted on `texts` (the training texts)."""
    import keras
    import tensorflow as tf

    vectorize = keras.layers.TextVectorization(
        max_tokens=config.max_tokens, output_mode=config.output_mode,
        output_sequence_length=config.output_sequence_length, ngrams=config.ngrams,
        # A fixed vector length even when the vocabulary is smaller: describe() promised max_tokens.
        pad_to_max_tokens=config.output_mode != "int", name=name)
    vectorize.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(1024))
    return vectorize


def preprocessing(config: DatasetConfig) -> Any:
    """A Preprocessing: a raw string input and a TextVectorization layer adapted on the training texts."""

    def build(train: Split) -> tuple[Any, Any]:
        import keras

        raw = keras.Input(shape=(), dtype="string", name=INPUT_NAME)
        return raw, vectorized(config, train.x)(raw)

    return build
