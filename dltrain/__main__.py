"""`python -m dltrain` runs the CLI."""

from dltrain.cli import main

main()
