"""Segmentation (`format: images` with `masks:`) on tiny PNG images and masks written here: a bright square on
a dark background, whose pixels are class 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CONFIGS, SYNTHETIC, cli
from dltrain import data
from dltrain.data import masks
from dltrain.config import DatasetConfig
from dltrain.errors import ConfigError, DataError
from dltrain.load import load_config


def make_pairs(root: Path, count: int = 32, size: tuple[int, int] = (16, 16), seed: int = 0) -> Path:
    """root/images/NNN.png (dark noise, one bright square) and root/masks/NNN.png (1 on the square, else 0)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i in range(count):
        image = rng.integers(0, 60, (*size, 3)).astype(np.uint8)
        mask = np.zeros(size, np.uint8)
        side = int(rng.integers(size[0] // 3, size[0] // 2 + 2))
        top, left = (int(rng.integers(0, n - side + 1)) for n in size)
        image[top:top + side, left:left + side] = rng.integers(180, 256, (side, side, 3))
        mask[top:top + side, left:left + side] = 1
        Image.fromarray(image).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}.png")
    return root


def dataset(root: Path, **keys) -> DatasetConfig:
    return DatasetConfig(path=str(root / "images"), format="images", masks=str(root / "masks"),
                         **{"image_size": [16, 16], "test_split": 0.25, **keys})


def load_error(config: DatasetConfig) -> str:
    """The error's message (its key and hint aside)."""
    with pytest.raises(DataError) as info:
        data.load(config, 0)
    assert info.value.key == "dataset.masks"
    return info.value.message


def test_config_errors(tmp_path: Path):
    config = tmp_path / "seg.yaml"
    text = (CONFIGS / "unet_segmentation.yaml").read_text()
    config.write_text(text.replace("  masks: data/pets/masks", "  num_classes: 3"))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value) == (f"{config}:19:3: dataset.num_classes: 'num_classes' applies to an image folder with "
                               "'masks' only (remove it: a classifier's classes are its class folders; or add 'masks:' "
                               "(a folder of label images) for a segmentation)")
    config.write_text(SYNTHETIC.replace("  name: synthetic\n  input_shape: [8]\n  num_classes: 3\n",
                                        "  path: rows.csv\n  masks: masks\n"))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value) == (f"{config}:5:3: dataset.masks: 'masks' does not apply to 'csv' sources (remove it; "
                               "it applies to: images)")


def test_pairs_streamed_resized_and_num_classes_from_the_masks(tmp_path: Path):
    root = make_pairs(tmp_path / "pets", count=8, size=(12, 10))
    splits = data.load(dataset(root, image_size=[6, 5], validation_split=0.0), 0)
    info = splits.info
    assert (info.task, info.num_classes, info.class_names, info.input_shape) == ("segmentation", 2, ["0", "1"], (6, 5, 3))
    assert isinstance(splits.train, data.FileSplit) and Path(splits.train.y[0]).parent == root / "masks"
    train = data.in_memory(splits.train)
    assert train.x.shape == (6, 6, 5, 3) and train.y.shape == (6, 6, 5, 1) and train.y.dtype == np.uint8
    # Nearest neighbour keeps class indices: the mask is the PIL mask resized with NEAREST, no blended values.
    path = splits.train.y[0]
    expected = np.asarray(Image.open(path).resize((5, 6), Image.Resampling.NEAREST))
    assert set(np.unique(train.y)) == {0, 1} and np.array_equal(train.y[0][..., 0], expected)
    # num_classes given: the masks are not read for it (a broken mask file does not stop describe).
    (root / "masks" / "000.png").write_bytes(b"broken")
    assert data.describe(dataset(root, num_classes=3)).num_classes == 3


def test_missing_unpaired_and_wrong_size_masks_are_named(tmp_path: Path):
    root = make_pairs(tmp_path / "pets", count=4)
    (root / "masks" / "002.png").unlink()
    assert load_error(dataset(root)) == (f"no mask for {root / 'images' / '002.png'}: expected "
                                         f"{root / 'masks' / '002'}.png")
    make_pairs(root, count=4)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / "extra.png")
    assert load_error(dataset(root)) == f"mask {root / 'masks' / 'extra.png'} has no image in '{root / 'images'}'"
    (root / "masks" / "extra.png").unlink()
    Image.fromarray(np.zeros((16, 15), np.uint8)).save(root / "masks" / "001.png")
    assert load_error(dataset(root)) == (f"mask {root / 'masks' / '001.png'} is 15x16 but its image "
                                         f"{root / 'images' / '001.png'} is 16x16")
    palette = Image.fromarray(np.zeros((16, 16), np.uint8), "P")
    palette.save(root / "masks" / "001.png")
    assert load_error(dataset(root)).startswith(f"mask {root / 'masks' / '001.png'} is a palette image; masks are "
                                                "8-bit grayscale, each pixel a class index")


def test_a_test_folder_of_its_own_takes_the_training_classes(tmp_path: Path):
    from dltrain.config import SourceConfig

    root = make_pairs(tmp_path / "pets", count=6)
    held = make_pairs(tmp_path / "held", count=3, seed=1)
    mask = np.asarray(Image.open(root / "masks" / "000.png")).copy()
    mask[0, 0] = 2  # a class the test folder's masks do not hold
    Image.fromarray(mask).save(root / "masks" / "000.png")
    config = dataset(root, test_split=None, test=SourceConfig(path=str(held / "images"), masks=str(held / "masks")))
    splits = data.load(config, 0)
    assert splits.info.num_classes == 3 and splits.info.sizes["test"] == 3
    assert Path(splits.test.y[0]).parent == held / "masks"


def test_a_mask_value_beyond_num_classes_names_the_mask(tmp_path: Path):
    root = make_pairs(tmp_path / "pets", count=4, size=(8, 8))
    mask = np.zeros((8, 8), np.uint8)
    mask[2, 3] = 5
    Image.fromarray(mask).save(root / "masks" / "002.png")
    split = masks.read(dataset(root, num_classes=3, image_size=[8, 8]), 0).train  # every pair, not split
    with pytest.raises(DataError) as info:
        data.in_memory(split)
    assert info.value.message == (f"cannot read the mask {root / 'masks' / '002.png'}: mask values must be below "
                                  "num_classes (3)")


def test_image_and_mask_are_augmented_together(tmp_path: Path):
    """A batch as fit reads it: every flipped image has its mask flipped with it (bright pixels are class 1)."""
    import keras

    from dltrain.config import TrainingConfig

    root = make_pairs(tmp_path / "pets", count=16, size=(8, 8))
    splits = data.load(dataset(root, image_size=[8, 8], validation_split=0.0), 0)
    flip = keras.Sequential([keras.layers.RandomFlip(mode="horizontal", seed=3)])
    fed = data.fit_datasets(splits, TrainingConfig(batch_size=12, shuffle=False), 0, ["output"], flip)
    x, y = (np.asarray(t) for t in next(iter(fed.train)))
    plain = data.in_memory(splits.train)
    flipped = [not np.array_equal(x[i], plain.x[i]) for i in range(len(x))]
    assert any(flipped) and not all(flipped)
    for i in range(len(x)):
        assert np.array_equal(x[i], plain.x[i][:, ::-1] if flipped[i] else plain.x[i])
        assert np.array_equal(y[i], plain.y[i][:, ::-1] if flipped[i] else plain.y[i])
        assert np.array_equal(y[i][..., 0] == 1, x[i].min(axis=-1) >= 180)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shipped U-Net config trained on the squares (once for the tests below): (data root, run folder)."""
    import re

    tmp = tmp_path_factory.mktemp("seg")
    root = make_pairs(tmp / "pets", count=48)
    result = cli("train", CONFIGS / "unet_segmentation.yaml", "--output-dir", tmp / "out", "--no-progress",
                 "--set", f"dataset.path={root / 'images'}", "--set", f"dataset.masks={root / 'masks'}",
                 "--set", "dataset.image_size=[16,16]", "--set", "training.epochs=3", "--set", "training.batch_size=8",
                 "--set", "optimizer.Adam.learning_rate=0.01", "--set", "training.tensorboard=false")
    assert result.exit_code == 0, result.output
    return root, Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))


def test_unet_learns_the_squares_and_reports_per_class_iou(trained: tuple[Path, Path]):
    _, run = trained
    metrics = json.loads((run / "metrics.json").read_text())
    iou = metrics["per_class_iou"]
    assert list(iou) == ["0", "1"]
    # Calling every pixel class 1 would score the square's share of the image (about 0.15) for class 1.
    assert iou["1"] > 0.5 and iou["0"] > 0.8, iou
    assert metrics["test"]["mean_io_u"] == pytest.approx((iou["0"] + iou["1"]) / 2, abs=1e-4)
    assert json.loads((run / "dataset.json").read_text())["task"] == "segmentation"
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert "masks.png" in plots and "per_class_iou.png" in plots and "confusion_matrix.png" not in plots


def test_evaluate_repeats_the_test_figures(trained: tuple[Path, Path]):
    _, run = trained
    evaluated = cli("evaluate", run, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert json.loads(evaluated.stdout) == pytest.approx(test, abs=1e-5)


def test_predict_writes_a_mask_png_of_the_image_size(trained: tuple[Path, Path], tmp_path: Path):
    root, run = trained
    big = tmp_path / "big.png"  # another size than image_size: the mask comes back at the image's own size
    Image.open(root / "images" / "000.png").resize((24, 20), Image.Resampling.NEAREST).save(big)
    result = cli("predict", run, root / "images" / "001.png", big, "--out", tmp_path / "masks")
    assert result.exit_code == 0, result.output
    written = [tmp_path / "masks" / "001_mask.png", tmp_path / "masks" / "big_mask.png"]
    assert result.stdout == f"001.png: mask written to {written[0]}\nbig.png: mask written to {written[1]}\n"
    small, large = (np.asarray(Image.open(p)) for p in written)
    assert small.shape == (16, 16) and large.shape == (20, 24)
    assert set(np.unique(small)) <= {0, 1} and set(np.unique(large)) <= {0, 1}
    truth = np.asarray(Image.open(root / "masks" / "001.png"))
    assert (small == truth).mean() > 0.8
    default = cli("predict", run, root / "images" / "002.png")
    assert default.stdout == f"002.png: mask written to {run / 'predictions' / '002_mask.png'}\n"


TINY = """\
name: tiny-seg
seed: 3
dataset:
  path: {root}/images
  format: images
  masks: {root}/masks
  image_size: [8, 8]
  test_split: 0.25
  augmentation:
    - RandomFlip: {{mode: horizontal_and_vertical}}
    - RandomRotation: {{factor: 0.1}}
model:
  layers:
    - Rescaling: {{scale: 0.00392156862745098}}
    - Conv2D: {{filters: 4, kernel_size: 3, padding: same, activation: relu}}
    - Dropout: {{rate: 0.2}}
    - Conv2D: {{filters: 2, kernel_size: 1, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: adam
training:
  epochs: 2
  batch_size: 8
  cache: false
  tensorboard: false
"""


def test_a_resumed_run_replays_the_augmented_masks(tmp_path: Path):
    """Epoch 2's file order and the flips and rotations of images and masks come from (seed, 2)."""
    import keras

    from conftest import train_text

    root = make_pairs(tmp_path / "pets", count=24, size=(8, 8))
    (tmp_path / "full").mkdir()
    full = train_text(tmp_path / "full", TINY.format(root=root))
    (tmp_path / "half").mkdir()
    half = train_text(tmp_path / "half", TINY.format(root=root).replace("epochs: 2", "epochs: 1"))
    resumed = cli("train", tmp_path / "full" / "config.yaml", "--resume", half, "--force", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    a, b = (keras.saving.load_model(run / "model.keras").get_weights() for run in (full, half))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
