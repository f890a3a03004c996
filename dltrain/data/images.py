"""`images`: a folder of class folders of image files, streamed from disk and decoded by TensorFlow.

The layout, class order, file suffixes and resizing follow `keras.utils.image_dataset_from_directory`;
examples are uint8 (a memory cache is 4x smaller than float32; the model's Rescaling layer scales them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dltrain.config import IMAGE_SUFFIXES, DatasetConfig
from dltrain.data.types import DatasetInfo, FileSplit, Source
from dltrain.errors import DataError

CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
# The first bytes of the formats TensorFlow's decode_image reads (it goes by content, not by suffix).
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_SIGNATURE_BYTES = max(len(s) for s in SIGNATURES)
# Reading the first bytes of 100,000 files from a cold disk: 25 s in one thread, 6 s in 16 (benchmarks/README.md).
_READERS = 16
_NAMED = 3  # how many files a note or an error names before "..."
_SUFFIXES = ", ".join(IMAGE_SUFFIXES)
_LAYOUT = "expected one folder per class, e.g. <path>/cat/1.png, <path>/dog/2.jpg"


@dataclass
class Listing:
    """The image files of a class-folder tree: sorted paths, class indices, and the files that were left out."""

    class_names: list[str]
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    # Paths relative to the root: files with an image suffix that are not images, and images outside class folders.
    bad: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    checked: int = 0


def named(files: list[str]) -> str:
    """The first few of `files`, then "..." when there are more (for notes and errors)."""
    return ", ".join(files[:_NAMED]) + (", ..." if len(files) > _NAMED else "")


def _files(count: int, kind: str = "") -> str:
    return f"{count:,} {kind}{' ' if kind else ''}file{'' if count == 1 else 's'}"


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def class_folders(root: Path, layout: str = _LAYOUT) -> list[str]:
    """The class folder names under `root`, sorted as Keras sorts them (hidden folders are not classes);
    `layout` says what the folders should hold (images, or another kind of file)."""
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    names = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    if not names:
        images = [e.name for e in entries if e.is_file() and _is_image(e.name)]
        if images and layout == _LAYOUT:
            raise DataError(f"'{root}' holds {_files(len(images), 'image')} but no class folders", key="dataset.path",
                            hint=f"{_LAYOUT}; move the images into a folder per class, or give dataset.masks for "
                                 "a segmentation")
        raise DataError(f"'{root}' has no class folders", key="dataset.path", hint=layout)
    if len(names) == 1:
        raise DataError(f"'{root}' has only one class folder ('{names[0]}')", key="dataset.path",
                        hint=f"a classifier needs two or more; if '{names[0]}' holds the class folders, "
                             f"use its path ({layout})")
    return names


def describe(config: DatasetConfig) -> DatasetInfo:
    """Classes from the folder names and the example shape from image_size and color_mode; no file is read."""
    root = Path(config.path or "")
    names = class_folders(root)
    height, width = config.image_size
    return DatasetInfo(root.name, (height, width, CHANNELS[config.color_mode]), len(names), names)


def _signature_ok(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SIGNATURE_BYTES)
    except OSError:
        return False
    return head.startswith(SIGNATURES)


def _signatures_ok(paths: list[str]) -> list[bool]:
    """Whether each file starts like an image, read by threads: the time is the disk's, not Python's."""
    with ThreadPool(min(_READERS, max(1, len(paths) // 256))) as pool:
        return pool.map(_signature_ok, paths, chunksize=256)


def _walk(folder: str) -> tuple[list[str], list[str]]:
    """(image-suffix files, other files) under `folder`, recursively, in Keras's order (by folder, then name)."""
    images: list[str] = []
    others: list[str] = []
    for dirpath, _, files in sorted(os.walk(folder), key=lambda walked: walked[0]):
        for name in sorted(files):
            (images if _is_image(name) else others).append(os.path.join(dirpath, name))
    return images, others


def list_images(root: Path, class_names: list[str], check: bool = True) -> Listing:
    """Every image file under the class folders, with its class index; with `check`, files whose first bytes
    are not an image's are left out (in `bad`). An empty class folder is an error."""
    listing = Listing(class_names)
    listing.stray = sorted(e.name for e in os.scandir(root) if e.is_file() and _is_image(e.name))
    found: list[list[str]] = []
    for name in class_names:
        images, others = _walk(os.path.join(root, name))
        if not images:
            if others:
                shown = named([os.path.relpath(p, root) for p in others])
                raise DataError(f"class folder '{name}' has no image files ({_SUFFIXES}), only "
                                f"{_files(len(others), 'other')}: {shown}", key="dataset.path",
                                hint=f"put the class's images in {root / name}, or move the folder out of {root}")
            raise DataError(f"class folder '{name}' is empty", key="dataset.path",
                            hint=f"put the class's images in {root / name}, or remove the folder")
        found.append(images)
    everything = [p for images in found for p in images]
    ok = iter(_signatures_ok(everything) if check else [True] * len(everything))
    for index, images in enumerate(found):
        good = [p for p in images if next(ok)]
        listing.checked += len(images)
        if len(good) < len(images):
            kept = set(good)
            listing.bad += [os.path.relpath(p, root) for p in images if p not in kept]
        listing.paths += good
        listing.labels += [index] * len(good)
    if len(listing.bad) * 2 > listing.checked:
        raise DataError(f"{len(listing.bad):,} of {listing.checked:,} files in '{root}' are not images: "
                        f"{named(listing.bad)}", key="dataset.path",
                        hint="check the path and the files; PNG, JPEG, GIF and BMP are read")
    counts = np.bincount(np.array(listing.labels, dtype=np.int64), minlength=len(class_names))
    for name, images, count in zip(class_names, found, counts):
        if not count:
            raise DataError(f"class folder '{name}' has no readable images: its {_files(len(images))} are not "
                            f"images ({named([os.path.relpath(p, root) for p in images])})", key="dataset.path",
                            hint="replace the damaged files; PNG, JPEG, GIF and BMP are read")
    return listing


def _decode(contents: Any, channels: int) -> Any:
    """decode_image with `channels`, also for the formats whose decoder refuses that count (GIF and BMP
    have no grayscale, GIF and JPEG no alpha): those are decoded as RGB and converted."""
    import tensorflow as tf

    head = tf.strings.substr(contents, 0, 3)
    if channels == 1:
        via_rgb = tf.logical_or(tf.equal(head, b"GIF"), tf.equal(tf.strings.substr(contents, 0, 2), b"BM"))
        convert = tf.image.rgb_to_grayscale
    elif channels == 4:
        via_rgb = tf.logical_or(tf.equal(head, b"GIF"), tf.equal(head, b"\xff\xd8\xff"))

        def convert(rgb: Any) -> Any:
            return tf.concat([rgb, tf.fill(tf.concat([tf.shape(rgb)[:2], [1]], 0), tf.constant(255, tf.uint8))], -1)
    else:
        return tf.io.decode_image(contents, channels=channels, expand_animations=False)
    return tf.cond(via_rgb,
                   lambda: convert(tf.io.decode_image(contents, channels=3, expand_animations=False)),
                   lambda: tf.io.decode_image(contents, channels=channels, expand_animations=False))


def aspect_crop(image: Any, height: int, width: int) -> Any:
    """The largest centred crop with the target's aspect ratio (the box keras.preprocessing.image.smart_resize
    takes; its TF resize refuses the gaussian and mitchellcubic interpolations, so the resize is ours)."""
    import tensorflow as tf

    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    crop_h = tf.clip_by_value(tf.cast(tf.cast(w * height, tf.float32) / width, tf.int32), 1, h)
    crop_w = tf.clip_by_value(tf.cast(tf.cast(h * width, tf.float32) / height, tf.int32), 1, w)
    top = tf.cast(tf.cast(h - crop_h, tf.float32) / 2, tf.int32)
    left = tf.cast(tf.cast(w - crop_w, tf.float32) / 2, tf.int32)
    return image[top: top + crop_h, left: left + crop_w, :]


def decoder(image_size: list[int] | tuple[int, int], color_mode: str = "rgb", interpolation: str = "bilinear",
            crop_to_aspect_ratio: bool = False) -> Callable[[Any], Any]:
    """A TF-ops-only function from a path tensor to a uint8 image of `image_size` x channels."""
    height, width = int(image_size[0]), int(image_size[1])
    channels = CHANNELS[color_mode]

    def read(path: Any) -> Any:
        import tensorflow as tf

        image = _decode(tf.io.read_file(path), channels)

        def resized() -> Any:
            cropped = aspect_crop(image, height, width) if crop_to_aspect_ratio else image
            out = tf.image.resize(cropped, (height, width), method=interpolation)
            # "nearest" keeps uint8; the others give float32, rounded back to the pixels' own scale.
            return out if out.dtype == tf.uint8 else tf.saturate_cast(tf.round(out), tf.uint8)

        shape = tf.shape(image)
        same = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
        return tf.ensure_shape(tf.cond(same, lambda: image, resized), (height, width, channels))

    return read


def read(config: DatasetConfig, seed: int) -> Source:
    """The files of every class folder, streamed: file paths (sorted) and class indices in memory only."""
    info = describe(config)
    root = Path(config.path or "")
    listing = list_images(root, info.class_names or [])
    if listing.bad:
        info.notes.append(f"skipped {len(listing.bad):,} of {listing.checked:,} files that are not images: "
                          f"{named(listing.bad)}")
    if listing.stray:
        info.notes.append(f"ignored {_files(len(listing.stray), 'image')} outside the class folders of '{root}': "
                          f"{named(listing.stray)}")
    paths = np.array(listing.paths, dtype=str)
    labels = np.array(listing.labels, dtype=np.int32)
    read_file = decoder(config.image_size, config.color_mode, config.interpolation, config.crop_to_aspect_ratio)
    return Source(FileSplit(paths, labels, read_file, info.input_shape, "uint8"), None, info)
