"""Keras's built-in dataset files (the CIFAR pickles, imdb/reuters/california_housing .npz) read without
Keras, and what `keras.datasets.<name>.load_data` does to them reproduced in NumPy.

Keras's loaders check a file hash and download again on a mismatch, so a copy a user placed by hand (or a
small test file) cannot go through them; this module gives the same arrays from the same files.
"""

from __future__ import annotations

import io
import itertools
import pickle
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from dltrain.errors import DataError

# ((x_train, y_train), (x_test, y_test)), as keras.datasets' load_data returns them.
Raw = tuple[tuple[Any, np.ndarray], tuple[Any, np.ndarray]]

# The CIFAR batches and the imdb/reuters ragged arrays are pickles. Rebuilding NumPy arrays needs only these
# globals; anything else (os.system, eval, ...) in a tampered file is refused, so reading a dataset file
# cannot run code. Both spellings: NumPy < 2 wrote `numpy.core`, NumPy >= 2 writes `numpy._core`.
_ARRAY_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
})

# Keras's imdb/reuters conventions (load_data's defaults): 0 pads, 1 starts a sequence, 2 is a word
# outside num_words, and real word indices start at 3.
START_CHAR, OOV_CHAR, INDEX_FROM = 1, 2, 3
# keras.datasets.imdb/reuters/california_housing shuffle with this seed.
KERAS_SEED = 113


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a dataset file never needs")


def _unreadable(path: Path | str, error: Exception) -> DataError:
    return DataError(f"cannot read {path}: {error}", key="dataset.name",
                     hint="the file is corrupt, truncated or not the dataset's file; place a fresh copy")


def load_pickle(handle: IO[bytes], where: Path | str) -> Any:
    """Unpickle NumPy arrays, lists and dicts only (Python 2 pickles too: byte strings stay bytes)."""
    try:
        return _ArrayUnpickler(handle, encoding="bytes").load()
    except Exception as error:  # a corrupt pickle raises almost anything (EOFError, KeyError, ValueError, ...)
        raise _unreadable(where, error) from None


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file; object arrays (ragged sequences) through the restricted unpickler."""
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".npy"):
                    arrays[member[:-4]] = _read_npy(io.BytesIO(archive.read(member)), f"{path} ({member})")
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        raise _unreadable(path, error) from None
    return arrays


def _read_npy(buffer: io.BytesIO, where: str) -> np.ndarray:
    version = np.lib.format.read_magic(buffer)
    read_header = np.lib.format.read_array_header_1_0 if version[0] == 1 else np.lib.format.read_array_header_2_0
    _, _, dtype = read_header(buffer)
    if dtype.hasobject:  # np.save pickles object arrays right after the header
        return load_pickle(buffer, where)
    buffer.seek(0)
    return np.lib.format.read_array(buffer, allow_pickle=False)


def require(arrays: dict[str, np.ndarray], path: Path, names: tuple[str, ...]) -> list[np.ndarray]:
    """The named arrays of an .npz file, or an error naming the ones it lacks."""
    missing = [name for name in names if name not in arrays]
    if missing:
        raise DataError(f"{path} has no array named {', '.join(missing)} (it has: {', '.join(arrays) or 'none'})",
                        key="dataset.name", hint=f"expected Keras's {path.name} with arrays {', '.join(names)}")
    return [arrays[name] for name in names]


# --- CIFAR ---------------------------------------------------------------------------------------------

def _cifar_batch(handle: IO[bytes], where: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_pickle(handle, where)
    if not isinstance(batch, dict):
        raise _unreadable(where, TypeError("it is not a CIFAR batch (a pickled dict)"))
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise _unreadable(where, KeyError(f"it has no 'data' and '{label_key}' entries"))
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise _unreadable(where, ValueError(f"{data.shape} data for {len(labels)} labels, expected (n, 3072)"))
    # Rows are 1,024 red, then green, then blue bytes; Keras returns channels last (HWC).
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.uint8)


def _cifar_batches(folder: Path, archives: tuple[str, ...], inner: str, names: tuple[str, ...],
                   label_key: str) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The batches `inner/<name>` from an extracted folder (also Keras's `<inner>-target/` cache) or
    straight out of the .tar.gz; None when none of them is in `folder`."""
    for extracted in (folder / inner, folder / f"{inner}-target" / inner):
        if extracted.is_dir():
            missing = [name for name in names if not (extracted / name).is_file()]
            if missing:
                raise DataError(f"{extracted} lacks {', '.join(missing)}", key="dataset.name",
                                hint="extract the whole archive again")
            batches = []
            for name in names:
                with open(extracted / name, "rb") as handle:
                    batches.append(_cifar_batch(handle, str(extracted / name), label_key))
            return batches
    for archive in archives:
        path = folder / archive
        if path.is_file():
            try:
                with tarfile.open(path, "r:*") as tar:
                    found = {Path(m.name).name: m for m in tar.getmembers() if Path(m.name).parent.name == inner}
                    missing = [name for name in names if name not in found]
                    if missing:
                        raise DataError(f"{path} lacks {inner}/{', '.join(missing)}", key="dataset.name",
                                        hint="the archive is incomplete; place a fresh copy")
                    contents = {name: tar.extractfile(found[name]).read() for name in names}
            except (OSError, EOFError, tarfile.TarError, zlib.error, AttributeError) as error:
                raise _unreadable(path, error) from None
            return [_cifar_batch(io.BytesIO(contents[name]), f"{path} ({inner}/{name})", label_key) for name in names]
    return None


CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def read_cifar10(folder: Path) -> Raw | None:
    """keras.datasets.cifar10.load_data() from cifar-10-batches-py/ or its archive in `folder`."""
    batches = _cifar_batches(folder, ("cifar-10-python.tar.gz", "cifar-10-batches-py-target_archive"),
                             "cifar-10-batches-py", (*CIFAR10_BATCHES, "test_batch"), "labels")
    if batches is None:
        return None
    (x_test, y_test), train = batches[-1], batches[:-1]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train.reshape(-1, 1)), (x_test, y_test.reshape(-1, 1))


def read_cifar100(folder: Path, label_mode: str) -> Raw | None:
    """keras.datasets.cifar100.load_data(label_mode) from cifar-100-python/ or its archive in `folder`."""
    batches = _cifar_batches(folder, ("cifar-100-python.tar.gz", "cifar-100-python-target_archive"),
                             "cifar-100-python", ("train", "test"), f"{label_mode}_labels")
    if batches is None:
        return None
    (x_train, y_train), (x_test, y_test) = batches
    return (x_train, y_train.reshape(-1, 1)), (x_test, y_test.reshape(-1, 1))


# --- imdb and reuters ----------------------------------------------------------------------------------
# Keras does these steps on Python lists, word by word (6-7 s for imdb); here they run on one flat array
# of all the words (about 1 s), with the same result.

@dataclass
class Ragged:
    """Sequences of different lengths: every word in one flat array, and each sequence's length."""

    lengths: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, sequences: Any) -> Ragged:
        """Ragged from lists (or an object array of lists, as Keras returns them)."""
        if isinstance(sequences, Ragged):
            return sequences
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        values = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum()))
        return cls(lengths, values)

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, rows: np.ndarray) -> Ragged:
        """The sequences where the boolean mask `rows` is true."""
        return Ragged(self.lengths[rows], self.values[np.repeat(rows, self.lengths)])

    def tolist(self) -> list[list[int]]:
        """The sequences as lists of ints (what Keras's loaders return)."""
        return [part.tolist() for part in np.split(self.values, np.cumsum(self.lengths)[:-1])] if len(self) else []


def _shuffled(rng: np.random.RandomState, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    indices = np.arange(len(x))
    rng.shuffle(indices)
    return x[indices], y[indices]


def _offset(sequences: np.ndarray) -> Ragged:
    """[START_CHAR] + [w + INDEX_FROM for w in x] for every sequence x."""
    words = Ragged.of(sequences)
    lengths = words.lengths + 1
    values = np.empty(int(lengths.sum()), dtype=np.int64)
    first = np.zeros(len(values), dtype=bool)
    first[np.cumsum(lengths) - lengths] = True
    values[first] = START_CHAR
    values[~first] = words.values + INDEX_FROM
    return Ragged(lengths, values)


def _keep_shorter(maxlen: int | None, x: Ragged, labels: np.ndarray) -> tuple[Ragged, np.ndarray]:
    # Keras's rule (python_utils.remove_long_seq): a sequence of maxlen tokens or more is left out, not cut.
    if not maxlen:
        return x, np.asarray(labels)
    keep = x.lengths < maxlen
    return x.take(keep), np.asarray(labels)[keep]


def _word_limit(num_words: int | None, *splits: Ragged) -> int:
    # As Keras: without num_words the limit is the largest index seen, and `w < limit` sends that one word
    # to OOV too. Kept exactly so that a local file gives what the download would.
    return num_words or int(max(split.values.max() for split in splits))


def _index_words(x: Ragged, limit: int) -> Ragged:
    return Ragged(x.lengths, np.where(x.values < limit, x.values, OOV_CHAR))


def _no_sequence_left(maxlen: int | None) -> DataError:
    return DataError(f"no sequence is shorter than maxlen={maxlen}", key="dataset.maxlen",
                     hint="raise maxlen: Keras's loader leaves out sequences of maxlen tokens or more")


def imdb(path: Path, num_words: int | None, maxlen: int | None) -> Raw:
    """keras.datasets.imdb.load_data(num_words=..., maxlen=...) on the imdb.npz at `path` (sequences as
    Ragged)."""
    x_train, y_train, x_test, y_test = require(load_npz(path), path, ("x_train", "y_train", "x_test", "y_test"))
    rng = np.random.RandomState(KERAS_SEED)  # one generator for both splits, in this order, as Keras
    x_train, y_train = _shuffled(rng, x_train, y_train)
    x_test, y_test = _shuffled(rng, x_test, y_test)
    train, y_train = _keep_shorter(maxlen, _offset(x_train), y_train)
    test, y_test = _keep_shorter(maxlen, _offset(x_test), y_test)
    if not len(train) or not len(test):
        raise _no_sequence_left(maxlen)
    limit = _word_limit(num_words, train, test)
    return (_index_words(train, limit), y_train), (_index_words(test, limit), y_test)


def reuters(path: Path, num_words: int | None, maxlen: int | None, test_split: float) -> Raw:
    """keras.datasets.reuters.load_data(num_words=..., maxlen=..., test_split=...) on reuters.npz
    (sequences as Ragged)."""
    xs, labels = require(load_npz(path), path, ("x", "y"))
    xs, labels = _shuffled(np.random.RandomState(KERAS_SEED), xs, labels)
    seqs, labels = _keep_shorter(maxlen, _offset(xs), labels)
    if not len(seqs):
        raise _no_sequence_left(maxlen)
    seqs = _index_words(seqs, _word_limit(num_words, seqs))
    cut = np.arange(len(seqs)) < int(len(seqs) * (1 - test_split))
    return (seqs.take(cut), labels[cut]), (seqs.take(~cut), labels[~cut])


def pad_sequences(sequences: Any, maxlen: int) -> np.ndarray:
    """keras.utils.pad_sequences(sequences, maxlen) with its defaults: zeros in front, long ones keep
    their last `maxlen` tokens, int32."""
    x = Ragged.of(sequences)
    ends = np.cumsum(x.lengths)
    # Each word's distance from the end of its sequence picks its column; words further back are cut.
    from_end = np.repeat(ends, x.lengths) - 1 - np.arange(len(x.values))
    kept = from_end < maxlen
    padded = np.zeros((len(x), maxlen), dtype=np.int32)
    padded[np.repeat(np.arange(len(x)), x.lengths)[kept], maxlen - 1 - from_end[kept]] = x.values[kept]
    return padded


# --- california_housing --------------------------------------------------------------------------------

def california_housing(path: Path, test_split: float) -> Raw:
    """keras.datasets.california_housing.load_data(test_split=...) (the "large" version) on its .npz."""
    x, y = require(load_npz(path), path, ("x", "y"))
    if len(x) != len(y):
        raise DataError(f"{path} has {len(x)} feature rows but {len(y)} targets", key="dataset.name",
                        hint="the file is corrupt; place a fresh copy")
    x, y = _shuffled(np.random.RandomState(KERAS_SEED), x, y)
    cut = int(len(x) * (1 - test_split))
    return (np.array(x[:cut]), np.array(y[:cut])), (np.array(x[cut:]), np.array(y[cut:]))
