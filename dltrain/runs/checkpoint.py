"""Epoch-end checkpoints that survive any crash: weights, optimizer state and history in one file.

Keras's `BackupAndRestore` writes its files in place and does not keep the random state, so a crash can
destroy the only backup and a resumed run differs from an uninterrupted one. A dltrain checkpoint is one
`.npz` file (numpy arrays, read without pickle) written to a temp file, fsynced and renamed; the one before
it is kept as `checkpoint.previous.npz` until the new one is complete. Randomness needs no saving: it is a
function of (seed, epoch), see `dltrain.epochs`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain.errors import RunError
import dltrain.runs.folders as runs

CHECKPOINT_FILE = "checkpoint.npz"
PREVIOUS_FILE = "checkpoint.previous.npz"
_FORMAT = 1


class NonFiniteWeights(Exception):
    """A weight is NaN or infinite; it must not be written over a good checkpoint."""


@dataclass
class Checkpoint:
    """The state of a run after `epoch` complete epochs."""

    epoch: int
    history: list[dict[str, float]]
    config: dict[str, Any]
    weights: list[tuple[str, np.ndarray]]
    optimizer: list[tuple[str, np.ndarray]]
    path: Path
    notes: list[str] = field(default_factory=list)
    # Phases (training.phases) finished: the run continues with phase phases_done + 1.
    phases_done: int = 0


def _arrays(variables: list[Any]) -> list[tuple[str, np.ndarray]]:
    return [(v.path, np.asarray(keras.ops.convert_to_numpy(v))) for v in variables]


def _all_finite(arrays: list[tuple[str, np.ndarray]]) -> bool:
    return all(np.isfinite(a).all() for _, a in arrays if np.issubdtype(a.dtype, np.floating))


def save(run_dir: Path, model: keras.Model, epoch: int, history: list[dict[str, float]],
         config: dict[str, Any], phases_done: int = 0) -> Path:
    """Write the checkpoint after `epoch` complete epochs; the previous one becomes checkpoint.previous.npz."""
    weights = _arrays(model.weights)
    optimizer = _arrays(model.optimizer.variables)
    if not (_all_finite(weights) and _all_finite(optimizer)):
        raise NonFiniteWeights(f"a weight became NaN or infinite in epoch {epoch}")
    meta = {"format": _FORMAT, "epoch": epoch, "history": history, "config": config,
            "weights": [name for name, _ in weights], "optimizer": [name for name, _ in optimizer]}
    if phases_done:
        meta["phases_done"] = phases_done
    arrays = {f"w{i}": a for i, (_, a) in enumerate(weights)}
    arrays.update({f"o{i}": a for i, (_, a) in enumerate(optimizer)})
    path = run_dir / CHECKPOINT_FILE
    with runs.atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
        if path.exists():
            # Between this rename and the next there is no checkpoint.npz; `load` then takes this one.
            os.replace(path, run_dir / PREVIOUS_FILE)
    return path


def _read(path: Path) -> Checkpoint:
    with np.load(path, allow_pickle=False) as arrays:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"unknown checkpoint format {meta.get('format')!r}")
        weights = [(name, arrays[f"w{i}"]) for i, name in enumerate(meta["weights"])]
        optimizer = [(name, arrays[f"o{i}"]) for i, name in enumerate(meta["optimizer"])]
    if not (_all_finite(weights) and _all_finite(optimizer)):
        raise ValueError("it holds NaN or infinite weights")
    return Checkpoint(int(meta["epoch"]), list(meta["history"]), dict(meta["config"]), weights, optimizer, path,
                      phases_done=int(meta.get("phases_done", 0)))


def load(run_dir: Path) -> Checkpoint | None:
    """The newest readable checkpoint of a run, None when it has none, or a RunError when all are damaged."""
    problems: list[str] = []
    for name in (CHECKPOINT_FILE, PREVIOUS_FILE):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            found = _read(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as error:
            problems.append(f"{name} is damaged ({type(error).__name__}: {error})")
            continue
        found.notes = [f"{p}; using {name} (after epoch {found.epoch})" for p in problems]
        return found
    if problems:
        raise RunError(f"cannot resume '{run_dir}': " + "; ".join(problems),
                       hint="no readable checkpoint is left; start a new run with: "
                            f"dltrain train {run_dir / runs.CONFIG_FILE}")
    return None


def _unnamed(path: str) -> str:
    """An optimizer variable's path without the optimizer's own name, which Keras numbers per process
    (`adam_1/iteration`): a phase's optimizer can be the second of one process and the first of another."""
    return path.split("/", 1)[-1]


def restore(model: keras.Model, checkpoint: Checkpoint, *, optimizer: bool = True) -> None:
    """Put a checkpoint's weights and (unless not `optimizer`) optimizer state into a freshly built and
    compiled model."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    kinds = [("weights", model.weights, checkpoint.weights)]
    if optimizer:
        kinds.append(("optimizer", model.optimizer.variables, checkpoint.optimizer))
    for kind, variables, saved in kinds:
        names = [v.path for v in variables]
        if kind == "optimizer":
            names, saved = [_unnamed(n) for n in names], [(_unnamed(n), a) for n, a in saved]
        if names != [name for name, _ in saved]:
            differ = sorted(set(name for name, _ in saved) ^ set(names))[:3] or names[:3]
            raise RunError(f"the checkpoint's {kind} do not fit the model built from the config "
                           f"(they differ at {', '.join(differ)})",
                           hint="the model layers changed since the checkpoint was written; start a new run")
        for variable, (name, value) in zip(variables, saved):
            if tuple(variable.shape) != value.shape:
                raise RunError(f"the checkpoint's {name} has shape {value.shape}, the model's "
                               f"{tuple(variable.shape)}", hint="the model layers changed; start a new run")
            variable.assign(value)


class EpochRecorder(keras.callbacks.Callback):
    """After every epoch: the checkpoint, then history.csv, then status.json, each written atomically."""

    def __init__(self, run_dir: Path, config: dict[str, Any], epochs: int,
                 history: list[dict[str, float]] | None = None, phases_done: int = 0):
        super().__init__()
        self.run_dir = run_dir
        self.config = config
        self.epochs = epochs
        self.rows: list[dict[str, float]] = list(history or [])
        self._start = 0.0
        # With training.phases: the number of the phase being trained (history's `phase` column), and how
        # many phases are over (the checkpoint says where a resumed run continues).
        self.phase: int | None = None
        self.phases_done = phases_done

    @property
    def epoch_seconds(self) -> list[float]:
        """Seconds each recorded epoch took, resumed epochs included."""
        return [float(row.get("seconds", 0.0)) for row in self.rows]

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self._start
        phase = {"phase": self.phase} if self.phase is not None else {}
        rows = [*self.rows, {"epoch": epoch + 1, **phase, **{k: float(v) for k, v in (logs or {}).items()},
                             "seconds": round(seconds, 4)}]
        save(self.run_dir, self.model, epoch + 1, rows, self.config, self.phases_done)
        self.rows = rows
        write_history(self.run_dir / runs.HISTORY_FILE, rows)
        runs.write_status(self.run_dir, "running", epoch=epoch + 1, epochs=self.epochs)


    def phase_over(self) -> None:
        """A phase ended (its epochs ran out or EarlyStopping ended it): checkpoint the weights it left
        (EarlyStopping may have restored its best) as the start of the next phase."""
        self.phases_done += 1
        if self.rows:
            save(self.run_dir, self.model, len(self.rows), self.rows, self.config, self.phases_done)


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """Write history.csv (one row per epoch) atomically."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    runs.atomic_write_text(path, out.getvalue())
