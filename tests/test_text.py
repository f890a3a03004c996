"""`format: text`: class folders of .txt files written in tmp_path, vectorized by a TextVectorization layer
adapted on the training texts and saved in the model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CONFIGS
from dltrain import data
from dltrain.cli import app
from dltrain.config import DatasetConfig
from dltrain.load import load_config
from dltrain.errors import ConfigError, DataError

WORDS = {"neg": ["awful", "boring", "dull"], "pos": ["great", "lovely", "superb"]}
FILLER = ["the", "movie", "was", "quite", "and"]


def write_texts(root: Path, per_class: int, seed: int = 0, extra: str = "") -> Path:
    """Class folders neg/ and pos/ of short reviews, each with its class's own words (so a model learns them)."""
    rng = np.random.default_rng(seed)
    for name, words in WORDS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            text = " ".join([rng.choice(words), *rng.choice(words + FILLER, 7)]) + (f" {extra}" if extra else "")
            (root / name / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def reviews(tmp_path: Path) -> Path:
    """aclImdb's layout in miniature: train/{neg,pos,unsup} and test/{neg,pos}; 'zebra' only in test texts."""
    write_texts(tmp_path / "train", 30)
    (tmp_path / "train" / "unsup").mkdir()
    (tmp_path / "train" / "unsup" / "0.txt").write_text("no label here")
    (tmp_path / "train" / "labeledBow.feat").write_text("files beside the class folders are ignored")
    write_texts(tmp_path / "test", 10, seed=1, extra="zebra")
    return tmp_path


def text_config(path: Path, **keys) -> DatasetConfig:
    return DatasetConfig(path=str(path), **keys)


def test_describe_takes_classes_from_folders_and_shape_from_the_vectorizer(reviews: Path):
    info = data.describe(text_config(reviews / "train", output_sequence_length=12))
    assert (info.num_classes, info.class_names, info.input_shape) == (3, ["neg", "pos", "unsup"], (12,))
    info = data.describe(text_config(reviews / "train", class_names=["pos", "neg"]))
    assert (info.num_classes, info.class_names, info.input_shape) == (2, ["pos", "neg"], (None,))
    info = data.describe(text_config(reviews / "train", output_mode="tf_idf", max_tokens=64, ngrams=2))
    assert info.input_shape == (64,)


def test_format_is_inferred_from_txt_files(reviews: Path):
    assert text_config(reviews / "train").kind == "text"


def test_load_reads_texts_labels_and_explicit_test_folder(reviews: Path):
    config = text_config(reviews / "train", class_names=["neg", "pos"], test={"path": str(reviews / "test")},
                         validation_split=0.2)
    splits = data.load(config, seed=3)
    assert splits.info.sizes == {"train": 48, "validation": 12, "test": 20}
    assert splits.train.x.dtype == object and splits.train.x.shape == (48,)
    assert splits.test.x[0].endswith(" zebra") and splits.test.y.tolist() == [0] * 10 + [1] * 10
    # Labels follow class_names: every 'pos' text has a pos word and label 1.
    for text, label in zip(splits.train.x, splits.train.y):
        assert any(word in text.split() for word in WORDS[["neg", "pos"][label]])
    again = data.load(config, seed=3)
    assert np.array_equal(splits.val.x, again.val.x)


def test_vectorizer_is_adapted_on_training_texts_only(reviews: Path):
    import keras

    config = text_config(reviews / "train", class_names=["neg", "pos"], test={"path": str(reviews / "test")},
                         max_tokens=100, output_sequence_length=10)
    splits = data.load(config, seed=0)
    raw, vectors = splits.preprocessing(splits.train)
    assert tuple(vectors.shape[1:]) == splits.info.input_shape == (10,)
    model = keras.Model(raw, vectors)
    vocabulary = model.layers[1].get_vocabulary()
    assert "superb" in vocabulary and "zebra" not in vocabulary
    ids = model.predict(np.array(["superb zebra"], dtype=object), verbose=0)
    assert ids[0, 0] == vocabulary.index("superb") and ids[0, 1] == 1  # 1: the out-of-vocabulary id
    assert ids[0, 2:].tolist() == [0] * 8  # padded to output_sequence_length


def test_without_output_sequence_length_token_ids_are_padded_to_each_batch(reviews: Path):
    import keras

    splits = data.load(text_config(reviews / "train", class_names=["neg", "pos"], test_split=0.2), seed=0)
    raw, ids = splits.preprocessing(splits.train)
    assert tuple(ids.shape[1:]) == splits.info.input_shape == (None,)
    out = keras.Model(raw, ids).predict(np.array(["great", "great lovely superb"], dtype=object), verbose=0)
    assert out.shape == (2, 3) and out[0, 1:].tolist() == [0, 0]


def test_multi_hot_vectors_have_max_tokens_entries_even_with_a_smaller_vocabulary(reviews: Path):
    import keras

    splits = data.load(text_config(reviews / "train", class_names=["neg", "pos"], test_split=0.2,
                                   output_mode="multi_hot", max_tokens=500), seed=0)
    raw, vectors = splits.preprocessing(splits.train)
    out = keras.Model(raw, vectors).predict(splits.test.x[:4], verbose=0)
    assert out.shape == (4, 500) and splits.info.input_shape == (500,)
    assert set(np.unique(out)) <= {0.0, 1.0}


def test_saved_model_reloads_in_safe_mode_with_its_vocabulary(reviews: Path, tmp_path: Path):
    import keras

    splits = data.load(text_config(reviews / "train", class_names=["neg", "pos"], test_split=0.2,
                                   max_tokens=100, output_sequence_length=10), seed=0)
    raw, vectors = splits.preprocessing(splits.train)
    hidden = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(100, 4)(vectors))
    model = keras.Model(raw, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    texts = splits.test.x
    assert np.allclose(model.predict(texts, verbose=0), again.predict(texts, verbose=0))


def test_multi_hot_without_max_tokens_is_a_config_error(write_config, tmp_path: Path):
    write_texts(tmp_path / "texts", 2)
    path = write_config(f"dataset: {{path: {tmp_path / 'texts'}, output_mode: multi_hot}}\n"
                        "model: {layers: [Dense: {units: 2}]}\nloss: mse\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}:1:{len(str(tmp_path)) + 25}: dataset.output_mode: output_mode 'multi_hot' needs max_tokens (the length "
                               "of each text's vector) (add e.g. 'max_tokens: 20000' under 'dataset')")


def test_class_names_applies_to_folders_only(write_config):
    path = write_config("dataset: {name: synthetic, class_names: [a, b]}\nmodel: {layers: [Dense: {units: 2}]}\nloss: mse\n")
    with pytest.raises(ConfigError, match="dataset.class_names: 'class_names' does not apply to the synthetic dataset"):
        load_config(path)


def load_error(config: DatasetConfig) -> str:
    with pytest.raises(DataError) as info:
        data.load(config, 0)
    return str(info.value)


def test_no_class_folders_is_an_error(tmp_path: Path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.txt").write_text("one text, no class folder")
    assert load_error(text_config(tmp_path / "flat", format="text")) == (
        f"dataset.path: '{tmp_path / 'flat'}' has 0 class folders; a text dataset needs at least 2 "
        "(put the .txt files of each class in a subfolder named after the class)")


def test_a_file_instead_of_a_folder_is_an_error(tmp_path: Path):
    (tmp_path / "a.txt").write_text("hello")
    assert load_error(text_config(tmp_path / "a.txt", format="text")) == (
        f"dataset.path: '{tmp_path / 'a.txt'}' is not a folder "
        "(a text dataset is a folder with one subfolder of .txt files per class)")


def test_empty_class_folder_is_an_error(tmp_path: Path):
    write_texts(tmp_path / "t", 3)
    (tmp_path / "t" / "zzz").mkdir()
    (tmp_path / "t" / "zzz" / "notes.md").write_text("not a .txt file")
    assert load_error(text_config(tmp_path / "t", test_split=0.3)) == (
        f"dataset.path: class folder 'zzz' in '{tmp_path / 't'}' has no .txt files "
        "(add .txt files to it, or leave it out with 'class_names:' under 'dataset')")


def test_unknown_class_name_lists_the_folders(reviews: Path):
    assert load_error(text_config(reviews / "train", class_names=["neg", "positive"], test_split=0.2)) == (
        f"dataset.class_names: class folder 'positive' not found in '{reviews / 'train'}' "
        "(the folders there are: neg, pos, unsup)")


def test_test_folder_with_other_classes_is_an_error(reviews: Path):
    (reviews / "test" / "unsup").mkdir()
    (reviews / "test" / "unsup" / "0.txt").write_text("x")
    (reviews / "test" / "pos").rename(reviews / "test" / "positive")
    error = load_error(text_config(reviews / "train", test={"path": str(reviews / "test")}))
    assert error == ("dataset.test: the test source's classes (neg, positive, unsup) differ from the training classes "
                     "(neg, pos, unsup) (both sources need the same class folders (or the same label values))")


def test_files_that_are_not_utf8_are_skipped_with_a_note(reviews: Path):
    for i in range(4):
        (reviews / "train" / "pos" / f"latin{i}.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    splits = data.load(text_config(reviews / "train", class_names=["neg", "pos"], test_split=0.2), 0)
    assert sum(splits.info.sizes.values()) == 60
    assert splits.info.notes == ["skipped 4 files that are not UTF-8 text: pos/latin0.txt, pos/latin1.txt, "
                                 "pos/latin2.txt and 1 more"]


def test_a_class_with_no_utf8_file_is_an_error(tmp_path: Path):
    write_texts(tmp_path / "t", 2)
    for file in (tmp_path / "t" / "neg").iterdir():
        file.write_bytes(b"\xff\xfe not utf-8")
    assert load_error(text_config(tmp_path / "t", test_split=0.5)) == (
        f"dataset.path: no file in class folder 'neg' in '{tmp_path / 't'}' is UTF-8 text "
        "(convert the files to UTF-8, e.g. iconv -f latin1 -t utf-8)")


def run_folder(output: str) -> Path:
    return Path(re.search(r"^run folder: (.+)$", output, re.M).group(1))


def test_imdb_text_config_trains_on_a_tiny_acl_imdb(reviews: Path, tmp_path: Path):
    """The shipped config, pointed at a miniature aclImdb: one epoch, then evaluate on the saved model."""
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(CONFIGS / "imdb_text.yaml"), "--output-dir", str(tmp_path / "out"),
                                 "--no-progress", "--set", f"dataset.path={reviews / 'train'}",
                                 "--set", f"dataset.test.path={reviews / 'test'}", "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    run = run_folder(result.stdout)
    described = json.loads((run / "dataset.json").read_text())
    assert described["class_names"] == ["neg", "pos"] and described["input_shape"] == [200]
    assert described["sizes"] == {"train": 48, "validation": 12, "test": 20}
    evaluated = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    saved = json.loads((run / "metrics.json").read_text())["test"]
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(saved["accuracy"], abs=1e-6)


TEXT_CONFIG = """\
name: reviews
seed: 1
dataset:
  path: {train}
  class_names: [neg, pos]
  test: {{path: {test}}}
  validation_split: 0.0
  output_mode: multi_hot
  max_tokens: 64
model:
  layers:
    - Dense: {{units: 2, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: {{Adam: {{learning_rate: 0.05}}}}
metrics: [accuracy]
training: {{epochs: 8, batch_size: 8}}
"""


def test_a_model_learns_words_and_its_saved_model_takes_raw_text(reviews: Path, tmp_path: Path, write_config):
    import keras

    (reviews / "train" / "pos" / "latin.txt").write_bytes("tr\xe8s bien".encode("latin-1"))
    config = write_config(TEXT_CONFIG.format(train=reviews / "train", test=reviews / "test"))
    result = CliRunner().invoke(app, ["train", str(config), "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output
    run = run_folder(result.stdout)
    described = json.loads((run / "dataset.json").read_text())
    assert described["notes"] == ["skipped 1 file that is not UTF-8 text: pos/latin.txt"]
    assert "note: skipped 1 file that is not UTF-8 text: pos/latin.txt" in result.stderr
    assert json.loads((run / "metrics.json").read_text())["test"]["accuracy"] == 1.0  # one class word per review
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    texts = np.array(["a superb and lovely film", "dull, boring, awful"], dtype=object)
    assert model.predict(texts, verbose=0).argmax(axis=1).tolist() == [1, 0]
    # `dltrain predict` takes .txt files, one text each.
    (tmp_path / "good.txt").write_text("a superb and lovely film")
    (tmp_path / "bad.txt").write_text("dull, boring, awful")
    predicted = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "good.txt"), str(tmp_path / "bad.txt"),
                                         "--out", str(tmp_path / "p.csv")])
    assert predicted.exit_code == 0, predicted.output
    rows = (tmp_path / "p.csv").read_text().strip().splitlines()
    assert [row.split(",")[:2] for row in rows[1:]] == [["good.txt", "pos"], ["bad.txt", "neg"]]


def test_cache_file_is_named_after_the_texts_not_their_addresses(tmp_path: Path):
    def split(words: list[str]) -> data.Split:
        x = np.empty(len(words), dtype=object)
        x[:] = ["".join(word) for word in words]  # new str objects at new addresses each time
        return data.Split(x, np.zeros(len(words), dtype=np.int64))

    first, again, other = split(["good", "film"]), split(["good", "film"]), split(["good", "fill"])
    name = data.cache_file(str(tmp_path / "c-"), "train", first, 8)
    assert data.cache_file(str(tmp_path / "c-"), "train", again, 8) == name
    assert data.cache_file(str(tmp_path / "c-"), "train", other, 8) != name
