"""Raw inputs -> model inputs: image files, a CSV of feature rows (or of a series' rows, cut into windows),
arrays in an .npz / .npy file, text files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Collection

import numpy as np

from dltrain.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Columns of a CSV that hold labels, not features (Kaggle's Fashion-MNIST CSVs start with `label`).
_LABEL_COLUMNS = ("label", "labels", "y", "target", "class")


def _fit_shape(array: np.ndarray, shape: tuple[int, ...], source: str) -> np.ndarray:
    """Examples of `shape` from `array`: (n, *shape), one example of `shape`, or flat rows."""
    size = int(np.prod(shape))
    if tuple(array.shape[1:]) == shape:
        return array
    if tuple(array.shape) == shape:
        return array[None]
    if array.ndim >= 1 and array.size % size == 0 and (array.ndim == 1 or int(np.prod(array.shape[1:])) == size):
        return array.reshape(-1, *shape)
    raise DataError(f"{source}: arrays of shape {tuple(array.shape)} do not fit the model's input {shape}",
                    hint=f"give examples of shape {shape} (or rows of {size} values)")


def read_image(source: Path | bytes, shape: tuple[int, ...], *, name: str | None = None,
               max_pixels: int | None = None) -> tuple[np.ndarray, bool]:
    """An image file (a path, or a file's bytes from a request) as one example of `shape` (grayscale, RGB or
    RGBA, resized if needed); and whether it was resized. `max_pixels` refuses images that decode larger."""
    from PIL import Image, UnidentifiedImageError

    name = name or str(source)
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] not in (1, 3, 4)):
        raise DataError(f"{name}: the model takes inputs of shape {shape}, not images",
                        hint="give a CSV or an .npz file instead")
    mode = {3: "RGB", 4: "RGBA"}.get(shape[-1], "L") if len(shape) == 3 else "L"
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise DataError(f"image {name} is {image.width}x{image.height} pixels, more than the "
                                f"{max_pixels:,} taken", hint=f"send it at the model's size, {shape[1]}x{shape[0]}")
            image = image.convert(mode)
            resized = image.size != (shape[1], shape[0])
            if resized:
                image = image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32)
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {name}: not an image file Pillow knows (PNG, JPEG, ...)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot read image {name}: {error}") from None
    return pixels.reshape(shape), resized


def read_csv(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Rows of numbers as examples; a header row is optional, and a `label` column is ignored."""
    rows = list(csv.reader(path.read_text().splitlines()))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"{path} holds no rows")
    keep = list(range(len(rows[0])))
    first_line = 1
    try:
        [float(cell) for cell in rows[0]]
    except ValueError:
        header = [cell.strip().lower() for cell in rows.pop(0)]
        keep = [i for i, name in enumerate(header) if name not in _LABEL_COLUMNS]
        first_line = 2
    values = []
    for number, row in enumerate(rows, start=first_line):
        try:
            values.append([float(row[i]) for i in keep])
        except (ValueError, IndexError):
            raise DataError(f"{path}: row {number} is not {len(keep)} numbers",
                            hint="every row holds one example's feature values") from None
    return _fit_shape(np.asarray(values, dtype=np.float32), shape, str(path))


def read_arrays(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Examples from an .npy file, or from an .npz file's `x` array (or its only array)."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if isinstance(loaded, np.ndarray):
        return _fit_shape(loaded, shape, str(path))
    with loaded:
        names = list(loaded.files)
        name = "x" if "x" in names else names[0] if len(names) == 1 else None
        if name is None:
            raise DataError(f"{path} holds the arrays {', '.join(names)}; which are the inputs?",
                            hint="name the input array 'x'")
        return _fit_shape(loaded[name], shape, f"{path}[{name}]")


def read_texts(paths: list[Path]) -> Any:
    """Each .txt file as one raw text (UTF-8), for a model whose saved TextVectorization takes strings."""
    import tensorflow as tf

    texts = []
    for path in paths:
        if path.suffix.lower() != ".txt":
            raise DataError(f"cannot read '{path}': this model takes text", hint="give .txt files, one text each")
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"input file '{path}' not found") from None
        except UnicodeDecodeError as error:
            raise DataError(f"{path} is not UTF-8 text: {error.reason} at byte {error.start}",
                            hint="convert it to UTF-8 (iconv -t UTF-8)") from None
    return tf.constant(texts)


def read_wav(path: Path, shape: tuple[int, ...], sampling_rate: int | None) -> np.ndarray:
    """A .wav file as one example of `shape` (samples, channels), decoded, cut or padded as in training."""
    from dltrain.data import audio_decoder, read_wav_header

    header = read_wav_header(str(path))
    if header.problem:
        raise DataError(f"cannot read {path}: {header.problem}", hint="give a 16-bit PCM .wav file")
    if len(shape) != 2:
        raise DataError(f"{path}: the model takes inputs of shape {shape}, not sounds")
    if sampling_rate is not None and header.rate != sampling_rate:
        raise DataError(f"{path} is sampled at {header.rate:,} Hz; the model was trained on {sampling_rate:,} Hz",
                        hint=f"resample it to {sampling_rate:,} Hz (e.g. sox in.wav -r {sampling_rate} out.wav)")
    import tensorflow as tf

    try:
        return audio_decoder(shape[0], shape[1])(tf.constant(str(path))).numpy()
    except tf.errors.OpError as error:
        raise DataError(f"cannot read {path}: {error.message}", hint="give a 16-bit PCM .wav file") from None


def read_inputs(paths: list[Path], shape: tuple[int, ...], *, sampling_rate: int | None = None
                ) -> tuple[np.ndarray, list[str], list[str]]:
    """All inputs as one array, a name for each example, and notes (resized images); .wav files are checked
    against `sampling_rate`, the rate the model was trained on."""
    arrays, names, resized = [], [], []
    for path in paths:
        if not path.is_file():
            raise DataError(f"input file '{path}' not found")
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            image, was_resized = read_image(path, shape)
            arrays.append(image[None])
            names.append(path.name)
            if was_resized:
                resized.append(path.name)
        elif suffix == ".wav":
            arrays.append(read_wav(path, shape, sampling_rate)[None])
            names.append(path.name)
        elif suffix == ".csv":
            found = read_csv(path, shape)
            arrays.append(found)
            names += [f"{path.name}:{i + 1}" for i in range(len(found))]
        elif suffix in (".npz", ".npy"):
            found = read_arrays(path, shape)
            arrays.append(found)
            names += [f"{path.name}[{i}]" for i in range(len(found))]
        else:
            raise DataError(f"cannot read '{path}': unknown kind of file",
                            hint=f"give image files ({', '.join(IMAGE_SUFFIXES[:3])}, ...), a .csv, or an .npz/.npy")
    notes = [f"resized to {shape[1]}x{shape[0]}: {', '.join(resized)}"] if resized else []
    return np.concatenate(arrays).astype(np.float32), names, notes


def read_named(paths: list[Path], inputs: dict[str, str], texts: Collection[str] = ()) -> tuple[
        dict[str, np.ndarray], list[str]]:
    """Rows of CSV or parquet files for a model with named raw inputs (one per column, by the header; the
    `texts` inputs take one string per row)."""
    from dltrain.data import named_columns

    parts: list[dict[str, np.ndarray]] = []
    names: list[str] = []
    for path in paths:
        if not path.is_file():
            raise DataError(f"input file '{path}' not found")
        if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise DataError(f"cannot read '{path}': the model takes named columns "
                            f"({', '.join(inputs)})", hint="give a .csv (or .parquet) file with a header row")
        found, where = named_columns(path, inputs, texts)
        parts.append(found)
        names += [f"{path.name}:{where(i).split()[-1]}" for i in range(len(next(iter(found.values()))))]
    return {name: np.concatenate([part[name] for part in parts]) for name in inputs}, names


def read_series(paths: list[Path], series: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Every full window of rows in CSV or parquet files, for a time-series run (its dataset.json `series`):
    each file on its own, a window ending on every row from the first full one on."""
    from dltrain.data import file_windows

    arrays, names = [], []
    for path in paths:
        if not path.is_file():
            raise DataError(f"input file '{path}' not found")
        if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise DataError(f"cannot read '{path}': the model forecasts from rows of a table",
                            hint="give a .csv (or .parquet) file with a header row and the run's columns")
        x, where = file_windows(path, series)
        arrays.append(x)
        names += where
    return np.concatenate(arrays), names
