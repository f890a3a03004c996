"""Image folders (`format: images`) on small real PNG/JPEG/GIF/BMP files written with Pillow in tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dltrain import data
from dltrain.config import DatasetConfig
from dltrain.data import images
from dltrain.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
# One solid colour per class, so a pixel tells which class folder an example came from.
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
CLASSES = ["cat", "dog", "emu"]


def make_folder(root: Path, per_class: int = 8, size: tuple[int, int] = (10, 12), suffix: str = ".png",
                classes: list[str] = CLASSES, seed: int = 0) -> Path:
    """`root/<class>/<i><suffix>`: per_class images of size (height, width), the class's colour plus noise."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(-20, 21, (*size, 3))
            pixels = np.clip(np.array(COLOURS[index]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}{suffix}")
    return root


def config(root: Path, **keys) -> DatasetConfig:
    return DatasetConfig(path=str(root), format="images", **{"test_split": 0.25, **keys})


def test_describe_reads_no_file_and_imports_no_tensorflow(tmp_path: Path):
    make_folder(tmp_path / "pets")
    (tmp_path / "pets" / ".thumbs").mkdir()  # hidden folders are not classes (as in Keras)
    code = ("import sys; from dltrain.data import describe; from dltrain.config import DatasetConfig; "
            f"i = describe(DatasetConfig(path={str(tmp_path / 'pets')!r}, image_size=[20, 24])); "
            "print(i.name, i.input_shape, i.num_classes, i.class_names, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "pets (20, 24, 3) 3 ['cat', 'dog', 'emu'] False"


def test_folder_is_inferred_streamed_sorted_and_labelled(tmp_path: Path):
    root = make_folder(tmp_path / "pets", size=(10, 12))
    dataset = DatasetConfig(path=str(root), image_size=[10, 12], test_split=0.25, validation_split=0.25)
    assert dataset.kind == "images"
    source = images.read(dataset, 0)
    assert isinstance(source.train, data.FileSplit) and source.test is None
    assert list(source.train.paths) == sorted(source.train.paths)
    assert list(source.train.y) == [0] * 8 + [1] * 8 + [2] * 8 and source.train.y.dtype == np.int32
    assert source.train.paths[8] == str(root / "dog" / "00.png")
    splits = data.load(dataset, seed=3)
    assert splits.info.sizes == {"train": 14, "validation": 4, "test": 6}
    assert splits.info.class_names == CLASSES and splits.info.input_shape == (10, 12, 3)
    assert splits.info.notes == []
    train = data.in_memory(splits.train)
    assert train.x.shape == (14, 10, 12, 3) and train.x.dtype == np.uint8
    # Each example's mean colour is its class's colour: labels and pixels belong together.
    nearest = np.argmin([[np.abs(x.mean(axis=(0, 1)) - c).sum() for c in COLOURS] for x in train.x], axis=1)
    assert np.array_equal(nearest, train.y)
    # The same file read twice and the same image in PIL: unchanged pixels at its own size.
    path = Path(splits.train.paths[0])
    assert np.array_equal(train.x[0], np.asarray(Image.open(path)))


@pytest.mark.parametrize("keys", [
    {"image_size": [7, 9]},
    {"image_size": [16, 16], "crop_to_aspect_ratio": True},
    {"image_size": [6, 6], "crop_to_aspect_ratio": True, "interpolation": "nearest"},
    {"image_size": [20, 15], "interpolation": "bicubic"},
    {"image_size": [5, 5], "color_mode": "grayscale", "interpolation": "area"},
    {"image_size": [8, 8], "color_mode": "rgba", "interpolation": "lanczos3"},
])
def test_pixels_match_keras_image_dataset_from_directory(tmp_path: Path, keys: dict):
    import keras

    root = make_folder(tmp_path / "pets", per_class=3, size=(10, 12))
    # Other sizes and another format (Keras cannot read JPEG as rgba: TF's JPEG decoder has no alpha).
    make_folder(root, per_class=2, size=(11, 7), suffix=".bmp" if keys.get("color_mode") == "rgba" else ".jpg", seed=1)
    ours = data.in_memory(images.read(config(root, **keys), 0).train)
    theirs = keras.utils.image_dataset_from_directory(
        root, shuffle=False, batch_size=None, **{k: tuple(v) if k == "image_size" else v for k, v in keys.items()})
    x = np.stack([image.numpy() for image, _ in theirs])
    assert ours.x.dtype == np.uint8 and ours.x.shape == x.shape
    assert np.array_equal(ours.y, [label.numpy() for _, label in theirs])
    # Ours are uint8: Keras's float pixels rounded, and clipped where bicubic/lanczos overshoot 0..255.
    assert np.abs(ours.x - np.clip(x, 0, 255)).max() <= 0.5 + 1e-4


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".gif", ".bmp"])
@pytest.mark.parametrize("color_mode,channels", [("grayscale", 1), ("rgb", 3), ("rgba", 4)])
def test_every_format_reads_in_every_color_mode(tmp_path: Path, suffix: str, color_mode: str, channels: int):
    # TF's decoders refuse grayscale GIF/BMP and alpha JPEG/GIF (so Keras's loader fails on them); we convert.
    root = make_folder(tmp_path / "pets", per_class=1, size=(6, 6), suffix=suffix)
    x = data.in_memory(images.read(config(root, image_size=[6, 6], color_mode=color_mode), 0).train).x
    assert x.shape == (3, 6, 6, channels)
    if channels == 4:
        assert (x[..., 3] == 255).all()
    grey = x[..., 0] if channels == 1 else x[..., :3].mean(axis=-1)
    assert abs(grey.mean() - np.mean(COLOURS[0])) < 25


def test_test_folder_and_validation_folder(tmp_path: Path):
    root = make_folder(tmp_path / "train")
    make_folder(tmp_path / "test", per_class=2, seed=1)
    make_folder(tmp_path / "val", per_class=3, seed=2)
    splits = data.load(DatasetConfig(path=str(root), image_size=[10, 12], test={"path": str(tmp_path / "test")},
                                     validation={"path": str(tmp_path / "val")}), 0)
    assert splits.info.sizes == {"train": 24, "validation": 9, "test": 6}
    assert splits.test.paths[0] == str(tmp_path / "test" / "cat" / "00.png")
    assert np.array_equal(data.in_memory(splits.test).y, [0, 0, 1, 1, 2, 2])


def test_test_folder_with_other_classes_is_an_error(tmp_path: Path):
    root = make_folder(tmp_path / "train")
    make_folder(tmp_path / "test", per_class=1, classes=["cat", "dog"])
    with pytest.raises(DataError) as info:
        data.load(DatasetConfig(path=str(root), test={"path": str(tmp_path / "test")}), 0)
    assert str(info.value) == ("dataset.test: the test source's classes (cat, dog) differ from the training classes "
                               "(cat, dog, emu) (both sources need the same class folders (or the same label values))")


def test_missing_folder(tmp_path: Path):
    with pytest.raises(DataError) as info:
        data.load(config(tmp_path / "nowhere"), 0)
    assert str(info.value).startswith(f"dataset.path: dataset path '{tmp_path / 'nowhere'}' not found")


LAYOUT = "expected one folder per class, e.g. <path>/cat/1.png, <path>/dog/2.jpg"


def test_folder_without_class_folders(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        data.describe(config(tmp_path / "empty"))
    assert str(info.value) == f"dataset.path: '{tmp_path / 'empty'}' has no class folders ({LAYOUT})"


def test_images_at_the_top_level_instead_of_class_folders(tmp_path: Path):
    make_folder(tmp_path / "pets")
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in sorted((tmp_path / "pets").glob("*/*.png"))[:5]:
        path.rename(flat / f"{path.parent.name}-{path.name}")
    with pytest.raises(DataError) as info:
        data.load(config(flat), 0)
    assert str(info.value) == (f"dataset.path: '{flat}' holds 5 image files but no class folders "
                               f"({LAYOUT}; move the images into a folder per class, or give dataset.masks for a "
                               "segmentation)")


def test_stray_images_next_to_class_folders_are_a_note(tmp_path: Path):
    root = make_folder(tmp_path / "pets")
    (root / "cat" / "00.png").rename(root / "loose.png")
    splits = data.load(config(root), 0)
    assert sum(splits.info.sizes.values()) == 23
    assert splits.info.notes == [f"ignored 1 image file outside the class folders of '{root}': loose.png"]


def test_one_class_folder_is_an_error(tmp_path: Path):
    make_folder(tmp_path / "data" / "pets")
    with pytest.raises(DataError) as info:
        data.describe(config(tmp_path / "data"))
    assert str(info.value) == (f"dataset.path: '{tmp_path / 'data'}' has only one class folder ('pets') (a classifier "
                               f"needs two or more; if 'pets' holds the class folders, use its path ({LAYOUT}))")


def test_empty_class_folder_is_named(tmp_path: Path):
    root = make_folder(tmp_path / "pets")
    (root / "fox").mkdir()
    with pytest.raises(DataError) as info:
        data.load(config(root), 0)
    assert str(info.value) == (f"dataset.path: class folder 'fox' is empty "
                               f"(put the class's images in {root / 'fox'}, or remove the folder)")


def test_class_folder_of_other_files_is_named(tmp_path: Path):
    root = make_folder(tmp_path / "pets")
    (root / "fox").mkdir()
    for name in ("a.txt", "b.webp", "c.tiff", "d.csv"):
        (root / "fox" / name).write_text("x")
    with pytest.raises(DataError) as info:
        data.load(config(root), 0)
    assert str(info.value) == (
        "dataset.path: class folder 'fox' has no image files (.bmp, .gif, .jpeg, .jpg, .png), only 4 other files: "
        f"fox/a.txt, fox/b.webp, fox/c.tiff, ... (put the class's images in {root / 'fox'}, "
        f"or move the folder out of {root})")


def test_files_that_are_not_images_are_skipped_with_a_note(tmp_path: Path):
    root = make_folder(tmp_path / "pets")
    (root / "cat" / "03.png").write_bytes(b"")
    (root / "dog" / "05.png").write_text("<html>not found</html>")
    (root / "emu" / "01.jpg").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ")  # a WebP named .jpg
    splits = data.load(config(root), 0)
    assert sum(splits.info.sizes.values()) == 22
    assert splits.info.notes == ["skipped 3 of 25 files that are not images: cat/03.png, dog/05.png, emu/01.jpg"]


def test_mostly_bad_files_is_an_error(tmp_path: Path):
    root = make_folder(tmp_path / "pets", per_class=2)
    for path in sorted(root.glob("*/*.png"))[:4]:
        path.write_bytes(b"GIF8")
    with pytest.raises(DataError) as info:
        data.load(config(root), 0)
    assert str(info.value) == (f"dataset.path: 4 of 6 files in '{root}' are not images: cat/00.png, cat/01.png, "
                               "dog/00.png, ... (check the path and the files; PNG, JPEG, GIF and BMP are read)")


def test_class_of_only_bad_files_is_an_error(tmp_path: Path):
    root = make_folder(tmp_path / "pets", per_class=4)
    for path in (root / "dog").iterdir():
        path.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError) as info:
        data.load(config(root), 0)
    assert str(info.value) == (
        "dataset.path: class folder 'dog' has no readable images: its 4 files are not images (dog/00.png, "
        "dog/01.png, dog/02.png, ...) (replace the damaged files; PNG, JPEG, GIF and BMP are read)")


def test_truncated_image_is_a_data_error_when_read(tmp_path: Path):
    root = make_folder(tmp_path / "pets", per_class=2)
    damaged = root / "dog" / "01.png"
    damaged.write_bytes(damaged.read_bytes()[:60])
    source = images.read(config(root), 0)
    assert source.info.notes == []  # its signature is a PNG's: only the decoder can tell
    with pytest.raises(DataError) as info:
        data.in_memory(source.train)
    assert str(info.value) == f"cannot read {damaged}: Invalid PNG data, size 60 (remove or replace the damaged file)"
    first = root / "cat" / "00.png"
    first.write_bytes(first.read_bytes()[:60])
    with pytest.raises(DataError) as info:
        data.in_memory(source.train)
    assert str(info.value) == (f"cannot read {root / 'cat' / '00.png'} (and 1 more): Invalid PNG data, size 60 "
                               "(remove or replace the damaged files)")


def test_signature_check_is_fast(tmp_path: Path):
    """The listing opens every file: 3,000 files (the 100k folder's numbers are in benchmarks/README.md)."""
    import time

    root = make_folder(tmp_path / "pets", per_class=1)
    for name in CLASSES:
        first = root / name / "00.png"
        for i in range(1, 1000):
            (root / name / f"{i:04d}.png").write_bytes(first.read_bytes())
    start = time.perf_counter()
    listing = images.list_images(root, CLASSES)
    seconds = time.perf_counter() - start
    assert len(listing.paths) == 3000 and not listing.bad
    assert seconds < 1.0, f"listing 3,000 files took {seconds:.2f} s"


# --- End to end: `dltrain train` on a folder -------------------------------------------------------------

from typer.testing import CliRunner  # noqa: E402

from dltrain.cli import app  # noqa: E402

FOLDER = """\
name: pets
seed: 4
dataset:
  path: {path}
  image_size: [8, 8]
  {split}
model:
  layers:
    - Rescaling: {{scale: 0.00392156862745098}}
    - Conv2D: {{filters: 4, kernel_size: 3, activation: relu}}
    - Flatten
    - Dense: {{units: "${{dataset.num_classes}}", activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: {{Adam: {{learning_rate: 0.01}}}}
metrics: [accuracy]
training:
  epochs: 1
  batch_size: 8
  tensorboard: false
  cache: {cache}
"""


def train(tmp_path: Path, text: str, *extra: str):
    config = tmp_path / "pets.yaml"
    config.write_text(text)
    result = CliRunner().invoke(app, ["train", str(config), "--output-dir", str(tmp_path / "out"), "--no-progress",
                                      *extra])
    return result


def run_dir(result) -> Path:
    import re

    return Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))


@pytest.mark.parametrize("cache", ["false", "true", "{tmp}/cache/imgs"])
def test_train_on_a_folder_with_test_split(tmp_path: Path, cache: str):
    import json

    root = make_folder(tmp_path / "pets", per_class=12, size=(10, 12))
    (root / "cat" / "05.png").write_text("not an image")
    result = train(tmp_path, FOLDER.format(path=root, split="test_split: 0.25", cache=cache.format(tmp=tmp_path)))
    assert result.exit_code == 0, result.output
    assert result.stderr == "note: skipped 1 of 36 files that are not images: cat/05.png\n"
    described = json.loads((run_dir(result) / "dataset.json").read_text())
    assert described["class_names"] == CLASSES and described["input_shape"] == [8, 8, 3]
    assert described["sizes"] == {"train": 23, "validation": 3, "test": 9}
    assert described["notes"] == ["skipped 1 of 36 files that are not images: cat/05.png"]
    scored = json.loads((run_dir(result) / "metrics.json").read_text())["test"]
    assert scored["accuracy"] > 0.5  # three solid colours: one epoch of a tiny CNN tells them apart


def test_train_with_test_folder_and_augmentation_then_evaluate(tmp_path: Path):
    import json

    root = make_folder(tmp_path / "pets", per_class=10, size=(12, 12), suffix=".jpg")
    make_folder(tmp_path / "held_out", per_class=3, size=(9, 9), seed=5)
    text = FOLDER.format(path=root, split=f"test: {{path: {tmp_path / 'held_out'}}}", cache="false")
    text = text.replace("  image_size: [8, 8]\n", "  image_size: [8, 8]\n  augmentation:\n"
                                                  "    - RandomFlip: {mode: horizontal}\n"
                                                  "    - RandomRotation: {factor: 0.1}\n")
    result = train(tmp_path, text)
    assert result.exit_code == 0, result.output
    folder = run_dir(result)
    assert json.loads((folder / "dataset.json").read_text())["sizes"] == {"train": 27, "validation": 3, "test": 9}
    evaluated = CliRunner().invoke(app, ["evaluate", str(folder), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(
        json.loads((folder / "metrics.json").read_text())["test"]["accuracy"])


def test_example_config_trains_one_epoch(tmp_path: Path):
    root = make_folder(tmp_path / "pets", per_class=10, size=(20, 16), suffix=".jpg")
    result = CliRunner().invoke(app, [
        "train", str(ROOT / "configs" / "images_folder.yaml"), "--output-dir", str(tmp_path / "out"), "--no-progress",
        "--set", f"dataset.path={root}", "--set", "dataset.image_size=[16,16]", "--set", "training.epochs=1",
        "--set", "training.tensorboard=false"])
    assert result.exit_code == 0, result.output
    assert (run_dir(result) / "model.keras").is_file()


def test_truncated_image_in_a_streamed_run_is_a_clear_error(tmp_path: Path):
    root = make_folder(tmp_path / "pets", per_class=8, size=(10, 12))
    damaged = root / "emu" / "03.png"
    damaged.write_bytes(damaged.read_bytes()[:60])
    result = train(tmp_path, FOLDER.format(path=root, split="test_split: 0.25", cache="false"))
    assert result.exit_code == 1
    assert result.stderr == (f"error: cannot read {damaged}: Invalid PNG data, size 60 "
                             "(remove or replace the damaged file)\n")


@pytest.mark.parametrize("cache", ["false", "{tmp}/cache/imgs"])
def test_streamed_folder_resumes_bit_identically(tmp_path: Path, cache: str):
    """Epoch 2's file order, decode and augmentation come from (seed, 2): a resumed run replays them."""
    import keras

    root = make_folder(tmp_path / "pets", per_class=12, size=(10, 12))
    text = FOLDER.format(path=root, split="test_split: 0.25", cache=cache.format(tmp=tmp_path))
    text = text.replace("  image_size: [8, 8]\n", "  image_size: [8, 8]\n  augmentation:\n"
                                                  "    - RandomFlip: {mode: horizontal}\n")
    text = text.replace("  batch_size: 8\n", "  batch_size: 8\n  shuffle_buffer: 4\n")
    full = train(tmp_path, text, "--set", "training.epochs=3")
    assert full.exit_code == 0, full.output
    half = train(tmp_path, text, "--set", "training.epochs=1")
    assert half.exit_code == 0, half.output
    resumed = CliRunner().invoke(app, ["train", str(tmp_path / "pets.yaml"), "--set", "training.epochs=3",
                                       "--resume", str(run_dir(half)), "--force", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    a, b = (keras.saving.load_model(run_dir(r) / "model.keras").get_weights() for r in (full, half))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_memory_cache_that_cannot_fit_is_refused_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from dltrain.data import pipeline

    root = make_folder(tmp_path / "pets", per_class=12, size=(10, 12))
    # 24 training images of 8x8x3 bytes, held three times, plus 3 validation and 9 test images: 16,128 bytes.
    monkeypatch.setattr(pipeline, "memory_available", lambda: 16_127)
    result = train(tmp_path, FOLDER.format(path=root, split="test_split: 0.25", cache="true"))
    assert result.exit_code == 1
    assert result.stderr == (f"error: {tmp_path / 'pets.yaml'}:20:3: training.cache: caching the decoded images in memory (cache: true) needs about "
                             "16.1 KB, more than the 16.1 KB available (set training.cache: false (decode every epoch; "
                             "memory stays bounded) or a file path (decode once, to disk))\n")
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(pipeline, "memory_available", lambda: 16_128)
    assert train(tmp_path, FOLDER.format(path=root, split="test_split: 0.25", cache="true")).exit_code == 0


def test_predict_on_image_files_matches_the_training_decoder(tmp_path: Path):
    """`dltrain predict` reads image files with Pillow; the numbers it gives match the model on the
    tf.data decoder's pixels (same size here, so no resize differences), in RGBA too."""
    import csv

    import keras

    root = make_folder(tmp_path / "pets", per_class=8, size=(8, 8))
    text = FOLDER.format(path=root, split="test_split: 0.25", cache="false").replace(
        "  image_size: [8, 8]\n", "  image_size: [8, 8]\n  color_mode: rgba\n")
    result = train(tmp_path, text)
    assert result.exit_code == 0, result.output
    run = run_dir(result)
    files = [root / "cat" / "00.png", root / "emu" / "01.png"]
    predicted = CliRunner().invoke(app, ["predict", str(run), *map(str, files), "--out", str(tmp_path / "p.csv")])
    assert predicted.exit_code == 0, predicted.output
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    split = images.read(config(root, color_mode="rgba", image_size=[8, 8]), 0).train
    pixels = data.examples(split, [int(np.flatnonzero(split.paths == str(f))[0]) for f in files]).x
    assert pixels.shape == (2, 8, 8, 4)
    expected = keras.saving.load_model(run / "model.keras").predict(pixels, verbose=0)
    got = np.array([[float(row[name]) for name in CLASSES] for row in rows])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
