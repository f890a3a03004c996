"""What every `dltrain` command shares: the consoles, the --set and --trust-code options, errors turned into
one line and an exit status, tables printed whole. No Keras or TensorFlow (the CLI's modules import it)."""

from __future__ import annotations

import functools
from typing import Callable

import typer
from rich.console import Console
from rich.table import Table

from dltrain.errors import DltrainError, RunInterrupted

out = Console()
err = Console(stderr=True)

SetOption = typer.Option(None, "--set", metavar="KEY.PATH=VALUE",
                         help="Override a config value, typed like the field (repeatable).")
# Configs and run folders may come from others: the code they name runs only with the user's word.
TrustOption = typer.Option(False, "--trust-code", envvar="DLTRAIN_TRUST_CODE",
                           help="Let the config import its custom_objects (also from a run folder's pythonpath.txt) "
                                "and turn Keras's safe_mode off where it says safe_mode: false. Only for code that "
                                "is yours or that you trust.")


def errors_to_exit(command: Callable) -> Callable:
    """Turn library errors into a one-line message and their exit status (1 unless the README says else)."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RunInterrupted as stop:  # not an error: the user asked for it, and the run can go on
            err.print(f"interrupted: {stop}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(stop.exit_code) from None
        except DltrainError as error:
            err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C before training started or after it ended: nothing half-written
            err.print("interrupted")
            raise typer.Exit(130) from None
    return wrapper


def print_table(table: Table) -> None:
    """Print a table; into a pipe or file at its natural width, so no line is cut or wrapped."""
    if out.is_terminal:
        out.print(table)
        return
    from rich.measure import Measurement

    probe = Console(width=10_000)
    Console(width=max(20, Measurement.get(probe, probe.options, table).maximum)).print(table)
