"""`dltrain lr-find`: the learning-rate range test run, its suggestion and the --set line shown (app.py
registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dltrain.cli.kit import SetOption, TrustOption, err, errors_to_exit, out


@errors_to_exit
def lr_find(
    config: Path = typer.Argument(..., help="The YAML config file."),
    min_lr: float = typer.Option(1e-7, "--min-lr", help="The first step's learning rate."),
    max_lr: float = typer.Option(10.0, "--max-lr", help="The last step's learning rate (if the loss has not "
                                                        "diverged before)."),
    steps: int = typer.Option(100, "--steps", min=5, help="Training steps, the rate rising exponentially between them."),
    set_: Optional[list[str]] = SetOption,
    output_dir: Path = typer.Option(Path("outputs"), "--output-dir", help="Where the lr-find folder is created."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    trust_code: bool = TrustOption,
) -> None:
    """The learning-rate range test: from the config's initial weights, one step per rate, the rate rising
    exponentially until the smoothed loss diverges; suggests the rate where it falls fastest. Keeps no weights."""
    from dltrain.load import load_config

    loaded = load_config(config, set_ or [], trust_code=trust_code)
    from dltrain.training import find_learning_rate

    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(TextColumn("range test"), BarColumn(), MofNCompleteColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("steps", total=steps)
            result = find_learning_rate(loaded, output_dir, min_lr=min_lr, max_lr=max_lr, steps=steps,
                                        step_done=lambda step, total: bar.update(task, completed=step))
    else:
        result = find_learning_rate(loaded, output_dir, min_lr=min_lr, max_lr=max_lr, steps=steps)
    for note in result.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    say = dict(markup=False, highlight=False, soft_wrap=True)
    out.print(f"lr-find folder: {result.folder}", **say)
    out.print(f"stopped: {result.stop}", **say)
    if result.suggestion is not None:
        out.print(f"suggested learning rate: {result.shown_suggestion} (steepest descent of the smoothed loss)", **say)
        out.print(f"use it: dltrain train {config} {result.set_line}", **say)
    out.print(f"plot: {result.png}", **say)
