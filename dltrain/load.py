"""A config file as a run reads it: the config layer reads the YAML and the data layer answers
`${dataset.num_classes}` and the other dataset facts. config/ cannot ask data/ itself: data/ is built on it."""

from __future__ import annotations

from pathlib import Path

from dltrain import data
from dltrain.config import LoadedConfig, read_config


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                trust_code: bool = False) -> LoadedConfig:
    """Load a config file: `extends`, `--set` overrides, `${...}` references (dataset facts included), validation.

    `trust_code`: the user's word (--trust-code) that the code the config names may run (dltrain.trust)."""
    return read_config(path, overrides, describe=data.describe, trust_code=trust_code)
