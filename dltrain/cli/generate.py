"""`dltrain generate`: a KerasHub causal LM run continues prompts (app.py registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dltrain.cli.kit import TrustOption, errors_to_exit, out


@errors_to_exit
def generate(
    run_dir: Path = typer.Argument(..., help="A run folder of a KerasHub causal LM (model.task)."),
    prompts: list[str] = typer.Argument(..., metavar="PROMPT...", help="Text to continue; several give several."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=1, metavar="N",
                                             help="Tokens in all, prompt included (default: the preprocessor's "
                                                  "sequence_length)."),
    best: bool = typer.Option(False, "--best", help="Use best.keras (the best epoch) instead of model.keras."),
    trust_code: bool = TrustOption,
) -> None:
    """Continue each prompt with a trained causal LM run."""
    from dltrain.predict import generate as run_generate

    for text in run_generate(run_dir, list(prompts), max_length=max_length, best=best, trust_code=trust_code):
        out.print(text, markup=False, highlight=False, soft_wrap=True)
