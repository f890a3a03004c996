"""Multi-label tables: a tags column or 0/1 columns become multi-hot labels, `text:` columns are free text;
the shipped multi-label text classifier trained, evaluated and asked for tags on texts the tests write."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, cli
from dltrain import data
from dltrain.config import DatasetConfig
from dltrain.errors import DataError
from dltrain.runs import per_class

# Each tag follows from words in the text: two of its words per tag, among filler words.
TAGS = {"cs.CL": ["language", "translation", "grammar"], "cs.CV": ["image", "pixel", "camera"],
        "cs.LG": ["learning", "gradient", "network"], "stat.ML": ["bayesian", "posterior", "variance"]}
FILLER = "we study the a of results method approach show paper propose new model data".split()
SMALL = ["--set", "dataset.max_tokens=500", "--set", "model.layers[0].Dense.units=32", "--set",
         "model.layers[2].Dense.units=16", "--set", "model.layers[1].Dropout.rate=0.1", "--set",
         "model.layers[3].Dropout.rate=0.1", "--set", "optimizer.Adam.learning_rate=0.01", "--set",
         "training.epochs=2", "--set", "training.batch_size=16", "--set", "training.callbacks=[]"]


def papers(path: Path, rows: int = 500, seed: int = 0) -> Path:
    """An arXiv-like CSV: titles, summaries whose words give the terms, and the terms joined by '|'."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["titles", "summaries", "terms"])
        for i in range(rows):
            tags = sorted(rng.choice(list(TAGS), size=rng.integers(1, 3), replace=False))
            words = [*rng.choice(FILLER, size=8), *(rng.choice(TAGS[tag]) for tag in tags for _ in range(2))]
            rng.shuffle(words)
            writer.writerow([f"paper {i}", " ".join(words), "|".join(tags)])
    return path


def write(tmp_path: Path, text: str, name: str = "tags.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tags_become_multi_hot_rows_with_sorted_classes(tmp_path: Path):
    path = write(tmp_path, 'text,terms,year\n"deep nets",cs.LG|stat.ML,2020\n"images",cs.CV,2021\n'
                           '"nets, images", cs.LG | cs.CV ,2022\n')
    config = DatasetConfig(path=str(path), label="terms", label_separator="|", text=["text"], validation_split=0.0,
                           test_split=0.34, output_mode="multi_hot", max_tokens=20)
    info = data.describe(config)
    assert info.class_names == ["cs.CV", "cs.LG", "stat.ML"] and info.num_classes == 3
    assert info.task == "multilabel" and info.features == ["text"]  # the text columns only, by default
    assert info.input_shape == (20,)  # multi_hot: max_tokens wide
    source = data.load(config, 0)
    split = data.Split({"text": np.concatenate([source.train.x["text"], source.test.x["text"]])},
                       np.concatenate([source.train.y, source.test.y]))
    rows = {text: y.tolist() for text, y in zip(split.x["text"], split.y)}
    assert rows == {"deep nets": [0, 1, 1], "images": [1, 0, 0], "nets, images": [1, 1, 0]}
    assert split.x["text"].dtype == object and split.x["text"].shape == (3,)  # one string per row
    assert source.train.y.dtype == np.float32


def test_label_columns_of_zeros_and_ones(tmp_path: Path):
    path = write(tmp_path, "text,cs.LG,cs.CV,n\nnets,1,0,5\nimages,0,1,6\nboth,1,1,7\nnone,0,0,8\n")
    config = DatasetConfig(path=str(path), label=["cs.LG", "cs.CV"], text="text", output_sequence_length=4,
                           features=["n"], validation_split=0.0, test_split=0.25)
    with pytest.raises(DataError) as error:
        data.describe(config)
    assert str(error.value) == ("dataset.text: the text column 'text' gives token ids (output_mode: int), which "
                                "cannot be joined with other columns (read one text column alone, or set "
                                "output_mode: multi_hot (or tf_idf) with max_tokens)")
    info = data.describe(config.model_copy(update={"features": None}))
    assert info.class_names == ["cs.LG", "cs.CV"] and info.input_shape == (4,) and info.features == ["text"]
    mixed = data.describe(config.model_copy(update={"output_mode": "tf_idf", "max_tokens": 10}))
    assert mixed.features == ["n", "text"] and mixed.input_shape == (11,)  # 1 number + 10 tf-idf values


@pytest.mark.parametrize("text, keys, expected", [
    ("t,terms\na,x|y\nb,\n", {"label": "terms", "label_separator": "|"},
     "dataset.label: {path} line 3: the tags column 'terms' is empty (every row needs at least one tag; remove "
     "the untagged rows)"),
    ("t,terms\na,x|y\nb,x||y\n", {"label": "terms", "label_separator": "|"},
     "dataset.label: {path} line 3: 'x||y' in column 'terms' has an empty tag (separate the tags with one '|', "
     "with none at either end)"),
    ("t,a,b\nx,1,0\ny,0,2\n", {"label": ["a", "b"]},
     "dataset.label: {path} line 3: the label column 'b' holds '2', not 0 or 1 (a list of label columns holds "
     "one 0/1 column per class)"),
    ("t,a,b\nx,1,0\n\ny,0,\n", {"label": ["a", "b"]},
     "dataset.label: {path} line 4: the label column 'b' holds an empty cell, not 0 or 1 (a list of label columns "
     "holds one 0/1 column per class)"),
    ("t,a,b\nx,1,0\ny,0\n", {"label": ["a", "b"]},
     "dataset.path: {path} line 3 has 2 cells, the header has 3 (every row needs one cell per column; quote "
     "cells that contain commas)"),
    ("t,cs.LG,b\nx,1,0\n", {"label": ["cs.LG", "cs.CV"]},
     "dataset.label: {path} has no column 'cs.CV'; its columns are: t, cs.LG, b (did you mean 'cs.LG'?)"),
])
def test_bad_labels_name_the_file_and_row(tmp_path: Path, text, keys, expected):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as error:
        data.describe(DatasetConfig(path=str(path), text=["t"], **keys))
    assert str(error.value) == expected.format(path=path)


def test_a_test_source_with_a_tag_the_training_data_lacks(tmp_path: Path):
    train = write(tmp_path, "t,terms\na,x\nb,y\nc,x|y\nd,y\n")
    test = write(tmp_path, "t,terms\ne,x\nf,z|x\n", "test.csv")
    config = DatasetConfig(path=str(train), label="terms", label_separator="|", text=["t"], test={"path": str(test)},
                           validation_split=0.0)
    with pytest.raises(DataError) as error:
        data.load(config, 0)
    assert str(error.value) == (f"dataset.test: {test} line 3: the tag 'z' is not one of the training tags (the "
                                "training data's tags are: x, y)")


@pytest.mark.parametrize("lines, expected", [
    ("  label: [a, b]\n  label_separator: '|'\n",
     "{cfg}:4:3: dataset.label_separator: label_separator splits one tags column; 'label' is a list of 0/1 columns "
     "(remove label_separator, or give label one column of tags)"),
    ("  label: a\n  max_tokens: 100\n",
     "{cfg}:4:3: dataset.max_tokens: 'max_tokens' is a setting of the text columns' TextVectorization; this table "
     "has none (name the free-text columns in 'text: [...]', or remove it)"),
    ("  label: a\n  text: [t]\n  output_mode: tf_idf\n",
     "{cfg}:5:3: dataset.output_mode: output_mode 'tf_idf' needs max_tokens (the length of each text's vector) "
     "(add e.g. 'max_tokens: 20000' under 'dataset')"),
])
def test_config_errors_point_at_their_line(tmp_path: Path, lines, expected):
    write(tmp_path, "t,a,b\nx,1,0\n")
    cfg = tmp_path / "tags.yaml"
    cfg.write_text(f"dataset:\n  path: {tmp_path / 'tags.csv'}\n{lines}"
                   "model:\n  layers: [{Dense: {units: 2, activation: sigmoid}}]\nloss: binary_crossentropy\n")
    result = cli("check", cfg)
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: " + expected.format(cfg=cfg)


def test_per_class_precision_recall_f1():
    truth = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], np.float32)
    probabilities = np.array([[0.9, 0.6], [0.2, 0.7], [0.8, 0.1], [0.1, 0.2]])
    rows = per_class(truth, probabilities, ["a", "b"])
    # a: predicted on rows 0 and 2, true on 0 and 1 -> P 1/2, R 1/2; b: predicted on 0 and 1, true on 1 and 2
    assert rows[0] == {"class": "a", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert rows[1] == {"class": "b", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert rows[2] == {"class": "micro avg", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 4}
    assert rows[3]["class"] == "macro avg" and rows[3]["f1"] == 0.5


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shipped multi-label text classifier, 2 epochs on 500 abstracts whose words give their terms."""
    import re

    root = tmp_path_factory.mktemp("papers")
    path = papers(root / "papers.csv")
    result = cli("train", CONFIGS / "multilabel_text.yaml", "--set", f"dataset.path={path}", *SMALL,
                 "--output-dir", root / "outputs", "--no-progress")
    assert result.exit_code == 0, result.output
    return {"root": root, "run": Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))}


def test_text_classifier_learns_the_tags_and_reports_each_class(trained: dict):
    run = trained["run"]
    described = json.loads((run / "dataset.json").read_text())
    assert described["task"] == "multilabel" and described["class_names"] == sorted(TAGS)
    lines = list(csv.DictReader((run / "per_class.csv").read_text().splitlines()))
    assert [line["class"] for line in lines] == [*sorted(TAGS), "micro avg", "macro avg"]
    test = json.loads((run / "metrics.json").read_text())["test"]
    micro = float(lines[-2]["f1"])
    # chance: a tag on in ~38% of the rows; predicting every tag gives F1 2p/(1+p) ~ 0.55
    print(f"multi-label text classifier: test micro F1 {micro:.3f}, macro F1 {float(lines[-1]['f1']):.3f}, "
          f"binary accuracy {test['binary_accuracy']:.3f}")
    assert micro > 0.8 and test["binary_accuracy"] > 0.85
    assert (run / "plots" / "per_class.png").stat().st_size > 10_000
    assert not (run / "plots" / "confusion_matrix.png").exists()
    evaluated = cli("evaluate", run)
    assert evaluated.exit_code == 0, evaluated.output
    assert f"{test['binary_accuracy']:.4f}" in evaluated.stdout


def test_predict_gives_every_tags_probability_and_the_tags_over_one_half(trained: dict, tmp_path: Path):
    rows = write(tmp_path, 'summaries,titles\n"a new image and pixel camera method",x\n'
                           '"bayesian posterior variance of language translation grammar",y\n', "new.csv")
    result = cli("predict", trained["run"], rows, "--out", tmp_path / "tags.csv")
    assert result.exit_code == 0, result.output
    lines = list(csv.reader((tmp_path / "tags.csv").read_text().splitlines()))
    assert lines[0] == ["input", "tags", *sorted(TAGS)]
    assert [line[:2] for line in lines[1:]] == [["new.csv:2", "cs.CV"], ["new.csv:3", "cs.CL|stat.ML"]]
    probabilities = np.array([[float(v) for v in line[2:]] for line in lines[1:]])
    assert ((probabilities > 0.5) == [[0, 1, 0, 0], [1, 0, 0, 1]]).all()
    shown = cli("predict", trained["run"], rows, "--top-k", "2")
    assert shown.exit_code == 0, shown.output
    assert "│ new.csv:3 │ cs.CL|stat.ML │" in shown.stdout
