"""`dltrain sweep`: the sweep folder and its study, K worker processes, the live view, the results.

A sweep folder holds `sweep.yaml` (the config every trial starts from, its sweep section included),
`study.journal` (the study, unless `storage:` names a database), one ordinary run folder per trial,
`leaderboard.csv`, `plots/` and `logs/` (one log per worker).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dltrain import runs
from dltrain.config import LoadedConfig, get_path
from dltrain.errors import RunInterrupted
from dltrain.model import import_folders
import dltrain.sweep.board as board
from dltrain.sweep.checks import check_metric, check_sweep
from dltrain.sweep.space import Space
from dltrain.sweep.study import STUDY_ATTR, SweepError, create_or_join, finished_count, open_storage, shown_url, \
    unfinished
from dltrain.sweep.trial import SNAPSHOT_FILE
from dltrain.trust import require_trust

LOCK_FILE = ".sweep.lock"
# Looking at the study twice a second keeps the live view current for a few ms of CPU a look.
POLL_S = 0.5


@dataclass
class Sweep:
    """A sweep folder with its study, ready for workers."""

    path: Path
    loaded: LoadedConfig  # the snapshot config (sweep.yaml)
    space: Space
    study: Any
    # The sweep folder's lock, held from start or resume until the workers end (run).
    lock_fd: int
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """The study's number of trials."""
        return int(self.study.user_attrs[STUDY_ATTR]["slots"])

    @property
    def resume_command(self) -> str:
        """The command that continues this sweep."""
        path = shlex.quote(str(self.path))
        return f"dltrain sweep {shlex.quote(str(self.path / SNAPSHOT_FILE))} --resume {path}"


@dataclass
class SweepResult:
    """How a sweep ended: the leaderboard and where the best trial's config is."""

    path: Path
    rows: list[board.Row]
    keys: list[str]
    metric: str
    total: int
    finished: int
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def best_config(self) -> Path | None:
        """config.yaml of the best finished trial (`dltrain train` of it reproduces the trial)."""
        best = next((r for r in self.rows if r.state == "COMPLETE" and r.run_dir), None)
        return Path(best.run_dir) / runs.CONFIG_FILE if best else None

    @property
    def leaderboard(self) -> Path:
        """The sweep folder's leaderboard.csv."""
        return self.path / board.LEADERBOARD_FILE

    @property
    def title(self) -> str:
        """How many trials finished, and how."""
        counts = {state: sum(r.state == state for r in self.rows) for state in ("COMPLETE", "PRUNED", "FAIL")}
        return (f"{self.finished} of {self.total} trials finished ({counts['COMPLETE']} complete, "
                f"{counts['PRUNED']} pruned, {counts['FAIL']} failed); best first")

    def columns(self) -> list[str]:
        """The top-rows table's columns: the leaderboard's, with the metric's name as the value's."""
        return ["trial", "state", self.metric, *self.keys, "run folder"]

    def top(self, count: int = 5) -> list[list[str]]:
        """The leaderboard's first rows as text: values to 4 digits, the run folder's name."""
        return [[str(row.trial), row.state, "" if row.value is None else f"{row.value:.4f}",
                 *(board.shown(row.params.get(k)) for k in self.keys), Path(row.run_dir).name]
                for row in self.rows[:count]]


def preflight(loaded: LoadedConfig) -> Space:
    """Every check before any trial starts: the user's word for the config's code (as `train` asks it), keys,
    values and method; each value builds; the metric is logged."""
    require_trust(loaded)
    space = check_sweep(loaded)
    check_metric(loaded)
    return space


def _set(data: dict[str, Any], path: tuple, value: Any) -> None:
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def snapshot(loaded: LoadedConfig) -> dict[str, Any]:
    """The config every trial starts from: resolved, with `${...}` references put back, so a reference to
    a swept key follows the trial's value."""
    data = loaded.resolved()
    for path, text in loaded.references.items():
        if path[0] != "sweep" and get_path(data, path)[0]:
            _set(data, path, text)
    return data


def _open_study(loaded: LoadedConfig, space: Space, folder: Path, *, force: bool) -> tuple[Any, bool]:
    sweep = loaded.config.sweep
    try:
        storage = open_storage(sweep.storage, folder)
    except SweepError as error:
        error.where = loaded.locate(("sweep", "storage"))
        raise
    return create_or_join(storage, loaded.config.name, sweep, space, loaded.resolved()["sweep"], force=force)


def _write_folder(folder: Path, loaded: LoadedConfig) -> None:
    runs.atomic_write_yaml(folder / SNAPSHOT_FILE, snapshot(loaded))
    if loaded.config.custom_objects:  # trials import them from where this process did
        runs.atomic_write_text(folder / runs.PYTHONPATH_FILE,
                               "".join(f + "\n" for f in import_folders(loaded)))


def open_sweep(config: Path, overrides: list[str], *, output_dir: Path, resume_dir: Path | None = None,
               trials: int | None = None, force: bool = False, trust_code: bool = False) -> Sweep:
    """Read a sweep config (`trials` sets sweep.trials) and start its sweep in `output_dir`, or reopen `resume_dir`.

    `trust_code`: the user's word (--trust-code) that every trial may run the code the config names."""
    from dltrain.load import load_config

    extra = [f"sweep.trials={trials}"] if trials is not None else []
    loaded = load_config(config, [*overrides, *extra], trust_code=trust_code)
    return resume(loaded, resume_dir, force=force) if resume_dir is not None else start(loaded, output_dir)


def start(loaded: LoadedConfig, output_dir: Path) -> Sweep:
    """Check the sweep, create its folder in `output_dir` and its study (or join the database's)."""
    space = preflight(loaded)
    folder = runs.create_run(output_dir, f"{loaded.config.name}-sweep")
    lock = _hold_lock(folder)
    try:
        _write_folder(folder, loaded)
        study, joined = _open_study(loaded, space, folder, force=False)
    except BaseException:
        os.close(lock)
        shutil.rmtree(folder, ignore_errors=True)  # nothing ran: leave no empty sweep folder behind
        raise
    sweep = Sweep(folder, loaded, space, study, lock)
    if joined:
        done = finished_count(study.get_trials(deepcopy=False))
        sweep.notes.append(f"joined study '{study.study_name}' in {shown_url(loaded.config.sweep.storage)}: "
                           f"{done} of {sweep.total} trials finished")
    return sweep


def resume(loaded: LoadedConfig, folder: Path, *, force: bool = False) -> Sweep:
    """Reopen a stopped or killed sweep; a config that differs from the one it started with needs `force`."""
    if not (folder / SNAPSHOT_FILE).is_file():
        raise SweepError(f"'{folder}' is not a sweep folder (it has no {SNAPSHOT_FILE})",
                         hint="give the folder `dltrain sweep` printed")
    started = _read_snapshot(folder)
    if ("seed",) not in loaded.source.positions and isinstance(started.get("seed"), int):
        loaded.config.seed = started["seed"]  # a config without a seed continues with the sweep's
    changes = runs.changed_keys(started, snapshot(loaded))
    if changes and not force:
        listed = ", ".join(f"{key} ({old} -> {new})" for key, old, new in changes)
        raise SweepError(f"the config changed since sweep '{folder}' started: {listed}",
                         hint="pass --force to continue with the changed config, or start a new sweep")
    lock = _hold_lock(folder)
    try:
        space = preflight(loaded)
        study, _ = _open_study(loaded, space, folder, force=force)
        if changes:
            _write_folder(folder, loaded)
    except BaseException:
        os.close(lock)
        raise
    return Sweep(folder, loaded, space, study, lock)


def _read_snapshot(folder: Path) -> dict[str, Any]:
    from dltrain.config import read_yaml

    data, _ = read_yaml(folder / SNAPSHOT_FILE)
    return data


def _hold_lock(folder: Path) -> int:
    """The sweep folder's lock, held while its workers run: a second `dltrain sweep` on it is refused."""
    return runs.hold_lock(folder / LOCK_FILE, lambda: SweepError(
        f"sweep '{folder}' is still running in another process", hint="wait for it, or stop it (Ctrl-C) and resume"))


def run(sweep: Sweep, *, workers: int = 1, progress: bool = True) -> SweepResult:
    """Run the study's remaining trials in `workers` processes; show them live; write the results."""
    if workers < 1:
        os.close(sweep.lock_fd)
        raise SweepError(f"--workers must be at least 1, got {workers}")
    config = sweep.loaded.config
    goal, metric = config.sweep.metric.goal, config.sweep.metric.name
    left = sweep.total - finished_count(sweep.study.get_trials(deepcopy=False))
    procs = [runs.spawn_worker("dltrain.sweep.worker", sweep.path, i + 1, trust_code=sweep.loaded.trust_code)
             for i in range(min(workers, left))]
    display = None
    if progress:
        from dltrain.sweep.live import SweepDisplay

        display = SweepDisplay(config.name, metric, sweep.space.keys(), config.training.epochs)
        display.start()

    def tick() -> None:
        if display is not None:
            display.update(board.leaderboard(sweep.study.get_trials(deepcopy=False), sweep.space, goal), sweep.total)

    try:
        stopped = runs.wait_workers(procs, tick=tick, poll_s=POLL_S)
    finally:
        if display is not None:
            display.stop()
        os.close(sweep.lock_fd)
    return _finish(sweep, procs, stopped)


def _finish(sweep: Sweep, procs: list[subprocess.Popen], stopped: list[int]) -> SweepResult:
    config = sweep.loaded.config
    rows = board.refresh(sweep.study, sweep.space, config.sweep.metric.goal, sweep.path)
    trials = sweep.study.get_trials(deepcopy=False)
    done, total = finished_count(trials), sweep.total
    if stopped:
        name = signal.Signals(stopped[0]).name
        raise RunInterrupted(f"stopped by {name}: {done} of {total} trials finished; the running trials saved "
                             "their last whole epoch", signal_number=stopped[0], hint=f"resume with: "
                             f"{sweep.resume_command}")
    left = unfinished(sweep.study, sweep.path, shared=config.sweep.storage is not None)
    if left:
        crashed = [(i + 1, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
        why = "the processes running them ended first"
        if crashed:
            i, code = crashed[0]
            why = f"worker {i} exited with status {code} ({runs.worker_log_tail(sweep.path, i)})"
        raise SweepError(f"{done} of {total} trials finished and {len(left)} left: {why}",
                         hint=f"resume with: {sweep.resume_command}")
    plots, notes = board.write_plots(sweep.study, sweep.path)
    running = sum(1 for r in rows if r.state == "RUNNING")
    if running:
        notes.append(f"{running} trial{'s are' if running > 1 else ' is'} still running in another sweep folder "
                     "of this study")
    return SweepResult(sweep.path, rows, sweep.space.keys(), config.sweep.metric.name, total, done, plots, notes)
