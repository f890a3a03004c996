"""`training.class_weight`: the weight of each class in the loss, as Keras's `fit(class_weight=)` takes it
(every class index, from 0), from `balanced` or from the weights the config gives by class name or index."""

from __future__ import annotations

from typing import Any

import numpy as np

from dltrain.config import LoadedConfig, did_you_mean
from dltrain.errors import ConfigError

PATH = ("training", "class_weight")


def labels(y: Any) -> np.ndarray:
    """Class indices of a split's labels: integers, or one-hot rows."""
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] > 1:
        return y.reshape(len(y), -1).argmax(axis=1)
    return y.reshape(len(y)).astype(np.int64)


def balanced(y: Any, num_classes: int) -> list[float]:
    """scikit-learn's `balanced` rule over the training labels: class c weighs n / (k * n_c).

    A class without a training example weighs 1 (it never reaches the loss)."""
    found = labels(y)
    counts = np.bincount(found, minlength=num_classes)[:num_classes]
    n, k = len(found), num_classes
    return [float(n / (k * count)) if count else 1.0 for count in counts]


def class_weights(loaded: LoadedConfig, y: Any, num_classes: int | None, class_names: list[str] | None,
                  outputs: list[str], *, multi_label: bool = False) -> dict[int, float] | None:
    """`training.class_weight` as {class index: weight} for every class, or None when it is not set."""
    spec = loaded.config.training.class_weight
    if spec is None:
        return None
    if len(outputs) > 1:
        raise loaded.error(ConfigError, PATH, f"class_weight applies to a model with one output; this one has "
                           f"{len(outputs)} ({', '.join(outputs)})",
                           hint="remove training.class_weight (Keras cannot weigh classes per output; "
                                "loss_weights weighs the outputs)")
    if not num_classes:
        raise loaded.error(ConfigError, PATH, "class_weight needs classes, and the dataset's labels are not class "
                           "indices (a regression)", hint="remove training.class_weight")
    if multi_label:  # Keras would weigh each example by the argmax of its multi-hot row: one tag of several
        raise loaded.error(ConfigError, PATH, "class_weight needs one class per example, and these labels are "
                           "multi-hot tags", hint="remove training.class_weight (weigh tags in the loss instead)")
    if spec == "balanced":
        return dict(enumerate(balanced(y, num_classes)))
    weights = dict.fromkeys(range(num_classes), 1.0)
    names = list(class_names or [])
    for key, weight in spec.items():
        weights[_index(loaded, str(key), names, num_classes)] = float(weight)
    return weights


def _index(loaded: LoadedConfig, key: str, names: list[str], num_classes: int) -> int:
    """A class by its name (the dataset's class names), else by its index."""
    if key in names:
        return names.index(key)
    if key.isdigit():
        if int(key) < num_classes:
            return int(key)
        raise loaded.error(ConfigError, PATH + (key,), f"class index {key} is out of range: the dataset has "
                           f"{num_classes} classes (0-{num_classes - 1})")
    if not names:
        raise loaded.error(ConfigError, PATH + (key,), f"no class named '{key}': the dataset's classes have no "
                           f"names", hint=f"give class indices 0-{num_classes - 1}")
    listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    raise loaded.error(ConfigError, PATH + (key,), f"no class named '{key}'",
                       hint=did_you_mean(key, names) or f"the classes are: {listed}")


def described(weights: dict[int, float], class_names: list[str] | None) -> dict[str, float]:
    """The weights as dataset.json keeps them: by class name where the classes have names."""
    return {(class_names[i] if class_names and i < len(class_names) else str(i)): w
            for i, w in weights.items()}
