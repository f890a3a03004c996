"""The command line: a thin Typer app over the library (parse, call one library function, show the result)."""

from dltrain.cli.app import app, main

__all__ = ["app", "main"]
