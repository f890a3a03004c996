"""`dltrain cv`: its arguments, the cross-validation started or resumed, each fold and the mean ± std shown
(app.py registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dltrain.cli.kit import SetOption, TrustOption, err, errors_to_exit, out, print_table


def _say(text: str) -> None:
    err.print(text, markup=False, highlight=False, soft_wrap=True)


@errors_to_exit
def cv(
    config: Path = typer.Argument(..., help="The YAML config file."),
    folds: Optional[int] = typer.Option(None, "--folds", min=2, metavar="K",
                                        help="Cut the training split into K folds (stratified for classification)."),
    set_: Optional[list[str]] = SetOption,
    workers: int = typer.Option(1, "--workers", min=1, metavar="N", help="Fold processes on this machine."),
    output_dir: Path = typer.Option(Path("outputs"), "--output-dir", help="Where the cv folder is created."),
    resume_dir: Optional[Path] = typer.Option(None, "--resume", metavar="CV_DIR",
                                              help="Finish the folds this stopped or killed cross-validation lacks."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show each fold's progress bars."),
    trust_code: bool = TrustOption,
) -> None:
    """K-fold cross-validation: fold i trains on the other folds and validates on fold i, each an ordinary run
    folder in one cv folder; the test split stays held out. Prints each metric's mean and standard deviation."""
    from dltrain import cv as crossval

    found = crossval.open_cv(config, set_ or [], folds=folds, output_dir=output_dir, resume_dir=resume_dir,
                             trust_code=trust_code)
    out.print(f"cv folder: {found.path}", markup=False, highlight=False, soft_wrap=True)
    result = crossval.run_cv(found, workers=workers, progress=progress, tell=_say)
    for note in result.notes:
        _say(f"note: {note}")
    names = result.columns
    table = Table("fold", "state", *names, title=f"{result.folds}-fold cross-validation")
    for row in result.rows:
        table.add_row(str(row.fold), row.state, *(f"{row.metrics[n]:.4f}" if n in row.metrics else "" for n in names))
    for which in ("mean", "std"):
        table.add_row(which, "", *(f"{result.stats[n][which]:.4f}" if n in result.stats else "" for n in names))
    print_table(table)
    for name in names:
        if name.startswith("val_") and name in result.stats:
            shown = result.stats[name]
            out.print(f"{name}: {shown['mean']:.4f} ± {shown['std']:.4f}", markup=False, highlight=False)
    out.print(f"results: {', '.join(str(p) for p in result.files)}", markup=False, highlight=False, soft_wrap=True)
