"""The `dltrain` command line: parse arguments, call one library function, show the result."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from dltrain.errors import DltrainError

app = typer.Typer(
    name="dltrain",
    help="Config-driven Keras training: describe the data, model and training in YAML; dltrain does the rest.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's Rich help imports rich.markdown and pygments, 0.1 s of every `--help`.
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True)

SetOption = typer.Option(None, "--set", metavar="KEY.PATH=VALUE",
                         help="Override a config value, typed like the field (repeatable).")


def _errors_to_exit(command: Callable) -> Callable:
    """Turn library errors into a one-line message and exit status 1."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DltrainError as error:
            err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper


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
) -> None:
    """Train the model a config describes, evaluate it, and save everything in a new run folder."""
    from dltrain.config import load_config

    loaded = load_config(config, set_ or [])
    from dltrain.training import train as run_training

    result = run_training(loaded, output_dir, progress=progress)
    out.print(_metrics_table(result.metrics))
    if result.epoch_seconds:
        out.print(f"{result.epochs} epochs, {sum(result.epoch_seconds) / len(result.epoch_seconds):.2f} s/epoch")
    out.print(f"run folder: {result.run_dir}", markup=False, highlight=False, soft_wrap=True)


@app.command()
@_errors_to_exit
def evaluate(
    run_dir: Optional[Path] = typer.Argument(None, help="A run folder made by `dltrain train`."),
    model: Optional[Path] = typer.Option(None, "--model", help="A .keras model file (instead of a run folder)."),
    config: Optional[Path] = typer.Option(None, "--config", help="The config whose test split to use, with --model."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Score a trained model on the test split of its dataset."""
    from dltrain.training import evaluate as run_evaluate

    metrics = run_evaluate(run_dir, model_path=model, config_path=config)
    if as_json:
        out.print_json(json.dumps(metrics))
    else:
        out.print(_metrics_table({"test": metrics}))


@app.command()
@_errors_to_exit
def save(
    run_dir: Path = typer.Argument(..., help="A run folder made by `dltrain train`."),
    format: str = typer.Option("keras", "--format", help="keras, savedmodel or weights."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Where to write (default: <run>/export/...)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export."),
) -> None:
    """Export a run's trained model."""
    from dltrain.export import export_model

    path = export_model(run_dir, format, out_path, overwrite=overwrite)
    out.print(f"saved {format}: {path}", markup=False, highlight=False, soft_wrap=True)


@app.command()
@_errors_to_exit
def check(
    config: Path = typer.Argument(..., help="The YAML config file."),
    set_: Optional[list[str]] = SetOption,
) -> None:
    """Validate a config and build its model without loading data or training; print the layers."""
    start = time.perf_counter()
    from dltrain.config import load_config

    loaded = load_config(config, set_ or [])
    from dltrain.model import check as build_and_check, layer_rows

    model = build_and_check(loaded)
    table = Table("layer", "type", "output shape", "params", title=f"{loaded.config.name} ({config})")
    for name, kind, shape, params in layer_rows(model):
        table.add_row(name, kind, shape, f"{params:,}")
    out.print(table)
    out.print(f"{model.count_params():,} parameters; config OK ({time.perf_counter() - start:.1f}s)")


def main() -> None:
    """Entry point of the `dltrain` console script."""
    app()
