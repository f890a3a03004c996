"""Write N small generated PNG images into class folders: a learnable image-folder dataset of any size.

Each class has its own colour and stripe direction; every image adds noise and a random shift, so a small
CNN learns the classes but not from one pixel. Run: python benchmarks/make_images.py /tmp/imgs100k 100000
"""

from __future__ import annotations

import argparse
import os
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image


def _class_pattern(label: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(colour, stripes) of one class: a hue of its own and stripes at an angle of its own."""
    rng = np.random.default_rng(1000 + label)
    colour = rng.uniform(40, 215, 3)
    angle = np.pi * label / 10
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / 6)
    return colour, stripes


def _write(job: tuple[str, int, int, int, int, int]) -> int:
    root, label, start, count, size, seed = job
    colour, stripes = _class_pattern(label, size + 4)
    rng = np.random.default_rng([seed, label, start])
    folder = Path(root) / f"class_{label:02d}"
    for i in range(start, start + count):
        dy, dx = rng.integers(0, 5, 2)
        pattern = stripes[dy: dy + size, dx: dx + size, None] * 40
        pixels = colour + pattern + rng.normal(0, 25, (size, size, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.png", compress_level=1)
    return count


def make(root: Path, count: int, classes: int = 10, size: int = 32, seed: int = 0, processes: int | None = None) -> None:
    """`count` PNG images of size x size RGB, spread evenly over `classes` class folders under `root`."""
    for label in range(classes):
        (root / f"class_{label:02d}").mkdir(parents=True, exist_ok=True)
    chunk = 1000
    jobs = []
    for label in range(classes):
        per_class = count // classes + (label < count % classes)
        jobs += [(str(root), label, s, min(chunk, per_class - s), size, seed) for s in range(0, per_class, chunk)]
    with Pool(processes or os.cpu_count()) as pool:
        written = sum(pool.imap_unordered(_write, jobs))
    assert written == count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder to fill (class_00/ ... class_NN/)")
    parser.add_argument("count", type=int, help="how many images in all")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=32, help="height and width in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=None, help="default: one per CPU core")
    args = parser.parse_args()
    start = time.perf_counter()
    make(args.root, args.count, args.classes, args.size, args.seed, args.processes)
    print(f"wrote {args.count:,} images to {args.root} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
