"""Run folders: create them without overwriting, write files atomically, find what is inside."""

from __future__ import annotations

import json
import os
import shlex
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from dltrain.config import to_yaml
from dltrain.errors import RunError

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
DATASET_FILE = "dataset.json"
# Folders the run's custom_objects were imported from, one a line: the run folder alone can reload them.
PYTHONPATH_FILE = "pythonpath.txt"
STATUS_FILE = "status.json"

# The states a run's status.json can hold. A "running" run whose process is gone reads as "interrupted".
# "pruned": a sweep's pruner stopped the run early (it is complete up to that epoch).
STATES = ("running", "finished", "interrupted", "failed", "diverged", "pruned")
# The states of a run that ended; any other (running, interrupted, or none written yet) can still continue.
ENDED_STATES = ("finished", "failed", "diverged", "pruned")


def create_run(output_dir: Path, name: str, *, exact: str | None = None) -> Path:
    """Create `output_dir/<name>-<timestamp>` (or `output_dir/<exact>`); an existing folder is never reused."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if exact is not None:
        try:
            (output_dir / exact).mkdir()
        except FileExistsError:
            raise RunError(f"run folder '{output_dir / exact}' exists already",
                           hint="a run folder is never overwritten: move it away, or resume it") from None
        return output_dir / exact
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


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


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
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; run files are as readable as any other file
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


def resume_command(run_dir: Path) -> str:
    """The shell command that resumes a run."""
    return f"dltrain resume {shlex.quote(str(run_dir))}"


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's status.json, or None when it has none (or it cannot be read)."""
    try:
        status = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def write_status(run_dir: Path, state: str, **fields: Any) -> dict[str, Any]:
    """Update status.json atomically: `state`, this process, the time, and any other `fields`."""
    if state not in STATES:
        raise ValueError(f"unknown run state {state!r}")
    now = datetime.now().isoformat(timespec="seconds")
    status = read_status(run_dir) or {"started": now}
    status.update(fields, state=state, updated=now, pid=os.getpid(), host=socket.gethostname(),
                  resume=resume_command(run_dir))
    if state in ("running", "finished") and "message" not in fields:
        status.pop("message", None)  # a message from an earlier interruption no longer applies
    atomic_write_json(run_dir / STATUS_FILE, status)
    return status


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


@dataclass
class RunInfo:
    """One run folder as `dltrain runs` shows it."""

    path: Path
    state: str
    epoch: int | None
    epochs: int | None
    started: str | None
    message: str | None = None

    @property
    def resume(self) -> str | None:
        """The command that continues this run, when it can be continued."""
        return resume_command(self.path) if self.state in ("interrupted", "failed") else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"path": str(self.path), "state": self.state, "epoch": self.epoch, "epochs": self.epochs,
                "started": self.started, "message": self.message, "resume": self.resume}


def run_info(run_dir: Path) -> RunInfo | None:
    """What is known about one run folder, or None when the folder is not a dltrain run."""
    status = read_status(run_dir)
    if status is None:
        if not (run_dir / CONFIG_FILE).is_file():
            return None
        # A run written before status files existed: finished if it has its final metrics.
        state = "finished" if (run_dir / METRICS_FILE).is_file() else "unknown"
        started = datetime.fromtimestamp((run_dir / CONFIG_FILE).stat().st_mtime).isoformat(timespec="seconds")
        return RunInfo(run_dir, state, None, None, started)
    state = status.get("state", "unknown")
    message = status.get("message")
    if state == "running" and status.get("host") == socket.gethostname() and isinstance(status.get("pid"), int) \
            and not _process_alive(status["pid"]):
        state = "interrupted"
        message = message or "the process ended without saying why (killed, or the machine went down)"
    return RunInfo(run_dir, state, status.get("epoch"), status.get("epochs"), status.get("started"), message)


def list_runs(output_dir: Path) -> list[RunInfo]:
    """The runs in `output_dir`, newest first."""
    if not output_dir.is_dir():
        raise RunError(f"output folder '{output_dir}' not found", hint="train a run first, or pass the folder")
    found = [info for path in output_dir.iterdir() if path.is_dir() and not path.name.startswith(".")
             and (info := run_info(path)) is not None]
    return sorted(found, key=lambda info: (info.started or "", info.path.name), reverse=True)


_ABSENT = object()


def changed_keys(old: Any, new: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str, Any, Any]]:
    """The dotted keys whose values differ between two configs, with the old and the new value."""
    from dltrain.config import dotted

    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in dict.fromkeys([*old, *new]):
            found += changed_keys(old.get(key, _ABSENT), new.get(key, _ABSENT), path + (key,))
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [change for i, (a, b) in enumerate(zip(old, new)) for change in changed_keys(a, b, path + (i,))]
    if old == new:
        return []
    show = lambda value: "(absent)" if value is _ABSENT else json.dumps(value)  # noqa: E731
    return [(dotted(path) or "(the whole config)", show(old), show(new))]
