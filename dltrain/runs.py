"""Run folders: create them without overwriting, write files atomically, find what is inside."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from dltrain.errors import RunError
from dltrain.yamlsource import to_yaml

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
DATASET_FILE = "dataset.json"
# Folders the run's custom_objects were imported from, one a line: the run folder alone can reload them.
PYTHONPATH_FILE = "pythonpath.txt"


def create_run(output_dir: Path, name: str) -> Path:
    """Create `output_dir/<name>-<timestamp>`; an existing folder is never reused."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    for attempt in range(1, 1000):
        path = output_dir / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"cannot create a new run folder in {output_dir}", hint="too many runs started this second")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; once written it is fsynced and renamed over `path`.

    A crash leaves either the old file or the new one, never half of one. The temp name keeps the
    full suffix (`.keras`, `.weights.h5`) because Keras checks it.
    """
    suffix = "." + path.name.split(".", 1)[1] if "." in path.name else ""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically (see `atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, indented for people to read."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_write_yaml(path: Path, data: Any) -> None:
    """Write YAML atomically, keys in the order given."""
    atomic_write_text(path, to_yaml(data))


def save_model(model: Any, path: Path) -> None:
    """Save a Keras model atomically: Keras itself writes in place."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def run_file(run_dir: Path, name: str) -> Path:
    """A file of a run folder, or a RunError saying what is missing."""
    if not run_dir.is_dir():
        raise RunError(f"run folder '{run_dir}' not found", hint="list your runs with: ls outputs/")
    path = run_dir / name
    if not path.is_file():
        raise RunError(f"'{run_dir}' has no {name}", hint="the run may not have finished; train it again")
    return path
