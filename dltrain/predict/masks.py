"""A segmentation run's answers: one mask PNG per input image, at the image's own size, each pixel a class index."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.errors import DataError
from dltrain.predict.inputs import IMAGE_SUFFIXES

MASK_SUFFIX = "_mask.png"


def class_indices(outputs: Any) -> np.ndarray:
    """Each pixel's most probable class from a segmentation model's first output (one sigmoid channel: > 0.5)."""
    if isinstance(outputs, dict):
        outputs = next(iter(outputs.values()))
    elif isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    outputs = np.asarray(outputs)
    if outputs.ndim != 4:
        raise DataError(f"the model's output has shape {outputs.shape[1:]}, not a mask (height, width, classes)",
                        hint="a segmentation model ends in a layer with one channel per class, e.g. "
                             "Conv2D: {filters: ${dataset.num_classes}, kernel_size: 1, activation: softmax}")
    if outputs.shape[-1] == 1:
        return (outputs[..., 0] > 0.5).astype(np.uint8)
    return outputs.argmax(axis=-1).astype(np.uint8)


def _own_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image input (None for arrays and tables: their masks keep the model's size)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def write_masks(inputs: list[Path], names: list[str], outputs: Any, folder: Path) -> list[Path]:
    """`folder/<input>_mask.png` for every example (resized with nearest neighbour to its image's size)."""
    from PIL import Image

    from dltrain.runs import atomic_path

    predicted = class_indices(outputs)
    sizes = {path.name: _own_size(path) for path in inputs}
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for name, mask in zip(names, predicted):
        stem = re.sub(r"[^\w.\-]+", "_", Path(name).stem if name in sizes else name)
        unique, n = stem, 1
        while unique in taken:  # two inputs of one name from different folders
            n += 1
            unique = f"{stem}_{n}"
        taken.add(unique)
        picture = Image.fromarray(mask, mode="L")
        size = sizes.get(name)
        if size is not None and size != picture.size:
            picture = picture.resize(size, Image.Resampling.NEAREST)
        path = folder / f"{unique}{MASK_SUFFIX}"
        with atomic_path(path) as tmp:
            picture.save(tmp, format="PNG")
        written.append(path)
    return written
