"""CSV and parquet tables: small files written in tmp_path, every bad-input message exactly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dltrain import data
from dltrain.config import DatasetConfig
from dltrain.data import tabular
from dltrain.errors import DataError

# 12 rows: two numeric columns (one with a name Keras cannot take), a text column with an empty cell, string labels.
PLANTS = """\
height,leaf width (cm),colour,species
1.0,0.5,green,fern
2.0,0.7,green,fern
3.5,1.5,red,rose
4.0,1.6,red,rose
1.5,0.4,,fern
5.0,2.5,yellow,tulip
5.5,2.0,yellow,tulip
3.0,1.4,red,rose
1.2,0.6,green,fern
6.0,2.2,yellow,tulip
3.8,1.7,red,rose
5.8,2.4,yellow,tulip
"""


def write(tmp_path: Path, text: str, name: str = "table.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config(path: Path, **keys) -> DatasetConfig:
    return DatasetConfig(path=str(path), **{"label": "species", **keys})


def error_of(cfg: DatasetConfig) -> str:
    with pytest.raises(DataError) as info:
        data.load(cfg, 0)
    return str(info.value)


def test_classification_csv_columns_types_and_classes(tmp_path: Path):
    path = write(tmp_path, PLANTS)
    info = data.describe(config(path))
    assert info.class_names == ["fern", "rose", "tulip"] and info.num_classes == 3
    assert info.features == ["height", "leaf_width__cm_", "colour"]
    # 2 numbers + colour's 4 values ("" green red yellow) + its out-of-vocabulary slot
    assert info.input_shape == (7,)
    splits = data.load(config(path, validation_split=0.25, test_split=0.25), seed=3)
    assert splits.info.sizes == {"train": 7, "validation": 2, "test": 3}
    train = splits.train
    assert train.x["height"].dtype == np.float32 and train.x["height"].shape == (7, 1)
    assert train.x["colour"].dtype.kind == "U" and train.x["colour"].shape == (7, 1)
    assert train.y.dtype == np.int64
    # every row keeps its own label: the species follows from the height in this table
    species = {1.0: 0, 2.0: 0, 3.5: 1, 4.0: 1, 1.5: 0, 5.0: 2, 5.5: 2, 3.0: 1, 1.2: 0, 6.0: 2, 3.8: 1, 5.8: 2}
    for split in (splits.train, splits.val, splits.test):
        assert [species[round(h, 1)] for h in split.x["height"][:, 0].tolist()] == split.y.tolist()


def test_empty_text_cell_is_a_category_of_its_own(tmp_path: Path):
    split = data.load(config(write(tmp_path, PLANTS), validation_split=0.0, test_split=0.5), 0)
    colours = np.concatenate([split.train.x["colour"], split.test.x["colour"]])[:, 0]
    assert sorted(set(colours.tolist())) == ["", "green", "red", "yellow"]


def test_integer_labels_keep_values_other_integers_become_indices(tmp_path: Path):
    keep = write(tmp_path, "x,y\n0.1,2\n0.2,0\n0.3,1\n0.4,2\n", "keep.csv")
    source = tabular.read(DatasetConfig(path=str(keep), label="y"), 0)
    assert source.train.y.tolist() == [2, 0, 1, 2] and source.info.class_names == ["0", "1", "2"]
    sparse = write(tmp_path, "x,y\n0.1,10\n0.2,-3\n0.3,7\n0.4,10\n", "sparse.csv")
    source = tabular.read(DatasetConfig(path=str(sparse), label="y"), 0)
    assert source.train.y.tolist() == [2, 0, 1, 2] and source.info.class_names == ["-3", "7", "10"]


def test_float_labels_are_regression_and_task_overrides(tmp_path: Path):
    path = write(tmp_path, "x,colour,y\n1,red,0.5\n2,blue,1.0\n3,red,2.25\n")
    source = tabular.read(DatasetConfig(path=str(path), label="y"), 0)
    assert source.info.task == "regression" and source.info.num_classes is None
    assert source.info.class_names is None and source.info.input_shape == (4,)
    assert source.train.y.dtype == np.float32 and source.train.y.tolist() == [0.5, 1.0, 2.25]
    forced = tabular.read(DatasetConfig(path=str(path), label="x", task="regression"), 0)
    assert forced.info.task == "regression" and forced.train.y.tolist() == [1.0, 2.0, 3.0]
    classes = tabular.read(DatasetConfig(path=str(path), label="y", task="classification"), 0)
    assert classes.info.class_names == ["0.5", "1", "2.25"] and classes.train.y.tolist() == [0, 1, 2]


def test_features_pick_columns(tmp_path: Path):
    path = write(tmp_path, PLANTS)
    info = data.describe(config(path, features=["colour"]))
    assert info.features == ["colour"] and info.input_shape == (5,)
    assert data.describe(config(path, features="height")).input_shape == (1,)


def test_many_integer_classes_get_a_note(tmp_path: Path):
    rows = "".join(f"{i},{i % 25}\n" for i in range(50))
    info = data.describe(DatasetConfig(path=str(write(tmp_path, "x,age\n" + rows)), label="age"))
    assert info.notes == ["the label column 'age' holds 25 distinct integers, trained as classes; set "
                          "task: regression if they are quantities"]


@pytest.mark.parametrize("text, keys, expected", [
    (PLANTS, {"label": "specie"},
     "dataset.label: {path} has no column 'specie'; its columns are: height, leaf width (cm), colour, species "
     "(did you mean 'species'?)"),
    (PLANTS, {"label": "mass"},
     "dataset.label: {path} has no column 'mass'; its columns are: height, leaf width (cm), colour, species "
     "(name one of its columns)"),
    (PLANTS, {"features": ["height", "color"]},
     "dataset.features: {path} has no column 'color'; its columns are: height, leaf width (cm), colour, "
     "species (did you mean 'colour'?)"),
    (PLANTS, {"features": ["height", "species"]},
     "dataset.features: 'species' is the label column; it cannot also be a feature (remove 'species' from "
     "features)"),
    (PLANTS, {"label": None},
     "dataset.label: which column of {path} holds the labels? its columns are: height, leaf width (cm), "
     "colour, species (add 'label: <column>' under 'dataset')"),
    ("1.0,2.0,3\n4.0,5.0,6\n", {"label": "y"},
     "dataset.label: {path} has no column 'y'; its columns are: 1.0, 2.0, 3 (name one of its columns)"),
    ("1.0,2.0,3\n4.0,5.0,6\n", {"label": None},
     "dataset.label: which column of {path} holds the labels? its columns are: 1.0, 2.0, 3 (the first line "
     "must be a header naming the columns; this one holds numbers)"),
    ("a,b,species\n1,2,x\n3,4\n5,6,y\n", {},
     "dataset.path: {path} line 3 has 2 cells, the header has 3 (every row needs one cell per column; quote "
     "cells that contain commas)"),
    ("", {},
     "dataset.path: {path} is empty (a CSV starts with a header row naming the columns, then one row per "
     "example)"),
    ("a,b,species\n\n", {},
     "dataset.path: {path} has a header but no rows (add one row per example under the header)"),
    ("a,species\n1,x\n,y\n", {},
     "dataset.path: {path} line 3: column 'a' is empty (fill in a number or remove the row; only a text column "
     "may have empty cells (they become a category of their own))"),
    ("a,species\n1,x\nnan,y\n", {},
     "dataset.path: {path} line 3: column 'a' holds 'nan', not a finite number (fill in a number or remove the "
     "row)"),
    ("a,species\n1,x\n2,\n", {},
     "dataset.label: {path} line 3: the label column 'species' is empty (every row needs a label; remove the "
     "unlabelled rows)"),
    ("a,species\n1,1.5\n2,n/a\n3,2\n", {"task": "regression"},
     "dataset.label: {path} line 3: the label 'n/a' in column 'species' is not a number (task: regression "
     "needs numeric labels; use task: classification for classes)"),
    ("a,species\n1,x\n2,x\n", {},
     "dataset.label: the label column 'species' holds one value ('x'); classification needs at least 2 "
     "classes (check the label column, or set task: regression)"),
    ("a,a,species\n1,2,x\n", {},
     "dataset.path: {path} names the column 'a' twice (give every column its own name in the header)"),
    ("a b,a-b,species\n1,2,x\n3,4,y\n", {},
     "dataset.features: the columns 'a b' and 'a-b' both become the input name 'a_b' (rename one of them "
     "(input names keep letters, digits and '_'))"),
    ("species\nx\ny\n", {},
     "dataset.features: {path} has no columns besides the label 'species' (a table needs at least one feature "
     "column)"),
], ids=["label-typo", "label-unknown", "feature-typo", "label-as-feature", "no-label", "no-header",
        "no-header-no-label", "ragged", "empty-file", "header-only", "empty-number", "nan", "empty-label",
        "regression-text-label", "one-class", "duplicate-column", "name-collision", "no-features"])
def test_bad_tables_are_exact_errors(tmp_path: Path, text: str, keys: dict, expected: str):
    path = write(tmp_path, text)
    assert error_of(config(path, **keys)) == expected.format(path=path)


def test_undecodable_csv_is_an_error(tmp_path: Path):
    path = tmp_path / "table.csv"
    path.write_bytes(b"a,species\n1,caf\xe9\n")
    assert error_of(config(path)) == (f"dataset.path: {path} is not UTF-8 text (invalid continuation "
                                      "byte) (save the file as UTF-8)")


def write_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({
        "height": pa.array([1.0, 2.0, 3.5, 4.0, 5.0, 5.5], pa.float32()),
        "leaves": pa.array([3, 4, 8, 9, 12, 14], pa.int16()),
        "colour": pa.array(["green", None, "red", "red", "yellow", "yellow"]).dictionary_encode(),
        "species": pa.array(["fern", "fern", "rose", "rose", "tulip", "tulip"]),
    }), path)


def test_parquet_columns_types_and_nulls(tmp_path: Path):
    path = tmp_path / "plants.parquet"
    write_parquet(path)
    cfg = config(path)
    assert cfg.kind == "parquet"
    source = tabular.read(cfg, 0)
    assert source.info.features == ["height", "leaves", "colour"] and source.info.input_shape == (7,)
    assert source.info.class_names == ["fern", "rose", "tulip"] and source.train.y.tolist() == [0, 0, 1, 1, 2, 2]
    assert source.train.x["leaves"][:, 0].tolist() == [3, 4, 8, 9, 12, 14]
    assert source.train.x["colour"][:, 0].tolist() == ["green", "", "red", "red", "yellow", "yellow"]
    leaves = tabular.read(DatasetConfig(path=str(path), label="leaves"), 0)
    assert leaves.info.task == "classification" and leaves.info.class_names == ["3", "4", "8", "9", "12", "14"]
    height = tabular.read(DatasetConfig(path=str(path), label="height"), 0)
    assert height.info.task == "regression"


def test_parquet_null_number_is_an_error(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, None], "species": ["x", "y"]}), path)
    assert error_of(config(path)) == (f"dataset.path: {path} row 2: column 'a' holds an empty cell, not a "
                                      "finite number (fill in a number or remove the row)")


def test_parquet_without_pyarrow_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "plants.parquet"
    write_parquet(path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert error_of(config(path)) == ("dataset.format: reading parquet files needs pyarrow, which is not "
                                      "installed (pip install 'dltrain[parquet]' (or: pip install pyarrow))")


def test_preprocessing_adapts_on_training_rows_and_reloads_from_raw_rows(tmp_path: Path):
    import keras
    import tensorflow as tf

    splits = data.load(config(write(tmp_path, PLANTS), validation_split=0.25, test_split=0.25), seed=0)
    inputs, features = splits.preprocessing(splits.train)
    assert sorted(inputs) == ["colour", "height", "leaf_width__cm_"]
    assert tuple(features.shape[1:]) == splits.info.input_shape
    normalization = keras.Model(inputs, features).get_layer("tabular_normalization")
    numbers = np.concatenate([splits.train.x["height"], splits.train.x["leaf_width__cm_"]], axis=1)
    assert np.allclose(np.asarray(normalization.mean)[0], numbers.mean(axis=0), atol=1e-6)
    assert np.allclose(np.asarray(normalization.variance)[0], numbers.var(axis=0), atol=1e-5)
    everything = np.concatenate([np.concatenate([s.x["height"], s.x["leaf_width__cm_"]], axis=1)
                                 for s in (splits.train, splits.val, splits.test)])
    assert not np.allclose(numbers.mean(axis=0), everything.mean(axis=0), atol=1e-3)

    keras.utils.set_random_seed(0)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(features))
    rows = {"height": np.array([[1.0], [3.5]], np.float32), "leaf_width__cm_": np.array([[0.5], [1.5]], np.float32),
            "colour": np.array([["green"], ["purple"]])}  # purple: never seen, the out-of-vocabulary slot
    encoded = keras.Model(inputs, features)({k: tf.constant(v) for k, v in rows.items()}).numpy()
    expected_numbers = (np.array([[1.0, 0.5], [3.5, 1.5]]) - numbers.mean(axis=0)) / numbers.std(axis=0)
    assert np.allclose(encoded[:, :2], expected_numbers, atol=1e-4)
    # StringLookup's one-hot: the OOV slot first, then "", green, red, yellow
    assert encoded[:, 2:].tolist() == [[0, 0, 1, 0, 0], [1, 0, 0, 0, 0]]
    before = model.predict({k: tf.constant(v) for k, v in rows.items()}, verbose=0)
    keras.saving.save_model(model, tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert np.array_equal(reloaded.predict({k: tf.constant(v) for k, v in rows.items()}, verbose=0), before)


# --- end to end through the CLI ---------------------------------------------------------------------------

REGRESSION = """\
name: prices
seed: 3
dataset:
  path: {path}
  label: price
  test_split: 0.25
model:
  layers:
    - Dense: {{units: 8, activation: relu}}
    - Dense: {{units: 1}}
loss: mean_squared_error
optimizer: adam
metrics: [mean_absolute_error]
training:
  epochs: 1
  batch_size: 8
"""


def invoke(*args):
    from typer.testing import CliRunner

    from dltrain.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def train(*args) -> Path:
    import re

    result = invoke("train", *args, "--no-progress")
    assert result.exit_code == 0, result.output
    return Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))


def assert_evaluate_matches(run: Path) -> dict:
    import json

    result = invoke("evaluate", run, "--json")
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "metrics.json").read_text())["test"]
    scored = json.loads(result.stdout)
    assert scored.keys() == saved.keys()
    for name, value in saved.items():
        assert scored[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    return saved


def test_shipped_iris_config_trains_evaluates_and_predicts_raw_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import json

    import keras
    import tensorflow as tf

    from conftest import ROOT

    monkeypatch.chdir(ROOT)  # the config's path is relative to the repository root
    run = train(ROOT / "configs" / "csv_tabular.yaml", "--set", "training.epochs=1", "--output-dir", tmp_path)
    info = json.loads((run / "dataset.json").read_text())
    assert info["features"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert info["class_names"] == ["setosa", "versicolor", "virginica"]
    assert info["sizes"] == {"train": 96, "validation": 24, "test": 30}
    assert_evaluate_matches(run)
    # columns in another order, the label and an extra column: read by header, the rest ignored
    rows = tmp_path / "rows.csv"
    rows.write_text("note,petal_width,species,sepal_length,petal_length,sepal_width\n"
                    "a,0.2,setosa,5.1,1.4,3.5\nb,1.8,virginica,6.3,5.5,2.9\n")
    result = invoke("predict", run, rows, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    written = list(__import__("csv").DictReader((tmp_path / "p.csv").open()))
    assert [r["input"] for r in written] == ["rows.csv:2", "rows.csv:3"]
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    x = {"sepal_length": [[5.1], [6.3]], "sepal_width": [[3.5], [2.9]], "petal_length": [[1.4], [5.5]],
         "petal_width": [[0.2], [1.8]]}
    expected = model.predict({k: tf.constant(v, tf.float32) for k, v in x.items()}, verbose=0)
    got = np.array([[float(r[name]) for name in info["class_names"]] for r in written])
    assert np.allclose(got, expected, atol=1e-5)
    missing = tmp_path / "missing.csv"
    missing.write_text("sepal_length,sepal_width,petal_lenght,petal_width\n5.1,3.5,1.4,0.2\n")
    result = invoke("predict", run, missing)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {missing} has no column for the model's input 'petal_length'; its columns are: sepal_length, "
        "sepal_width, petal_lenght, petal_width (did you mean 'petal_lenght'?)")


def test_shipped_config_on_another_csv_with_text_columns(tmp_path: Path):
    from conftest import ROOT

    path = write(tmp_path, PLANTS * 4, "plants.csv")
    lines = PLANTS.splitlines()
    path.write_text("\n".join(lines + lines[1:] * 3) + "\n")
    run = train(ROOT / "configs" / "csv_tabular.yaml", "--set", f"dataset.path={path}", "--set",
                "training.epochs=1", "--output-dir", tmp_path / "out")
    assert_evaluate_matches(run)
    rows = write(tmp_path, "height,leaf width (cm),colour\n3.5,1.5,red\n2.0,0.7,purple\n", "rows.csv")
    result = invoke("predict", run, rows)
    assert result.exit_code == 0, result.output
    assert "rows.csv:2" in result.stdout and "rows.csv:3" in result.stdout


def test_regression_csv_trains_evaluates_and_predicts(tmp_path: Path, write_config):
    rng = np.random.default_rng(0)
    size = rng.uniform(20, 200, 80)
    town = rng.choice(["north", "south"], 80)
    price = 3 * size + np.where(town == "north", 100, 0) + rng.normal(0, 5, 80)
    path = tmp_path / "prices.csv"
    path.write_text("size,town,price\n" + "".join(f"{s:.1f},{t},{p:.2f}\n" for s, t, p in zip(size, town, price)))
    run = train(write_config(REGRESSION.format(path=path)), "--output-dir", tmp_path / "out")
    saved = assert_evaluate_matches(run)
    assert set(saved) == {"loss", "mean_absolute_error"}
    result = invoke("predict", run, path)
    assert result.exit_code == 0, result.output
    assert "output_0" in result.stdout and "prices.csv:81" in result.stdout
