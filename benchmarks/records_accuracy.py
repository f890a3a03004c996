"""Fashion-MNIST written as TFRecord shards and as a Hugging Face DatasetDict folder (from Debian's IDX files),
then trained with the built-in source's recipe (configs/fashion_mnist.yaml: same seed, model, optimizer,
batch and epochs) from configs/tfrecord_shards.yaml and configs/hf_dataset.yaml; prints the test accuracies.

    python benchmarks/records_accuracy.py --write data/            # only write the data the configs read
    python benchmarks/records_accuracy.py --write data/ --epochs 3 # write, then train the three and compare
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from records import pngs, write_shards  # noqa: E402  (this folder's benchmark)


def idx(kind: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(DEBIAN / f"{kind}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(DEBIAN / f"{kind}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def write(folder: Path) -> None:
    """folder/fashion-mnist-tfrecord/{train,test}-*.tfrecord and folder/fashion-mnist-hf (train, test)."""
    import datasets

    train, test = idx("train"), idx("t10k")
    shards = folder / "fashion-mnist-tfrecord"
    write_shards(shards, *train, 20)
    test_folder = folder / "fashion-mnist-tfrecord-test"
    write_shards(test_folder, *test, 4)
    for path in test_folder.glob("train-*.tfrecord"):
        path.rename(shards / path.name.replace("train-", "test-", 1))
    test_folder.rmdir()
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=NAMES)})

    def split(images, labels):
        return datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in pngs(images)],
                                           "label": labels.tolist()}, features=features)

    datasets.DatasetDict({"train": split(*train), "test": split(*test)}).save_to_disk(str(folder / "fashion-mnist-hf"))


def train(config: Path, sets: list[str], out: Path) -> tuple[float, float]:
    """(test accuracy, seconds) of one `dltrain train` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dltrain", "train", str(config), "--no-progress", "--output-dir",
                           str(out), *[a for s in sets for a in ("--set", s)]], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "DLTRAIN_OFFLINE": "1"}, check=True)
    run = Path(re.search(r"^run folder: (.+)$", done.stdout, re.M).group(1))
    return json.loads((run / "metrics.json").read_text())["test"]["accuracy"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, required=True, help="the folder the data goes to (the configs read data/)")
    parser.add_argument("--epochs", type=int, default=0, help="train the three for this many epochs and compare")
    args = parser.parse_args()
    if not (args.write / "fashion-mnist-hf").exists():
        write(args.write)
    if not args.epochs:
        return
    out = args.write / "runs"
    epochs = f"training.epochs={args.epochs}"
    rows = [("built-in fashion_mnist", ROOT / "configs" / "fashion_mnist.yaml", [epochs]),
            ("tfrecord shards", ROOT / "configs" / "tfrecord_shards.yaml",
             [epochs, f"dataset.path={args.write / 'fashion-mnist-tfrecord' / 'train-*.tfrecord'}",
              f"dataset.test.path={args.write / 'fashion-mnist-tfrecord' / 'test-*.tfrecord'}"]),
            ("hf dataset folder", ROOT / "configs" / "hf_dataset.yaml",
             [epochs, f"dataset.path={args.write / 'fashion-mnist-hf'}"])]
    print("| source | test accuracy | whole command |\n|---|---|---|")
    for name, config, sets in rows:
        accuracy, seconds = train(config, sets, out)
        print(f"| {name} | {accuracy:.4f} | {seconds:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
