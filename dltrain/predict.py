"""Use a trained run on new inputs: image files, a CSV of feature rows, or arrays in an .npz / .npy file."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltrain import runs
from dltrain.errors import DataError, RunError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Columns of a CSV that hold labels, not features (Kaggle's Fashion-MNIST CSVs start with `label`).
_LABEL_COLUMNS = ("label", "labels", "y", "target", "class")


@dataclass
class Predictions:
    """A model's outputs for named inputs; `probabilities` for classifiers."""

    inputs: list[str]
    outputs: np.ndarray
    probabilities: np.ndarray | None = None
    class_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    # With `--model FILE.onnx|.tflite`: the Keras model's predictions for the same inputs, shown beside.
    reference: Predictions | None = None

    def differences(self) -> np.ndarray:
        """Each input's largest absolute difference from the Keras model's outputs (needs `reference`)."""
        if self.reference is None:
            raise RunError("no Keras predictions to compare with")
        flat = self.outputs.reshape(len(self.outputs), -1).astype(np.float64)
        return np.abs(flat - self.reference.outputs.reshape(len(flat), -1)).max(axis=1)

    def top(self, k: int) -> list[list[tuple[str, float]]]:
        """The k most probable classes of each input, with their probabilities."""
        if self.probabilities is None:
            raise RunError("the model is not a classifier; it has no classes to rank")
        names = self.class_names or [str(i) for i in range(self.probabilities.shape[1])]
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return [[(names[j], float(row[j])) for j in picks] for row, picks in zip(self.probabilities, order)]

    def to_csv(self) -> str:
        """One row per input: the predicted class and its probability, then every class's probability
        (classifiers), or the output values."""
        out = io.StringIO()
        writer = csv.writer(out)
        head, cells = self.beside()
        if self.probabilities is not None:
            names = self.class_names or [str(i) for i in range(self.probabilities.shape[1])]
            writer.writerow(["input", "predicted", "probability", *names, *head])
            for name, row, more in zip(self.inputs, self.probabilities, cells):
                best = int(row.argmax())
                writer.writerow([name, names[best], f"{row[best]:.6g}", *(f"{p:.6g}" for p in row), *more])
        else:
            flat = self.outputs.reshape(len(self.outputs), -1)
            writer.writerow(["input", *(f"output_{i}" for i in range(flat.shape[1])), *head])
            for name, row, more in zip(self.inputs, flat, cells):
                writer.writerow([name, *(f"{v:.6g}" for v in row), *more])
        return out.getvalue()

    def beside(self, *, table: bool = False) -> tuple[list[str], list[list[str]]]:
        """With `reference`: the Keras model's top class and each input's largest difference from its outputs,
        as (column names, cells of each input); CSV names, or names for a table with the class's probability."""
        if self.reference is None:
            return [], [[] for _ in self.inputs]
        tops = self.reference.top(1) if self.reference.probabilities is not None else None
        head = (["keras model" if table else "keras_predicted"] if tops else []) + [
            "max |diff|" if table else "max_abs_diff"]
        cells = [([format_top(tops[i])[0] if table else tops[i][0][0]] if tops else []) + [f"{d:.3g}"]
                 for i, d in enumerate(self.differences())]
        return head, cells


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


def read_image(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """An image file as one example of `shape` (grayscale, RGB or RGBA, resized if needed); and whether it was
    resized."""
    from PIL import Image, UnidentifiedImageError

    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] not in (1, 3, 4)):
        raise DataError(f"{path}: the model takes inputs of shape {shape}, not images",
                        hint="give a CSV or an .npz file instead")
    mode = {3: "RGB", 4: "RGBA"}.get(shape[-1], "L") if len(shape) == 3 else "L"
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            resized = image.size != (shape[1], shape[0])
            if resized:
                image = image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32)
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"cannot read image {path}: {error}") from None
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


def read_inputs(paths: list[Path], shape: tuple[int, ...]) -> tuple[np.ndarray, list[str], list[str]]:
    """All inputs as one array, a name for each example, and notes (resized images)."""
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


def read_named(paths: list[Path], inputs: dict[str, str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Rows of CSV or parquet files for a model with named raw inputs (one per column, by the header)."""
    from dltrain.data.tabular import named_columns

    parts: list[dict[str, np.ndarray]] = []
    names: list[str] = []
    for path in paths:
        if not path.is_file():
            raise DataError(f"input file '{path}' not found")
        if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise DataError(f"cannot read '{path}': the model takes named columns "
                            f"({', '.join(inputs)})", hint="give a .csv (or .parquet) file with a header row")
        found, where = named_columns(path, inputs)
        parts.append(found)
        names += [f"{path.name}:{where(i).split()[-1]}" for i in range(len(next(iter(found.values()))))]
    return {name: np.concatenate([part[name] for part in parts]) for name in inputs}, names


def class_probabilities(outputs: Any, num_classes: int | None, *, given: bool = False) -> tuple[np.ndarray | None, list[str]]:
    """A classifier's class probabilities from `model.predict` output (its first output with one column
    per class, or one sigmoid column for two classes); softmax is applied to logits. `given`: the outputs are
    probabilities (an int8 export's do not sum to exactly 1), taken as they are."""
    if not num_classes:
        return None, []
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    candidates = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    for out in candidates:
        out = np.asarray(out, dtype=np.float64)
        if out.ndim != 2:
            continue
        if out.shape[1] == num_classes:
            if given or (np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3)):
                return out, []
            shifted = np.exp(out - out.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True), [
                "the model's outputs are not probabilities (logits?): shown as softmax(outputs)"]
        if out.shape[1] == 1 and num_classes == 2:
            p = out[:, 0]
            notes = []
            if not given and (np.any(p < 0) or np.any(p > 1)):
                p, notes = 1 / (1 + np.exp(-p)), ["the model's output is not a probability: shown as sigmoid(output)"]
            return np.stack([1 - p, p], axis=1), notes
    return None, []


def predict(run_dir: Path, inputs: list[Path], *, best: bool = False, batch_size: int = 256,
            model_path: Path | None = None, trust_code: bool = False) -> Predictions:
    """Run a trained run's model (model.keras, or best.keras with `best`) on the given input files; with
    `model_path` (an .onnx or .tflite export) run that in its own runtime, the Keras model's answers beside.

    `trust_code`: the user's word that the run's custom objects may be imported (dltrain.trust)."""
    from dltrain.saved import load_model
    from dltrain.best import BEST_FILE
    from dltrain.load import load_config

    loaded = load_config(runs.run_file(run_dir, runs.CONFIG_FILE), trust_code=trust_code)
    model_file = runs.run_file(run_dir, BEST_FILE if best else runs.MODEL_FILE)
    dataset = json.loads(runs.run_file(run_dir, runs.DATASET_FILE).read_text())
    model = load_model(model_file, loaded)
    if dataset.get("features"):  # named raw inputs (table columns): read the rows by header
        named, names = read_named(inputs, {t.name: t.dtype for t in model.inputs})
        import tensorflow as tf

        x, notes = {name: tf.constant(array) for name, array in named.items()}, []
    elif len(model.inputs) == 1 and model.inputs[0].dtype == "string":  # the model vectorizes raw text
        x, names, notes = read_texts(inputs), [path.name for path in inputs], []
    else:
        shape = tuple(int(d) for d in dataset["input_shape"])
        x, names, notes = read_inputs(inputs, shape)
    outputs = model.predict(x, batch_size=batch_size, verbose=0)
    found = _predictions(names, outputs, dataset, notes)
    if model_path is None:
        return found
    from dltrain.export.loading import load_export
    from dltrain.export.samples import input_arrays

    runtime = load_export(model_path, model)
    arrays = input_arrays(model, {k: np.asarray(v) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x))
    parts = [runtime([a[i:i + batch_size] for a in arrays]) for i in range(0, len(arrays[0]), batch_size)]
    # Where the Keras model gives probabilities, the export's outputs are the same probabilities, rounded.
    given = not class_probabilities(outputs, dataset.get("num_classes"))[1]
    exported = _predictions(names, [np.concatenate(p) for p in zip(*parts)], dataset, notes, given=given)
    exported.reference = found
    return exported


def _predictions(names: list[str], outputs: Any, dataset: dict[str, Any], notes: list[str], *,
                 given: bool = False) -> Predictions:
    probabilities, more = class_probabilities(outputs, dataset.get("num_classes"), given=given)
    if isinstance(outputs, dict):
        outputs = next(iter(outputs.values()))
    elif isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    return Predictions(names, np.asarray(outputs), probabilities, dataset.get("class_names"), notes + more)


def format_top(top: list[tuple[str, float]]) -> list[str]:
    """`Sneaker 0.931` cells for a table."""
    return [f"{name} {p:.3f}" if math.isfinite(p) else name for name, p in top]
