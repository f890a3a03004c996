"""Typed, user-facing errors: where it happened, what was expected, how to fix it."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in a config: a file with a 1-based line and column, or a `--set` override."""

    file: str
    line: int | None = None
    column: int | None = None
    # The `extends:` lines that brought this file in, from the file the user named down to this one.
    via: tuple[str, ...] = ()
    # For a line inside a block's definition: the uses that put it in the model, innermost first
    # ("block 'identity' used at c.yaml:20:7").
    within: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = self.file if self.line is None else f"{self.file}:{self.line}:{self.column}"
        if self.via:
            text += f" (via extends at {' -> '.join(self.via)})"
        if self.within:
            text += f" (in {', in '.join(self.within)})"
        return text


class DltrainError(Exception):
    """Base of every error the CLI shows as a one-line message with exit status `exit_code` (1)."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        where: Location | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.where = where
        self.key = key
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.where is not None:
            parts.append(f"{self.where}:")
        if self.key:
            parts.append(f"{self.key}:")
        parts.append(self.message)
        text = " ".join(parts)
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(DltrainError):
    """The config file or an override is malformed or names something that does not exist."""


class UntrustedCodeError(ConfigError):
    """The config would import or run code (custom_objects, safe_mode: false) and the user has not said
    they trust it (--trust-code)."""


class ModelBuildError(DltrainError):
    """The layers are valid one by one but Keras cannot connect them into a model."""


class DataError(DltrainError):
    """A dataset cannot be found, read or used as configured."""


class RunError(DltrainError):
    """A run folder is missing, incomplete or cannot be written."""


class RunInterrupted(RunError):
    """A signal stopped training; the model and the last epoch's checkpoint are saved and it can resume."""

    def __init__(self, message: str, *, signal_number: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.signal_number = signal_number
        # The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM.
        self.exit_code = 128 + signal_number


class RunDiverged(RunError):
    """The loss (or a weight) became NaN or infinite; the last finite checkpoint is kept."""

    exit_code = 3


def first_line(error: BaseException, limit: int = 300) -> str:
    """The informative first line of a (often multi-line) Keras or TensorFlow error message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # Keras bolds parts of messages with ANSI codes
    for line in text.strip().splitlines():
        line = line.strip()
        # Keras wraps layer errors in a header line that says nothing about the cause.
        if line and not line.startswith("Exception encountered when calling"):
            return line[:limit]
    return type(error).__name__
