"""The `dltrain` command line: parse arguments, call one library function, show the result."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

# What the commands share lives in kit.py; the names below are the ones the commands were written with.
from dltrain.cli.kit import SetOption, TrustOption, err, errors_to_exit as _errors_to_exit, out, \
    print_table as _print_table
from dltrain.cli.cv import cv
from dltrain.cli.generate import generate
from dltrain.cli.lr_find import lr_find
from dltrain.cli.serve import serve
from dltrain.cli.sweep import sweep

app = typer.Typer(
    name="dltrain",
    help="Config-driven Keras training: describe the data, model and training in YAML; dltrain does the rest.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's Rich help imports rich.markdown and pygments, 0.1 s of every `--help`.
    rich_markup_mode=None,
)

WorkersOption = typer.Option(None, "--workers", min=1, metavar="N",
                             help="Try multi-worker training here: start N local worker processes, each with a "
                                  "TF_CONFIG on free localhost ports; show the chief's progress.")


def _metrics_table(rows: dict[str, dict[str, float]]) -> Table:
    names = list(dict.fromkeys(k for values in rows.values() for k in values))
    table = Table("split", *names)
    for split, values in rows.items():
        table.add_row(split, *(f"{values[n]:.4f}" if n in values else "" for n in names))
    return table


@app.command()
@_errors_to_exit
def train(
    config: Path = typer.Argument(..., help="The YAML config file."),
    set_: Optional[list[str]] = SetOption,
    output_dir: Path = typer.Option(Path("outputs"), "--output-dir", help="Where run folders are created."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show live progress bars."),
    resume_dir: Optional[Path] = typer.Option(None, "--resume", metavar="RUN_DIR",
                                              help="Continue this interrupted run with CONFIG instead of starting one."),
    force: bool = typer.Option(False, "--force", help="With --resume: accept a config that differs from the run's."),
    trust_code: bool = TrustOption,
    workers: Optional[int] = WorkersOption,
) -> None:
    """Train the model a config describes, evaluate it, and save everything in a new run folder."""
    if workers is not None:
        arguments = ["train", str(config), *(a for s in set_ or [] for a in ("--set", s)), "--output-dir",
                     str(output_dir), *(["--resume", str(resume_dir)] if resume_dir is not None else [])]
        _run_workers(arguments, workers, force=force, trust_code=trust_code, progress=progress)
    from dltrain.load import load_config

    loaded = load_config(config, set_ or [], trust_code=trust_code)
    from dltrain.model import preflight

    preflight(loaded)  # a preset that cannot be downloaded: said before TensorFlow starts (3-4 s of import)
    from dltrain import training

    if resume_dir is not None:
        result = training.resume(resume_dir, loaded, force=force, progress=progress)
    else:
        result = training.train(loaded, output_dir, progress=progress)
    _show_result(result)


@app.command()
@_errors_to_exit
def resume(
    run_dir: Path = typer.Argument(..., help="The run folder of an interrupted run."),
    force: bool = typer.Option(False, "--force", help="Resume even if the run's config.yaml was edited."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show live progress bars."),
    trust_code: bool = TrustOption,
    workers: Optional[int] = WorkersOption,
) -> None:
    """Continue an interrupted run from its last checkpoint; it needs nothing but the run folder."""
    if workers is not None:
        _run_workers(["resume", str(run_dir)], workers, force=force, trust_code=trust_code, progress=progress)
    from dltrain import training

    _show_result(training.resume(run_dir, force=force, progress=progress, trust_code=trust_code))


def _run_workers(arguments: list[str], count: int, *, force: bool, trust_code: bool, progress: bool) -> None:
    """Run the command as `count` local workers of one cluster, each with the options train and resume share;
    exit with the first non-zero status."""
    from dltrain.distribute import run_workers

    arguments = [*arguments, *(["--force"] if force else []), *(["--trust-code"] if trust_code else []),
                 "--progress" if progress else "--no-progress"]
    status = run_workers(arguments, count, echo=lambda line: err.print(line, markup=False, highlight=False,
                                                                        soft_wrap=True))
    raise typer.Exit(status)


def _show_result(result) -> None:
    for note in result.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if result.resumed_from is not None:
        out.print(f"resumed after epoch {result.resumed_from}")
    out.print(_metrics_table(result.metrics))
    if result.epoch_seconds:
        out.print(f"{result.epochs} epochs, {sum(result.epoch_seconds) / len(result.epoch_seconds):.2f} s/epoch")
    if result.weights_epoch is not None and result.weights_epoch != result.epochs:
        out.print(f"EarlyStopping restored the weights of epoch {result.weights_epoch}: the model, best.keras and "
                  "the rows above are that epoch's", markup=False, highlight=False, soft_wrap=True)
    if result.role is not None:  # a worker that is not the chief: its temporary folder is already gone
        out.print(f"{result.role}: trained with the chief, which wrote the run folder",
                  markup=False, highlight=False, soft_wrap=True)
        return
    out.print(f"run folder: {result.run_dir}", markup=False, highlight=False, soft_wrap=True)
    if result.tensorboard_dir is not None:
        out.print(f"curves: tensorboard --logdir {shlex.quote(str(result.tensorboard_dir))}",
                  markup=False, highlight=False, soft_wrap=True)


@app.command()
@_errors_to_exit
def evaluate(
    run_dir: Optional[Path] = typer.Argument(None, help="A run folder made by `dltrain train`."),
    model: Optional[Path] = typer.Option(None, "--model", help="A .keras model file (instead of a run folder)."),
    config: Optional[Path] = typer.Option(None, "--config", help="The config whose test split to use, with --model."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    trust_code: bool = TrustOption,
) -> None:
    """Score a trained model on the test split of its dataset."""
    from dltrain.training import evaluate as run_evaluate

    metrics = run_evaluate(run_dir, model_path=model, config_path=config, trust_code=trust_code)
    if as_json:
        out.print_json(json.dumps(metrics))
    else:
        out.print(_metrics_table({"test": metrics}))


@app.command()
@_errors_to_exit
def save(
    run_dir: Path = typer.Argument(..., help="A run folder made by `dltrain train`."),
    format: str = typer.Option("keras", "--format", help="keras, savedmodel, weights, tflite or onnx."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="tflite only: dynamic (int8 weights) or int8 "
                                                                    "(int8 throughout, calibrated on training examples)."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Where to write (default: <run>/export/...)."),
    best: bool = typer.Option(False, "--best", help="Export best.keras (the best epoch) instead of model.keras."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export."),
    trust_code: bool = TrustOption,
) -> None:
    """Export a run's trained model and check it against the Keras model on test examples, in the export's own
    runtime; the figures go to a JSON report beside it, and an export below its thresholds exits 1."""
    from dltrain.export import ExportMismatch, export_model

    try:
        result = export_model(run_dir, format, out_path, quantize=quantize, best=best, overwrite=overwrite,
                              trust_code=trust_code)
    except ExportMismatch as mismatch:
        _show_export(mismatch.result)
        raise
    _show_export(result)
    out.print(f"saved {format}{' ' + quantize if quantize else ''}: {result.path}", markup=False, highlight=False,
              soft_wrap=True)


def _show_export(result) -> None:
    from dltrain.export import figure_rows, verdict

    report = result.report
    table = Table("", "keras model", f"{report['format']}{' ' + report['quantize'] if report['quantize'] else ''}")
    for row in figure_rows(report):
        table.add_row(*row)
    _print_table(table)
    out.print(verdict(report), markup=False, highlight=False, soft_wrap=True)
    out.print(f"report: {result.report_path}", markup=False, highlight=False, soft_wrap=True)


@app.command()
@_errors_to_exit
def check(
    config: Path = typer.Argument(..., help="The YAML config file."),
    set_: Optional[list[str]] = SetOption,
    trust_code: bool = TrustOption,
) -> None:
    """Validate a config and build its model without loading data or training; print the layers."""
    start = time.perf_counter()
    from dltrain.load import load_config

    loaded = load_config(config, set_ or [], trust_code=trust_code)
    from dltrain.model import check as build_and_check, layer_rows, preflight, trainable_count

    preflight(loaded)
    from dltrain.sweep import check_builds
    from dltrain.sweep import check_space

    space = check_space(loaded) if loaded.config.sweep is not None else None  # its keys and values first
    model = build_and_check(loaded)
    counts = []
    if loaded.config.training.phases is not None:  # the globs are checked, and the table shows phase 1
        from dltrain.training import check_phases

        counts = check_phases(model, loaded)
    if space is not None:  # then each value, once the config's own model built
        check_builds(loaded, space)
    table = Table("layer", "type", "output shape", "params", "trainable", title=f"{loaded.config.name} ({config})")
    for name, kind, shape, params, trainable in layer_rows(model):
        table.add_row(name, kind, shape, f"{params:,}", f"{trainable:,}")
    out.print(table)
    if space is not None:
        out.print(f"sweep: {len(space.parameters)} parameters, each value builds the model")
    for phase in counts:
        out.print(f"phase {phase.number} ({phase.epochs} epoch{'s' if phase.epochs > 1 else ''}): "
                  f"{phase.trainable:,} trainable, {phase.frozen:,} frozen parameters",
                  markup=False, highlight=False, soft_wrap=True)
    total, trainable = model.count_params(), trainable_count(model)
    out.print(f"{total:,} parameters ({trainable:,} trainable, {total - trainable:,} frozen); "
              f"config OK ({time.perf_counter() - start:.1f}s)")


@app.command("config")
@_errors_to_exit
def config_(
    config: Path = typer.Argument(..., help="The YAML config file."),
    set_: Optional[list[str]] = SetOption,
    explain: bool = typer.Option(False, "--explain", help="Show where each value came from."),
) -> None:
    """Print the fully resolved config (extends, --set and ${...} applied, defaults filled in).

    It checks the schema, references and layer graph without importing TensorFlow; `dltrain check` also
    checks Keras names and arguments and builds the model."""
    from dltrain.load import load_config

    loaded = load_config(config, set_ or [])
    if not explain:
        from dltrain.config import to_yaml

        out.print(to_yaml(loaded.resolved()), markup=False, highlight=False, soft_wrap=True, end="")
        return
    from dltrain.config import origins

    rows = [(f"{o.key}: {json.dumps(o.value)}", o.source) for o in origins(loaded)]
    width = max(len(text) for text, _ in rows)
    for text, source in rows:  # plain lines: they fold nowhere and grep well
        out.print(f"{text.ljust(width)}  # {source}", markup=False, highlight=False, soft_wrap=True)


@app.command()
@_errors_to_exit
def schema(
    out_path: Optional[Path] = typer.Option(None, "--out", help="Write to this file instead of printing."),
) -> None:
    """Write the JSON Schema of dltrain configs, for editor completion and checks (see the README)."""
    from dltrain.model import config_schema

    text = json.dumps(config_schema(), indent=1) + "\n"
    if out_path is None:
        out.print(text, markup=False, highlight=False, soft_wrap=True, end="")
        return
    from dltrain.runs import atomic_write_text

    atomic_write_text(out_path, text)
    err.print(f"wrote {out_path}", markup=False, highlight=False)


@app.command("runs")
@_errors_to_exit
def list_runs(
    output_dir: Path = typer.Argument(Path("outputs"), help="The folder that holds the run folders."),
    sort: str = typer.Option("date", "--sort", help="date (newest first), name, status, epochs, val, test "
                                                    "(best first) or duration (longest first)."),
    filters: Optional[list[str]] = typer.Option(None, "--filter", metavar="KEY=VALUE",
                                                help="Only runs whose name (name=mnist*), status (status=finished) or "
                                                     "config value (training.epochs=5) matches (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
) -> None:
    """List the runs in OUTPUT_DIR: status, epochs, best validation and test metric, training time."""
    from dltrain.runs import duration, run_summaries

    found = run_summaries(output_dir, sort=sort, filters=filters or [])
    if as_json:
        out.print_json(json.dumps([s.to_json() for s in found]))
        return
    if not found:
        out.print(f"no runs in {output_dir}" + (" match" if filters else ""), markup=False, highlight=False)
        return
    metrics = {s.metric for s in found}
    shared = metrics.pop() if len(metrics) == 1 else None
    table = Table(title=f"runs in {output_dir}")
    for column in ("run", "status", "epochs", "started", f"best val_{shared}" if shared else "best val",
                   f"test {shared}" if shared else "test", "train time"):
        numbers = column.startswith(("best", "test", "train"))
        table.add_column(column, no_wrap=True, justify="right" if numbers else "left")
    notes = any(s.info.message for s in found)
    if notes:
        table.add_column("note", ratio=1)
    for s in found:
        info = s.info
        label = "" if shared else f"{s.metric} "
        best = f"{label}{s.best_val[0]:.4f} (epoch {s.best_val[1]})" if s.best_val else ""
        test = f"{label}{s.test:.4f}" if s.test is not None else ""
        epochs = f"{info.epoch if info.epoch is not None else '?'}/{info.epochs or '?'}"
        started = (info.started or "").replace("T", " ")
        table.add_row(s.name, info.state, epochs, started, best, test, duration(s.seconds) if s.rows else "",
                      *([info.message or ""] if notes else []))
    _print_table(table)
    # Commands on lines of their own: a table cell would wrap them on a narrow terminal.
    for s in found:
        if s.info.resume:
            out.print(f"resume {s.name}: {s.info.resume}", markup=False, highlight=False, soft_wrap=True)


@app.command()
@_errors_to_exit
def compare(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN RUN...", help="Two or more run folders."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", metavar="FILE.png",
                                             help="Also write one PNG with the runs' validation curves overlaid."),
) -> None:
    """Show the config keys that differ between runs, and their metrics side by side."""
    from dltrain.runs import compare as compare_runs, plot_comparison as plot

    found = compare_runs(run_dirs)
    names = [s.name for s in found.runs]
    if found.differences:
        table = Table("config key", *names, title="config differences")
        for key, cells in found.differences:
            table.add_row(key, *cells)
        _print_table(table)
    else:
        out.print("the configs are the same", markup=False, highlight=False)
    table = Table("metric", title="metrics")
    for name in names:
        table.add_column(name, justify="right")
    for label, cells in found.metrics:
        table.add_row(label, *cells)
    _print_table(table)
    if plot_path is not None:
        written = plot(found, plot_path)
        out.print(f"wrote {written}", markup=False, highlight=False, soft_wrap=True)


@app.command()
@_errors_to_exit
def predict(
    run_dir: Path = typer.Argument(..., help="A run folder made by `dltrain train`."),
    inputs: list[Path] = typer.Argument(..., metavar="INPUT...",
                                        help="Image files, a CSV (one example per row; by header for table "
                                             "runs; a forecast for every full window of rows for time-series "
                                             "runs), an .npz/.npy of arrays, .txt files (text runs) or .wav files "
                                             "(audio runs)."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="How many classes to show per input (classifiers)."),
    out_path: Optional[Path] = typer.Option(None, "--out", metavar="FILE.csv|DIR",
                                            help="Write all predictions as CSV instead of printing a table "
                                                 "(a segmentation run: the folder its mask PNGs go to, "
                                                 "default RUN/predictions)."),
    best: bool = typer.Option(False, "--best", help="Use best.keras (the best epoch) instead of model.keras."),
    trust_code: bool = TrustOption,
    model: Optional[Path] = typer.Option(None, "--model", metavar="FILE.onnx|FILE.tflite",
                                         help="Run this export of the run's model (from `dltrain save`) in its own "
                                              "runtime, with the Keras model's answers beside."),
) -> None:
    """Predict with a trained run: top-k classes with probabilities for classifiers, a mask PNG per image
    for segmentation, else the outputs."""
    from dltrain.predict import format_top, predict as run_predict

    if model is None:
        found = run_predict(run_dir, inputs, best=best, trust_code=trust_code, masks_dir=out_path)
    else:
        from dltrain.export import predict_export

        found = predict_export(run_dir, inputs, model, best=best, trust_code=trust_code)
    for note in found.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if found.masks:
        for name, path in zip(found.inputs, found.masks):
            out.print(f"{name}: mask written to {path}", markup=False, highlight=False, soft_wrap=True)
        return
    if out_path is not None:
        from dltrain.runs import atomic_write_text

        atomic_write_text(out_path, found.to_csv())
        out.print(f"wrote {len(found.inputs)} predictions to {out_path}", markup=False, highlight=False, soft_wrap=True)
        return
    extra, beside = found.beside(table=True)  # with --model: the Keras model's answers beside the export's
    if found.multi_label:  # the tags over 0.5, then the most probable tags with their probabilities
        k = min(top_k, found.probabilities.shape[1])
        table = Table("input", "tags", *[f"#{i}" for i in range(1, k + 1)], *extra)
        for name, tags, top, more in zip(found.inputs, found.tags(), found.top(k), beside):
            table.add_row(name, tags or "(none)", *format_top(top), *more)
    elif found.probabilities is not None:
        k = min(top_k, found.probabilities.shape[1])
        table = Table("input", *(["prediction"] + [f"#{i}" for i in range(2, k + 1)]), *extra)
        for name, top, more in zip(found.inputs, found.top(k), beside):
            table.add_row(name, *format_top(top), *more)
    else:
        flat = found.outputs.reshape(len(found.outputs), -1)
        table = Table("input", *found.columns(), *extra)
        for name, row, more in zip(found.inputs, flat, beside):
            table.add_row(name, *(f"{v:.4g}" for v in row), *more)
    _print_table(table)


app.command()(sweep)
app.command()(serve)
app.command()(cv)
app.command()(generate)
app.command(name="lr-find")(lr_find)


@app.command()
@_errors_to_exit
def plot(
    run_dir: Path = typer.Argument(..., help="A run folder, finished or still training."),
    curves_only: bool = typer.Option(False, "--curves-only",
                                     help="Only the learning curves (no model or data loading)."),
    trust_code: bool = TrustOption,
) -> None:
    """(Re)draw a run's plots in RUN_DIR/plots, also while it is still training.

    Learning curves from history.csv; for a finished classifier also the confusion matrix and the
    misclassified test examples."""
    from dltrain.training import redraw

    written = redraw(run_dir, test_plots=not curves_only, trust_code=trust_code)
    if not written:
        out.print(f"nothing to plot yet: {run_dir} has no finished epoch", markup=False, highlight=False)
    for path in written:
        out.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point of the `dltrain` console script."""
    app()
