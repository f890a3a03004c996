"""The cv folder: `cv.yaml` (the config every fold starts from), `folds.json` (how many), one run folder per
fold (`fold-1`, ...), `cv.json` and `cv.csv` once every fold ended, `logs/` of the worker processes."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltrain import runs
from dltrain.config import LoadedConfig
from dltrain.errors import DltrainError

SNAPSHOT_FILE = "cv.yaml"
PLAN_FILE = "folds.json"
LOCK_FILE = ".cv.lock"
CLAIMS_DIR = ".claims"
# The states in which a fold counts as done: a diverged fold would diverge again (its checkpoint is the last finite one).
DONE_STATES = ("finished", "diverged")


class CvError(DltrainError):
    """A cross-validation cannot start, or some of its folds did not end."""


def fold_name(index: int) -> str:
    """The run folder of fold `index` (1-based) in the cv folder."""
    return f"fold-{index}"


def fold_overrides(base_name: str, index: int, folds: int) -> list[str]:
    """The --set lines that make the cv config into fold `index`'s: its run name and the fold it validates on."""
    return [f"name={base_name[:88]}-fold-{index}", f"dataset.fold.index={index}", f"dataset.fold.folds={folds}"]


@dataclass
class CvFolder:
    """A cv folder whose folds are to run."""

    path: Path
    loaded: LoadedConfig  # cv.yaml's config, without a fold
    folds: int
    # The folder's lock, held by the process that started or resumed it until its folds ended.
    lock_fd: int

    @property
    def trust_code(self) -> bool:
        """The user's word (--trust-code) for every fold's config."""
        return self.loaded.trust_code

    @property
    def resume_command(self) -> str:
        """The command that finishes this cross-validation."""
        return (f"dltrain cv {shlex.quote(str(self.path / SNAPSHOT_FILE))} --resume {shlex.quote(str(self.path))}"
                + (" --trust-code" if self.trust_code else ""))

    def fold_dir(self, index: int) -> Path:
        """Fold `index`'s run folder."""
        return self.path / fold_name(index)

    def state(self, index: int) -> str:
        """Fold `index`'s run state ("missing" before its run folder holds a config)."""
        return fold_state(self.fold_dir(index))

    def left(self) -> list[int]:
        """The folds not yet done."""
        return [i for i in range(1, self.folds + 1) if self.state(i) not in DONE_STATES]

    def close(self) -> None:
        """Let go of the folder's lock."""
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1


def fold_state(run_dir: Path) -> str:
    """A fold's run state, or "missing" when its folder holds no config yet."""
    info = runs.run_info(run_dir) if run_dir.is_dir() else None
    return "missing" if info is None else info.state


def read_plan(folder: Path) -> dict[str, Any]:
    """folds.json of a cv folder; a folder without one is not a cv folder."""
    import json

    try:
        plan = json.loads((folder / PLAN_FILE).read_text())
        int(plan["folds"])
    except (OSError, ValueError, KeyError, TypeError):
        raise CvError(f"'{folder}' is not a cv folder (it has no readable {PLAN_FILE})",
                      hint="give the folder `dltrain cv` printed") from None
    return plan
