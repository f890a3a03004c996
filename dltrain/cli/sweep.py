"""`dltrain sweep`: its arguments, the sweep started or resumed, its results shown (app.py registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dltrain.cli.kit import SetOption, TrustOption, err, errors_to_exit, out, print_table


@errors_to_exit
def sweep(
    config: Path = typer.Argument(..., help="The YAML config file with a sweep: section."),
    set_: Optional[list[str]] = SetOption,
    workers: int = typer.Option(1, "--workers", min=1, help="Trial processes on this machine."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="The study's total (sets sweep.trials)."),
    output_dir: Path = typer.Option(Path("outputs"), "--output-dir", help="Where the sweep folder is created."),
    resume_dir: Optional[Path] = typer.Option(None, "--resume", metavar="SWEEP_DIR",
                                              help="Continue this stopped or killed sweep."),
    force: bool = typer.Option(False, "--force", help="With --resume: accept a config that differs from the sweep's."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the live display."),
    trust_code: bool = TrustOption,
) -> None:
    """Run a study of many trials of a config (its sweep: section); each trial is an ordinary run folder."""
    from dltrain.sweep import open_sweep, run_sweep

    found = open_sweep(config, set_ or [], output_dir=output_dir, resume_dir=resume_dir, trials=trials,
                              force=force, trust_code=trust_code)
    out.print(f"sweep folder: {found.path}", markup=False, highlight=False, soft_wrap=True)
    for note in found.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    result = run_sweep(found, workers=workers, progress=progress)
    for note in result.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    table = Table(*result.columns(), title=result.title)
    for cells in result.top(5):
        table.add_row(*cells)
    print_table(table)
    out.print(f"leaderboard: {result.leaderboard}", markup=False, highlight=False, soft_wrap=True)
    if result.best_config is not None:
        out.print(f"best config: {result.best_config}", markup=False, highlight=False, soft_wrap=True)
