"""`dltrain save`: write a run's model in one format, check it against the Keras model, and keep a JSON
report of the figures beside it."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltrain import runs
from dltrain.errors import DltrainError, RunError
from dltrain.export.parity import Figures, check
from dltrain.export.runtime import Runtime, version
from dltrain.export.samples import Samples, load_samples
from dltrain.export.unsupported import ExportError

FORMATS = ("keras", "savedmodel", "weights", "tflite", "onnx")
QUANTIZATIONS = ("dynamic", "int8")
# Test examples each export is checked on: agreement in steps of 1/300, enough to see a 1% drop.
SAMPLES = 300
# Training examples that set int8 ranges; TFLite's guide asks for a few hundred.
CALIBRATION = 200
_MISMATCH_HINTS = {None: "the converter changed what the model computes; try --format savedmodel",
                   "dynamic": "quantization costs more than the threshold allows: export without --quantize",
                   "int8": "quantization costs more than the threshold allows: try --quantize dynamic"}
_SUFFIXES = {"keras": ".keras", "weights": ".weights.h5", "tflite": ".tflite", "onnx": ".onnx"}


@dataclass
class ExportResult:
    """Where the export and its report were written, and what the check measured."""

    path: Path
    report_path: Path
    report: dict[str, Any]
    figures: Figures


class ExportMismatch(DltrainError):
    """An export that was written, but differs from the Keras model by more than its thresholds allow."""

    def __init__(self, message: str, *, result: ExportResult, hint: str | None = None) -> None:
        self.result = result
        super().__init__(message, hint=hint)


def default_name(fmt: str, quantize: str | None, stem: str) -> str:
    """`model.onnx`, `model.int8.tflite`, `savedmodel`, ... (`best.*` for best.keras)."""
    if fmt == "savedmodel":
        return "savedmodel" if stem == "model" else f"{stem}-savedmodel"
    return f"{stem}{'.' + quantize if quantize else ''}{_SUFFIXES[fmt]}"


def report_path(out: Path) -> Path:
    """The JSON report beside an export: `model.onnx` -> `model.onnx.report.json`."""
    return out.with_name(out.name + ".report.json")


def _check_format(fmt: str, quantize: str | None) -> None:
    from dltrain.config import did_you_mean

    if fmt not in FORMATS:
        raise ExportError(f"unknown format '{fmt}'", hint=did_you_mean(fmt, FORMATS) or f"use one of: {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization '{quantize}'",
                          hint=did_you_mean(quantize, QUANTIZATIONS) or f"use one of: {', '.join(QUANTIZATIONS)}")
    if quantize is not None and fmt != "tflite":
        raise ExportError(f"--quantize applies to --format tflite, not {fmt}")
    if fmt == "onnx":  # before the model and data are loaded: a missing package is the first thing to say
        from dltrain.export.onnx_format import ONNX_PACKAGES, require

        require(ONNX_PACKAGES, "--format onnx")


def _check_name(fmt: str, quantize: str | None, out: Path) -> None:
    suffix = _SUFFIXES.get(fmt)
    if suffix and not out.name.endswith(suffix):
        raise ExportError(f"{fmt} files must end in {suffix}, got '{out.name}'",
                          hint=f"for example --out {out.with_name(default_name(fmt, quantize, 'model'))}")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _write(fmt: str, model: Any, out: Path, quantize: str | None, calibration: Samples | None,
           load: Any, source: Path) -> Runtime:
    from dltrain.export.keras_formats import write_keras, write_savedmodel, write_weights

    if fmt == "keras":
        return write_keras(model, out, load)
    if fmt == "weights":
        return write_weights(model, out, load, source)
    if fmt == "savedmodel":
        return write_savedmodel(model, out)
    _refuse_task(model, fmt)
    if fmt == "tflite":
        from dltrain.export.tflite import write as write_tflite

        return write_tflite(model, out, quantize, calibration)
    from dltrain.export.onnx_format import write as write_onnx

    return write_onnx(model, out)


def _refuse_task(model: Any, fmt: str) -> None:
    """TFLite's and ONNX Runtime's interpreters lack the ops a KerasHub preprocessor runs (tensorflow-text's
    tokenizers, image resizing inside the converter), and a task without them takes no raw input."""
    from dltrain.model import is_task, takes_text

    if is_task(model):
        is_text = takes_text(model)
        preprocessor = getattr(model, "preprocessor", None)
        part = getattr(preprocessor, "tokenizer", None) or getattr(preprocessor, "image_converter", None) \
            or preprocessor
        runtime = "TFLite's interpreter" if fmt == "tflite" else "ONNX Runtime"
        raise ExportError(f"a KerasHub {type(model).__name__} cannot be exported as {fmt}: its preprocessor's "
                          f"{type(part).__name__} runs TensorFlow ops{' (tensorflow-text)' if is_text else ''} that {runtime} lacks",
                          hint="use --format savedmodel (it takes raw inputs) or --format keras")


def versions(runtime: Runtime) -> dict[str, str | None]:
    """Versions of what made and ran the export."""
    import keras

    names = ["dltrain", "tensorflow", "numpy"]
    runtime_name = runtime.facts.get("runtime", "")
    names += [name for name in ("tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")
              if name in runtime_name or name in runtime.facts.get("converter", "")]
    found = {name: version(name) for name in names}
    found["keras"] = keras.__version__
    return found


def _report(fmt: str, quantize: str | None, out: Path, source: Path, runtime: Runtime, figures: Figures,
            test: Samples, calibration: Samples | None) -> dict[str, Any]:
    sizes = {"export": _size(out), "keras": source.stat().st_size}
    return {"format": fmt, "quantize": quantize, "precision": quantize or "float", "file": str(out),
            "source": str(source), "created": datetime.datetime.now().isoformat(timespec="seconds"),
            **figures.to_json(), "sample_split": test.split,
            "calibration": {"split": calibration.split, "samples": len(calibration)} if calibration else None,
            "size_bytes": sizes, "size_ratio": sizes["export"] / sizes["keras"],
            "runtime": runtime.facts.get("runtime"), "opset": runtime.facts.get("opset"),
            "op_set": runtime.facts.get("op_set"), "ops": runtime.facts.get("ops"),
            "versions": versions(runtime)}


def export_model(run_dir: Path, fmt: str, out: Path | None = None, *, quantize: str | None = None,
                 best: bool = False, overwrite: bool = False, samples: int = SAMPLES,
                 trust_code: bool = False) -> ExportResult:
    """Write the run's model (best.keras with `best`) in `fmt` to `out` (default `<run>/export/...`), check it
    against the Keras model on test examples, and write the report beside it; a miss raises ExportMismatch.

    `trust_code`: the user's word that the run's custom objects may be imported (dltrain.trust)."""
    from dltrain.runs import BEST_FILE
    from dltrain.load import load_config
    from dltrain.model import load_model

    source = runs.run_file(run_dir, BEST_FILE if best else runs.MODEL_FILE)  # a missing model is reported first
    _check_format(fmt, quantize)
    out = out or run_dir / "export" / default_name(fmt, quantize, source.stem)
    _check_name(fmt, quantize, out)
    if out.exists() and not overwrite:
        raise RunError(f"'{out}' already exists", hint="choose another --out or pass --overwrite")
    loaded = load_config(runs.run_file(run_dir, runs.CONFIG_FILE), trust_code=trust_code)
    dataset = json.loads(runs.run_file(run_dir, runs.DATASET_FILE).read_text())
    model = load_model(source, loaded)
    test, calibration = load_samples(loaded, model, test=samples, calibration=CALIBRATION if quantize == "int8" else 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    runtime = _write(fmt, model, out, quantize, calibration, lambda path: load_model(path, loaded), source)
    figures = check(model, runtime, test, dataset.get("num_classes"), quantize or "float")
    report = _report(fmt, quantize, out, source, runtime, figures, test, calibration)
    written = report_path(out)
    runs.atomic_write_json(written, report)
    result = ExportResult(out, written, report, figures)
    if not figures.passed:
        raise ExportMismatch(f"the {fmt} export differs from the Keras model: {'; '.join(figures.failures)} "
                             f"on {figures.samples} test examples; kept {out} (figures in {written})",
                             result=result, hint=_MISMATCH_HINTS[quantize])
    return result


def _bytes(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return ""


def figure_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The report's figures as (what, Keras model, export) rows for a table."""
    rows = [("max |diff|", "", f"{report['max_abs_diff']:.3g}"), ("mean |diff|", "", f"{report['mean_abs_diff']:.3g}")]
    if report["top1_agreement"] is not None:
        rows.append(("top-1 agreement", "", f"{report['top1_agreement']:.4f}"))
    if report["accuracy"] is not None:
        rows.append((f"accuracy ({report['samples']} {report['sample_split']} examples)",
                     f"{report['accuracy']['keras']:.4f}", f"{report['accuracy']['export']:.4f}"))
    sizes = report["size_bytes"]
    rows.append(("size", _bytes(sizes["keras"]), f"{_bytes(sizes['export'])} ({report['size_ratio']:.2f}x)"))
    for p in ("p50", "p95"):
        rows.append((f"latency {p}, batch 1", *(f"{report['latency_ms'][side][p]:.3f} ms" for side in ("keras", "export"))))
    rows.append(("runtime", "keras predict_on_batch", report["runtime"] or ""))
    if report["op_set"]:
        rows.append(("op set", "", report["op_set"]))
    return rows


_LABELS = {"max_abs_diff": "max |diff|", "mean_abs_diff": "mean |diff|", "top1_agreement": "top-1 agreement"}


def verdict(report: dict[str, Any]) -> str:
    """One line: passed or failed, each figure against its threshold."""
    checks = []
    for key, limit in report["thresholds"].items():
        if key == "top1_agreement":
            checks.append(f"{_LABELS[key]} {report[key]:.4f} {'>=' if report[key] >= limit else '<'} {limit:.2f}")
        else:
            checks.append(f"{_LABELS[key]} {report[key]:.3g} {'<=' if report[key] <= limit else '>'} {limit:.3g}")
    state = "passed" if report["passed"] else "FAILED"
    return f"check {state}: {', '.join(checks)} on {report['samples']} {report['sample_split']} examples"
