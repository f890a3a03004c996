"""Exports of models with preprocessing inside: a CSV run (Normalization, StringLookup) exports to ONNX and TFLite
taking raw rows; a text run with an LSTM is refused by name, per format, and no file is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import cli as invoke, train_text as train

TEXT = """\
name: words
seed: 5
dataset: {{path: {path}, format: text, max_tokens: 30, output_sequence_length: 6, test_split: 0.25}}
model:
  layers:
    - Embedding: {{input_dim: 30, output_dim: 4}}
    - LSTM: {{units: 4}}
    - Dense: {{units: 2, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: adam
metrics: [accuracy]
training: {{epochs: 1, batch_size: 8}}
"""
TABLE = """\
name: table
seed: 6
dataset: {{path: {path}, label: kind, test_split: 0.25}}
model:
  layers:
    - Dense: {{units: 8, activation: relu}}
    - Dense: {{units: 2, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: {{Adam: {{learning_rate: 0.05}}}}
metrics: [accuracy]
training: {{epochs: 10, batch_size: 16}}   # 3 steps an epoch: near-ties would make int8 flip classes
"""


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TextVectorization (saved in the model: raw strings in), then an LSTM."""
    root = tmp_path_factory.mktemp("text")
    for label, words in [("good", "fine great nice"), ("bad", "awful poor sad")]:
        (root / "texts" / label).mkdir(parents=True)
        for i in range(16):
            (root / "texts" / label / f"{i}.txt").write_text(f"{words} {words.split()[i % 3]} day {i}")
    return train(root, TEXT.format(path=root / "texts"))


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV with a numeric and a text column: Normalization and a one-hot StringLookup inside the model."""
    root = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    lines = ["size,soil,kind"]
    for i in range(80):
        kind = i % 2
        lines.append(f"{rng.normal(3 * kind, 1):.3f},{['clay', 'sand', 'loam'][(i + kind) % 3]},{['oak', 'elm'][kind]}")
    (root / "trees.csv").write_text("\n".join(lines) + "\n")
    return train(root, TABLE.format(path=root / "trees.csv"))


@pytest.mark.parametrize("fmt, message", [
    ("tflite", "tflite cannot run layers 'text_vectorization' (TextVectorization: RaggedTensorToTensor, "
               "StaticRegexReplace, StringLower, StringSplitV2) and 'lstm' (LSTM: TensorListReserve, TensorListSetItem, "
               "TensorListStack): these TensorFlow ops have no TFLite built-in kernel; they are Select-TF (Flex) ops, "
               "which neither ai-edge-litert nor tf.lite.Interpreter runs (export this model with --format savedmodel, "
               "or with --format onnx where its ops convert)"),
    # tf2onnx converts the LSTM (to ONNX's LSTM op); the text layer's string ops have no ONNX form
    ("onnx", "onnx cannot run layer 'text_vectorization' (TextVectorization: StaticRegexReplace, StringSplitV2): "
             "tf2onnx has no ONNX form of these TensorFlow ops, so onnxruntime cannot load the file (export this "
             "model with --format savedmodel)"),
])
def test_unsupported_layers_are_named_and_no_file_is_written(text_run, fmt, message):
    result = invoke("save", text_run, "--format", fmt)
    assert (result.exit_code, result.stderr.strip()) == (1, f"error: {message}")
    assert not (text_run / "export" / f"model.{fmt}").exists()


@pytest.mark.parametrize("fmt, quantize", [("onnx", None), ("tflite", None), ("tflite", "int8")])
def test_table_model_exports_with_its_preprocessing(table_run, fmt, quantize):
    result = invoke("save", table_run, "--format", fmt, *(["--quantize", quantize] if quantize else []))
    assert result.exit_code == 0, result.output
    name = f"model{'.' + quantize if quantize else ''}.{fmt}"
    report = json.loads((table_run / "export" / f"{name}.report.json").read_text())
    assert report["passed"] and report["samples"] == 20
    if quantize is None:
        assert report["max_abs_diff"] <= 1e-4 and report["top1_agreement"] == 1.0
    from dltrain.export import load_export
    from dltrain.model.saved import load_run_model

    runtime = load_export(table_run / "export" / name, load_run_model(table_run))
    # raw rows in: one input per column, the text column as strings
    if fmt == "onnx":
        assert {i.name: i.type for i in runtime.session.get_inputs()} == {"size": "tensor(float)",
                                                                          "soil": "tensor(string)"}
    else:
        assert {n: d["dtype"].__name__ for n, d in runtime.inputs.items()} == {
            "size": "int8" if quantize else "float32", "soil": "bytes_"}


def test_predict_with_an_onnx_export_takes_csv_rows(table_run, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("size,soil\n-0.5,clay\n3.2,sand\n")
    path = table_run / "export" / "model.onnx"
    if not path.exists():
        assert invoke("save", table_run, "--format", "onnx").exit_code == 0
    result = invoke("predict", table_run, rows, "--model", path, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "input,predicted,probability,elm,oak,keras_predicted,max_abs_diff"
    for line in lines[1:]:
        cells = line.split(",")
        assert cells[1] == cells[5] and float(cells[6]) < 1e-5
