"""`dltrain save` to every format, each export checked against the Keras model in its own runtime, and the
JSON report read back; `dltrain predict --model` on the exports; a tampered export fails the check."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import cli as invoke, train_text as train

MLP = """\
name: mlp
seed: 3
dataset: {name: synthetic, input_shape: [8], num_classes: 3, train_size: 240, test_size: 60, validation_split: 0.25}
model:                  # two heads, the first named after the second in ABC order: tf2onnx sorts outputs by name
  inputs: {x: [8]}
  layers:
    - Dense: {name: hidden, units: 16, activation: relu}
    - Dropout: {rate: 0.1}
    - Dense: {name: label, units: 3, activation: softmax}
    - Dense: {name: aux, units: 3, activation: softmax, inputs: [hidden]}
  outputs: [label, aux]
loss: sparse_categorical_crossentropy
optimizer: {Adam: {learning_rate: 0.01}}
metrics: [accuracy]
training: {epochs: 1, batch_size: 32}
"""
CNN = """\
name: cnn
seed: 4
dataset: {name: synthetic, input_shape: [8, 8, 1], num_classes: 3, train_size: 240, test_size: 60}
model:
  layers:
    - Conv2D: {filters: 4, kernel_size: 3, padding: same, use_bias: false}
    - BatchNormalization
    - ReLU
    - MaxPooling2D: {pool_size: 2}
    - Flatten
    - Dense: {units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
optimizer: adam
metrics: [accuracy]
training: {epochs: 1, batch_size: 32}
"""
EXPORTS = [("keras", None), ("weights", None), ("savedmodel", None), ("tflite", None), ("tflite", "dynamic"),
           ("tflite", "int8"), ("onnx", None)]
NAMES = {("keras", None): "model.keras", ("weights", None): "model.weights.h5", ("savedmodel", None): "savedmodel",
         ("tflite", None): "model.tflite", ("tflite", "dynamic"): "model.dynamic.tflite",
         ("tflite", "int8"): "model.int8.tflite", ("onnx", None): "model.onnx"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny MLP and CNN, each trained once (one epoch) for every test here."""
    return {"mlp": train(tmp_path_factory.mktemp("mlp"), MLP), "cnn": train(tmp_path_factory.mktemp("cnn"), CNN)}


@pytest.fixture(scope="module")
def exported(runs: dict[str, Path]):
    """Export (run, format, quantize) once, into the run's export/ folder; the CLI result is kept."""
    done: dict[tuple, tuple] = {}

    def export(name: str, fmt: str, quantize: str | None = None):
        key = (name, fmt, quantize)
        if key not in done:
            args = ["save", runs[name], "--format", fmt] + (["--quantize", quantize] if quantize else [])
            done[key] = (invoke(*args), runs[name] / "export" / NAMES[(fmt, quantize)])
        return done[key]
    return export


def keras_outputs(run: Path, x: np.ndarray) -> np.ndarray:
    """The Keras model's (first) output."""
    from dltrain.model.saved import load_run_model

    outputs = load_run_model(run).predict(x, verbose=0)
    return outputs[0] if isinstance(outputs, list) else outputs


def split_examples(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """The test examples the check draws (the run's seed picks them), as the test recomputes them."""
    from dltrain import data
    from dltrain.load import load_config

    loaded = load_config(run / "config.yaml")
    splits = data.load(loaded.config.dataset, loaded.config.seed)
    return splits.test.x.astype(np.float32), splits.test.y


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("fmt, quantize", EXPORTS)
def test_every_format_is_checked_and_reported(exported, runs, name, fmt, quantize):
    result, path = exported(name, fmt, quantize)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    report_file = path.with_name(path.name + ".report.json")
    assert lines[-2:] == [f"report: {report_file}", f"saved {fmt}{' ' + quantize if quantize else ''}: {path}"]
    assert lines[-3].startswith("check passed: ") and lines[-3].endswith(" on 60 test examples")
    report = json.loads(report_file.read_text())
    assert (report["format"], report["quantize"], report["file"]) == (fmt, quantize, str(path))
    assert report["passed"] is True and report["failures"] == [] and report["samples"] == 60
    precision = quantize or "float"
    limit = {"float": 1.0, "dynamic": 0.99, "int8": 0.95}[precision]
    assert report["thresholds"]["top1_agreement"] == limit and report["top1_agreement"] >= limit
    if precision == "float":
        assert report["thresholds"]["max_abs_diff"] == 1e-4 and report["max_abs_diff"] <= 1e-4
    else:
        training_examples = {"mlp": 180, "cnn": 200}[name]  # 0.75 of 240 for the MLP; at most 200 (CALIBRATION)
        assert report["calibration"] == ({"split": "train", "samples": training_examples} if quantize == "int8" else None)
    assert 0 <= report["mean_abs_diff"] <= report["max_abs_diff"]
    assert set(report["accuracy"]) == {"keras", "export"}
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    assert report["size_bytes"] == {"export": size, "keras": (runs[name] / "model.keras").stat().st_size}
    for side in ("keras", "export"):
        timing = report["latency_ms"][side]
        assert 0 < timing["p50"] <= timing["p95"] and timing["runs"] >= 10
    assert {"tensorflow", "keras", "numpy", "dltrain"} <= set(report["versions"])
    if fmt == "onnx":
        assert report["opset"] == 17 and report["op_set"] == "ai.onnx opset 17" and "MatMul" in report["ops"]
        assert {"tf2onnx", "onnx", "onnxruntime"} <= set(report["versions"])
        assert report["runtime"].startswith("onnxruntime ")
    if fmt == "tflite":
        assert report["op_set"] == ("TFLITE_BUILTINS_INT8" if quantize == "int8" else "TFLITE_BUILTINS")
        assert "FULLY_CONNECTED" in report["ops"] and report["runtime"].startswith("ai-edge-litert ")
        if name == "cnn":
            assert "CONV_2D" in report["ops"]
    if fmt == "savedmodel":
        assert report["runtime"].endswith("(tf.saved_model.load)")


def test_int8_file_takes_int8_and_is_smaller(exported, runs):
    """Full-integer int8: the file's own input and output are int8; the CNN's weights shrink."""
    from dltrain.export.tflite import TFLiteRuntime

    _, path = exported("cnn", "tflite", "int8")
    _, floats = exported("cnn", "tflite")
    runtime = TFLiteRuntime(path, ["input"])
    assert list(runtime.facts["input_types"].values()) == ["int8"]
    assert [np.dtype(d["dtype"]).name for d in runtime.outputs.values()] == ["int8"]
    assert path.stat().st_size < floats.stat().st_size


def test_reported_figures_match_the_runtime_run_by_hand(exported, runs):
    """The report's max difference is what onnxruntime and the TFLite interpreter give, run here directly."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    run = runs["cnn"]
    x, _ = split_examples(run)
    want = keras_outputs(run, x)
    _, onnx_path = exported("cnn", "onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    report = json.loads(onnx_path.with_name("model.onnx.report.json").read_text())
    assert report["max_abs_diff"] == pytest.approx(float(np.abs(got - want).max()), rel=1e-3, abs=1e-9)
    _, tflite_path = exported("cnn", "tflite")
    interpreter = Interpreter(model_path=str(tflite_path))
    signature = interpreter.get_signature_runner()
    (name,) = signature.get_input_details()
    got = signature(**{name: x})["output_0"]
    report = json.loads(tflite_path.with_name("model.tflite.report.json").read_text())
    assert report["max_abs_diff"] == pytest.approx(float(np.abs(got - want).max()), rel=1e-3, abs=1e-9)


def test_tampered_export_fails_the_check_and_is_kept(runs, tmp_path, monkeypatch):
    """An ONNX file whose last layer's weights were changed after conversion: exit 1, figures, file kept."""
    from onnx import numpy_helper

    from dltrain.export import onnx_format

    real = onnx_format.convert

    def tampered(model):
        proto = real(model)
        largest = max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
        weights = numpy_helper.to_array(largest)
        flipped = weights[..., ::-1].copy() if weights.ndim == 2 else -weights
        largest.CopyFrom(numpy_helper.from_array(flipped, largest.name))
        return proto

    monkeypatch.setattr(onnx_format, "convert", tampered)
    out = tmp_path / "tampered.onnx"
    result = invoke("save", runs["mlp"], "--format", "onnx", "--out", out)
    assert result.exit_code == 1
    report_file = tmp_path / "tampered.onnx.report.json"
    report = json.loads(report_file.read_text())
    assert report["passed"] is False and report["max_abs_diff"] > 1e-4
    assert out.is_file()
    failures = "; ".join(report["failures"])
    assert failures.startswith(f"max |diff| {report['max_abs_diff']:.3g} > 0.0001")
    assert result.stderr.strip() == (
        f"error: the onnx export differs from the Keras model: {failures} on 60 test examples; kept {out} "
        f"(figures in {report_file}) (the converter changed what the model computes; try --format savedmodel)")
    assert "check FAILED: max |diff| " in result.stdout


def test_predict_runs_onnx_and_tflite_exports(exported, runs, tmp_path):
    run = runs["mlp"]
    x, _ = split_examples(run)
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=x[:5])
    want = keras_outputs(run, x[:5])
    for fmt, quantize in [("onnx", None), ("tflite", None), ("tflite", "int8")]:
        _, path = exported("mlp", fmt, quantize)
        result = invoke("predict", run, inputs, "--model", path, "--out", tmp_path / "p.csv")
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
        classes = ["class_0", "class_1", "class_2"]
        assert list(rows[0]) == ["input", "predicted", "probability", *classes, "keras_predicted", "max_abs_diff"]
        got = np.array([[float(r[c]) for c in classes] for r in rows])
        assert [r["keras_predicted"] for r in rows] == [classes[i] for i in want.argmax(axis=1)]
        tolerance = 1e-5 if quantize is None else 0.1
        np.testing.assert_allclose(got, want, atol=tolerance)
        table = invoke("predict", run, inputs, "--model", path, "--top-k", "1")
        assert table.exit_code == 0, table.output
        assert re.search(r"input\s+┃ prediction\s+┃ keras model\s+┃ max \|diff\|", table.stdout)


def test_tflite_falls_back_to_tensorflows_interpreter(exported, monkeypatch):
    """Without ai-edge-litert, tf.lite.Interpreter runs the file, with the same answers."""
    from dltrain.export.tflite import TFLiteRuntime

    _, path = exported("mlp", "tflite")
    x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    litert = TFLiteRuntime(path, ["input"])
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    fallback = TFLiteRuntime(path, ["input"])
    assert fallback.facts["runtime"].endswith("(tf.lite.Interpreter)")
    np.testing.assert_array_equal(fallback([x])[0], litert([x])[0])


def test_best_exports_best_keras(runs, tmp_path):
    result = invoke("save", runs["mlp"], "--format", "keras", "--best")
    assert result.exit_code == 0, result.output
    path = runs["mlp"] / "export" / "best.keras"
    report = json.loads(path.with_name("best.keras.report.json").read_text())
    assert report["source"] == str(runs["mlp"] / "best.keras") and report["passed"]


def test_option_mistakes(runs, monkeypatch):
    run = runs["mlp"]
    cases = [
        (["--format", "onxx"], "error: unknown format 'onxx' (did you mean 'onnx'?)"),
        (["--format", "tflite", "--quantize", "int4"], "error: unknown quantization 'int4' (did you mean 'int8'?)"),
        (["--format", "onnx", "--quantize", "int8"], "error: --quantize applies to --format tflite, not onnx"),
        (["--format", "tflite", "--out", "m.lite"], "error: tflite files must end in .tflite, got 'm.lite' "
                                                    "(for example --out model.tflite)"),
        (["--format", "keras", "--out", run / "model.keras"], f"error: '{run / 'model.keras'}' already exists "
                                                              "(choose another --out or pass --overwrite)"),
    ]
    for args, message in cases:
        result = invoke("save", run, *args)
        assert (result.exit_code, result.stderr.strip()) == (1, message)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    result = invoke("save", run, "--format", "onnx")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: --format onnx needs tf2onnx, onnx, onnxruntime; tf2onnx is not "
                                     "installed (pip install 'dltrain[onnx]')")
