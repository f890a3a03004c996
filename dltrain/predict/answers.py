"""Model outputs -> answers: class probabilities, top-k, CSV rows, and an export's answers beside Keras's."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.errors import RunError

TAG_THRESHOLD = 0.5  # a multi-label run predicts the tags whose probability is over this


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
    # Multi-label: `probabilities` are each tag's own (sigmoid), and a tag is predicted over TAG_THRESHOLD.
    multi_label: bool = False
    # Names of the output values (a forecast's label columns and horizon), else output_0, output_1, ...
    output_columns: list[str] | None = None

    def tags(self) -> list[str]:
        """Each input's tags over TAG_THRESHOLD, joined by '|' (multi-label runs)."""
        names = self.class_names or [str(i) for i in range(self.probabilities.shape[1])]
        return ["|".join(name for name, p in zip(names, row) if p > TAG_THRESHOLD) for row in self.probabilities]

    def columns(self) -> list[str]:
        """The names of the output values."""
        width = int(np.prod(self.outputs.shape[1:])) if self.outputs.ndim > 1 else 1
        return self.output_columns if self.output_columns and len(self.output_columns) == width else [
            f"output_{i}" for i in range(width)]
    # A segmentation run's answers: the mask PNG written for each input.
    masks: list[Path] = field(default_factory=list)

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
        if self.multi_label:
            names = self.class_names or [str(i) for i in range(self.probabilities.shape[1])]
            writer.writerow(["input", "tags", *names, *head])
            for name, tags, row, more in zip(self.inputs, self.tags(), self.probabilities, cells):
                writer.writerow([name, tags, *(f"{p:.6g}" for p in row), *more])
        elif self.probabilities is not None:
            names = self.class_names or [str(i) for i in range(self.probabilities.shape[1])]
            writer.writerow(["input", "predicted", "probability", *names, *head])
            for name, row, more in zip(self.inputs, self.probabilities, cells):
                best = int(row.argmax())
                writer.writerow([name, names[best], f"{row[best]:.6g}", *(f"{p:.6g}" for p in row), *more])
        else:
            flat = self.outputs.reshape(len(self.outputs), -1)
            writer.writerow(["input", *self.columns(), *head])
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


def class_probabilities(outputs: Any, num_classes: int | None, *, given: bool = False,
                        multi_label: bool = False) -> tuple[np.ndarray | None, list[str]]:
    """A classifier's class probabilities from `model.predict` output (its first output with one column
    per class, or one sigmoid column for two classes); softmax is applied to logits. `given`: the outputs are
    probabilities (an int8 export's do not sum to exactly 1), taken as they are. `multi_label`: each column is
    its tag's own probability (sigmoid is applied to logits)."""
    if not num_classes:
        return None, []
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    candidates = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    for out in candidates:
        out = np.asarray(out, dtype=np.float64)
        if out.ndim != 2:
            continue
        if out.shape[1] == num_classes and multi_label:
            if given or (np.all(out >= 0) and np.all(out <= 1)):
                return out, []
            return 1 / (1 + np.exp(-out)), ["the model's outputs are not probabilities (logits?): shown as "
                                            "sigmoid(outputs)"]
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


def predictions(names: list[str], outputs: Any, dataset: dict[str, Any], notes: list[str], *,
                given: bool = False) -> Predictions:
    """The answers of a run (its dataset.json) from the model's outputs for the named inputs."""
    multi_label = dataset.get("task") == "multilabel"
    probabilities, more = class_probabilities(outputs, dataset.get("num_classes"), given=given,
                                              multi_label=multi_label)
    if isinstance(outputs, dict):
        outputs = next(iter(outputs.values()))
    elif isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    series = dataset.get("series")
    columns = [f"{label} +{series['horizon']}" for label in series["labels"]] if series else None
    return Predictions(names, np.asarray(outputs), probabilities, dataset.get("class_names"), notes + more,
                       multi_label=multi_label and probabilities is not None, output_columns=columns)


def format_top(top: list[tuple[str, float]]) -> list[str]:
    """`Sneaker 0.931` cells for a table."""
    return [f"{name} {p:.3f}" if math.isfinite(p) else name for name, p in top]
