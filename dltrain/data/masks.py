"""Segmentation: images paired by file stem with label images (masks) whose pixel values are class indices.

Images are resized bilinearly to `image_size`, masks with nearest neighbour (a class index is never blended).
The headers of every image and mask are read when the folders are listed (not their pixels), so a missing or
unpaired mask, or a mask of another size than its image, is named before training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dltrain.config import IMAGE_SUFFIXES, DatasetConfig
from dltrain.data.images import CHANNELS, aspect_crop, decoder
from dltrain.data.types import DatasetInfo, FileSplit, Source
from dltrain.errors import DataError

_READERS = 16
# The last check_pairs result: ((path, size, mtime) of every file, whether values were read) -> largest value.
_CHECKED: dict[tuple[tuple[tuple[str, int, int], ...], bool], int] = {}
_DAMAGED = "replace or remove the damaged file (and its image or mask)"
_HINT = "every image needs one mask of the same size with the same file name (any image suffix) in dataset.masks"


def _files(root: str, key: str) -> dict[str, str]:
    """{stem: path} of the image files under `root` (the stem: the path under root without its suffix);
    hidden files and folders are left out. Two files with one stem are an error."""
    found: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            path = os.path.join(dirpath, name)
            stem = os.path.splitext(os.path.relpath(path, root))[0]
            if stem in found:
                raise DataError(f"{found[stem]} and {path} have the same name", key=key,
                                hint="images and masks are paired by file name: keep one file per name")
            found[stem] = path
    return found


def pairs(images: str, masks: str) -> tuple[list[str], list[str]]:
    """(image paths, mask paths), paired by stem and sorted; a missing or unpaired mask is an error naming it."""
    if not os.path.isdir(masks):
        raise DataError(f"mask folder '{masks}' not found", key="dataset.masks",
                        hint="check the path; a relative path is read from the working folder")
    shown, given = _files(images, "dataset.path"), _files(masks, "dataset.masks")
    if not shown:
        raise DataError(f"'{images}' holds no image files ({', '.join(IMAGE_SUFFIXES)})", key="dataset.path",
                        hint="point dataset.path at the folder of images")
    missing = sorted(set(shown) - set(given))
    if missing:
        more = f" (and {len(missing) - 1:,} more)" if len(missing) > 1 else ""
        raise DataError(f"no mask for {shown[missing[0]]}{more}: expected {os.path.join(masks, missing[0])}.png",
                        key="dataset.masks", hint=_HINT)
    unpaired = sorted(set(given) - set(shown))
    if unpaired:
        more = f" (and {len(unpaired) - 1:,} more)" if len(unpaired) > 1 else ""
        raise DataError(f"mask {given[unpaired[0]]}{more} has no image in '{images}'", key="dataset.masks",
                        hint=f"remove it, or add its image; {_HINT}")
    keys = sorted(shown)
    return [shown[k] for k in keys], [given[k] for k in keys]


@dataclass(frozen=True)
class _Pair:
    problem: str = ""
    top: int = 0  # the mask's largest value (when asked for)
    hint: str = _HINT


def _check_pair(image: str, mask: str, values: bool) -> _Pair:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as opened:
            size = opened.size
    except (OSError, UnidentifiedImageError) as error:
        return _Pair(f"cannot read {image}: {error}", hint=_DAMAGED)
    try:
        with Image.open(mask) as opened:
            if opened.mode not in ("L", "1"):
                kind = "a palette image" if opened.mode == "P" else f"a {opened.mode} image"
                return _Pair(f"mask {mask} is {kind}; masks are 8-bit grayscale, each pixel a class index "
                             "(convert it: Image.fromarray(numpy.asarray(Image.open(path))).save(path))")
            if opened.size != size:
                return _Pair(f"mask {mask} is {opened.size[0]}x{opened.size[1]} but its image {image} is "
                             f"{size[0]}x{size[1]}")
            top = int(opened.getextrema()[1]) if values else 0
    except (OSError, UnidentifiedImageError) as error:
        return _Pair(f"cannot read mask {mask}: {error}", hint=_DAMAGED)
    return _Pair(top=top)


def _stamp(path: str) -> tuple[str, int, int]:
    stat = os.stat(path)
    return path, stat.st_size, stat.st_mtime_ns


def check_pairs(images: list[str], masks: list[str], values: bool) -> int:
    """Check every image and mask (headers; with `values`, the masks' pixels too, by threads): the largest
    mask value, or 0 without `values`. A file that cannot be read, or of another size, is an error naming it."""
    with ThreadPool(min(_READERS, max(1, len(images) // 64))) as pool:
        # A run describes the data, then reads it: the second look at unchanged files is free.
        stamps = tuple(pool.map(_stamp, [*images, *masks], chunksize=256))
        if (stamps, True) in _CHECKED or (stamps, values) in _CHECKED:
            return _CHECKED.get((stamps, True), 0)
        checked = pool.starmap(_check_pair, [(i, m, values) for i, m in zip(images, masks)], chunksize=64)
    for found in checked:
        if found.problem:
            raise DataError(found.problem, key="dataset.masks", hint=found.hint)
    top = max(found.top for found in checked)
    _CHECKED.clear()  # one folder's result is kept: memory stays small
    _CHECKED[(stamps, values)] = top
    return top


def _classes(config: DatasetConfig, top: int) -> int:
    if config.num_classes is not None:
        return config.num_classes
    if top < 1:
        raise DataError(f"every mask in '{config.masks}' is 0: one class", key="dataset.masks",
                        hint="a segmentation needs two or more classes (pixel values 0, 1, ...)")
    return top + 1


def describe(config: DatasetConfig) -> DatasetInfo:
    """The example shape from image_size and color_mode; num_classes as given, or else the largest mask value
    plus one (the masks are read for it: give num_classes and nothing is read)."""
    root = Path(config.path or "")
    height, width = config.image_size
    if config.num_classes is None:
        images, masks = pairs(str(root), str(config.masks))
        classes = _classes(config, check_pairs(images, masks, values=True))
    else:
        classes = config.num_classes
    return DatasetInfo(root.name, (height, width, CHANNELS[config.color_mode]), classes,
                       [str(i) for i in range(classes)], masks=True)


def mask_decoder(config: DatasetConfig, classes: int) -> Callable[[Any], Any]:
    """A TF-ops-only function from a mask path to a uint8 (height, width, 1) mask of class indices, resized
    with nearest neighbour; a value of `classes` or more stops the pipeline (the file is then named)."""
    height, width = (int(n) for n in config.image_size)
    crop = config.crop_to_aspect_ratio

    def read(path: Any) -> Any:
        import tensorflow as tf

        mask = tf.io.decode_image(tf.io.read_file(path), channels=1, expand_animations=False)
        if crop:
            mask = aspect_crop(mask, height, width)
        mask = tf.image.resize(mask, (height, width), method="nearest")
        check = tf.debugging.assert_less(tf.reduce_max(mask), tf.constant(classes, tf.uint8),
                                         message=f"mask values must be below num_classes ({classes})")
        with tf.control_dependencies([check]):
            return tf.ensure_shape(tf.identity(mask), (height, width, 1))

    return read


def read(config: DatasetConfig, seed: int) -> Source:
    """Images and their masks, streamed: both lists of paths in memory, every pair's headers checked."""
    root = str(config.path or "")
    images, masks = pairs(root, str(config.masks))
    top = check_pairs(images, masks, values=config.num_classes is None)
    classes = _classes(config, top)
    height, width = config.image_size
    info = DatasetInfo(Path(root).name, (height, width, CHANNELS[config.color_mode]), classes,
                       [str(i) for i in range(classes)], masks=True)
    read_image = decoder(config.image_size, config.color_mode, config.interpolation, config.crop_to_aspect_ratio)
    split = FileSplit(np.array(images, dtype=str), np.array(masks, dtype=str), read_image, info.input_shape, "uint8",
                      read_y=mask_decoder(config, classes), y_shape=(height, width, 1), y_dtype="uint8")
    return Source(split, None, info)
