"""`dltrain cv`: the cv folder started (or reopened with --resume), its folds run in this process or in K worker
processes, then each metric's mean and standard deviation over the folds."""

from __future__ import annotations

import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dltrain import runs
from dltrain.config import LoadedConfig
import dltrain.cv.summary as summary
from dltrain.cv.folder import (DONE_STATES, LOCK_FILE, PLAN_FILE, SNAPSHOT_FILE, CvError, CvFolder, fold_overrides,
                               read_plan)
from dltrain.errors import RunInterrupted
from dltrain.trust import require_trust

WORKER_MODULE = "dltrain.cv.worker"


@dataclass
class CvResult:
    """How a cross-validation ended: each fold's row and each metric's mean and standard deviation."""

    path: Path
    folds: int
    rows: list[summary.FoldRow]
    stats: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """cv.json and cv.csv."""
        return [self.path / summary.CV_JSON, self.path / summary.CV_CSV]

    @property
    def columns(self) -> list[str]:
        """The metric columns of the table."""
        return summary.columns(self.rows)


def _check(loaded: LoadedConfig, folds: int) -> None:
    """Every check before a fold trains: the user's word for the config's code, the folds, a fold's config."""
    from dltrain.load import load_config

    require_trust(loaded)
    if folds < 2:
        raise CvError(f"--folds must be at least 2, got {folds}", hint="5 or 10 are the usual choices")
    dataset = loaded.config.dataset
    if dataset.validation is not None:
        raise loaded.error(CvError, ("dataset", "validation"), "cross-validation validates on folds of the "
                           "training split, but the config reads a validation source of its own",
                           hint="remove dataset.validation for `dltrain cv` (its examples could join the training "
                                "data)")
    if dataset.fold is not None:
        raise loaded.error(CvError, ("dataset", "fold"), "the config already names a fold",
                           hint="`dltrain cv` sets dataset.fold for each fold: remove it")
    # A fold's config is the cv config with three --set lines: they must validate too.
    load_config(loaded.path, [*loaded.overrides, *fold_overrides(loaded.config.name, 1, folds)],
                trust_code=loaded.trust_code)


def _busy(folder: Path) -> CvError:
    return CvError(f"cross-validation '{folder}' is still running in another process",
                   hint="wait for it, or stop it (Ctrl-C) and resume")


def open_cv(config: Path, overrides: list[str], *, folds: int | None, output_dir: Path,
            resume_dir: Path | None = None, trust_code: bool = False) -> CvFolder:
    """Read the config and start a cross-validation of `folds` folds in `output_dir`, or reopen `resume_dir`."""
    from dltrain.load import load_config

    loaded = load_config(config, overrides, trust_code=trust_code)
    loaded.config.sweep = None  # a fold is one run of the config's own values, as `train` trains it
    if resume_dir is not None:
        return _resume(loaded, resume_dir, folds)
    if folds is None:
        raise CvError("give --folds K (the number of folds), or --resume CV_DIR", hint="e.g. --folds 5")
    _check(loaded, folds)
    folder = runs.create_run(output_dir, f"{loaded.config.name}-cv")
    lock = runs.hold_lock(folder / LOCK_FILE, lambda: _busy(folder))
    runs.atomic_write_yaml(folder / SNAPSHOT_FILE, loaded.resolved())
    runs.atomic_write_json(folder / PLAN_FILE, {"folds": folds, "seed": loaded.config.seed})
    if loaded.config.custom_objects:  # folds import them from where this process did
        from dltrain.model import import_folders

        runs.atomic_write_text(folder / runs.PYTHONPATH_FILE, "".join(f + "\n" for f in import_folders(loaded)))
    return CvFolder(folder, loaded, folds, lock)


def _resume(loaded: LoadedConfig, folder: Path, folds: int | None) -> CvFolder:
    plan = read_plan(folder)
    if folds is not None and folds != int(plan["folds"]):
        raise CvError(f"'{folder}' has {plan['folds']} folds, not {folds}",
                      hint=f"leave out --folds, or start a new cross-validation with --folds {folds}")
    started = _snapshot(folder)
    if ("seed",) not in loaded.source.positions and isinstance(started.get("seed"), int):
        loaded.config.seed = started["seed"]  # a config without a seed continues with the cv's (the folds depend on it)
    changes = runs.changed_keys(started, loaded.resolved())
    if changes:
        listed = ", ".join(f"{key} ({old} -> {new})" for key, old, new in changes)
        raise CvError(f"the config changed since cross-validation '{folder}' started: {listed}",
                      hint="resume with the config it started with (its cv.yaml), or start a new cross-validation")
    lock = runs.hold_lock(folder / LOCK_FILE, lambda: _busy(folder))
    try:
        require_trust(loaded)
    except BaseException:
        os.close(lock)
        raise
    return CvFolder(folder, loaded, int(plan["folds"]), lock)


def _snapshot(folder: Path) -> dict[str, Any]:
    from dltrain.config import read_yaml

    data, _ = read_yaml(folder / SNAPSHOT_FILE)
    return data


def reopen(folder: Path, *, trust_code: bool = False) -> CvFolder:
    """A cv folder as a worker process sees it: its config and folds, without the folder's lock."""
    from dltrain.load import load_config

    plan = read_plan(folder)
    return CvFolder(folder, load_config(folder / SNAPSHOT_FILE, trust_code=trust_code), int(plan["folds"]), -1)


def run_cv(cv: CvFolder, *, workers: int = 1, progress: bool = True,
           tell: Callable[[str], None] = lambda text: None) -> CvResult:
    """Run the folds not done (in this process, or in `workers` processes); write and return the summary."""
    session = f"{os.getpid()}-{secrets.token_hex(4)}"
    try:
        if workers < 1:
            raise CvError(f"--workers must be at least 1, got {workers}")
        left = cv.left()
        if len(left) < cv.folds:
            tell(f"{cv.folds - len(left)} of {cv.folds} folds already done; running {len(left)}")
        if workers == 1 or len(left) <= 1:
            _in_process(cv, session, progress=progress, tell=tell)
        else:
            _in_workers(cv, session, min(workers, len(left)), tell=tell)
    finally:
        cv.close()
    return _finish(cv)


def _in_process(cv: CvFolder, session: str, *, progress: bool, tell: Callable[[str], None]) -> None:
    from dltrain.cv.fold import run_folds

    try:
        run_folds(cv, session, progress=progress, tell=tell, ended=lambda i: tell(_ended(cv, i, cv.state(i))))
    except RunInterrupted as stop:
        raise RunInterrupted(f"{stop}; {cv.folds - len(cv.left())} of {cv.folds} folds done",
                             signal_number=stop.signal_number, hint=f"resume with: {cv.resume_command}") from None
    except KeyboardInterrupt:  # Ctrl-C while a fold was loading its data or saving: nothing half-written
        raise RunInterrupted(f"stopped by SIGINT between folds' steps; {cv.folds - len(cv.left())} of {cv.folds} "
                             "folds done", signal_number=int(signal.SIGINT),
                             hint=f"resume with: {cv.resume_command}") from None


def _in_workers(cv: CvFolder, session: str, count: int, *, tell: Callable[[str], None]) -> None:
    procs = [runs.spawn_worker(WORKER_MODULE, cv.path, i + 1, trust_code=cv.trust_code, extra=["--session", session])
             for i in range(count)]
    seen = {i: cv.state(i) for i in range(1, cv.folds + 1)}

    def tick() -> None:  # say each fold's end as it comes
        for i in seen:
            state = cv.state(i)
            if state != seen[i] and state in DONE_STATES + ("failed",):
                tell(_ended(cv, i, state))
            seen[i] = state

    stopped = runs.wait_workers(procs, tick=tick)
    if stopped:
        name = signal.Signals(stopped[0]).name
        raise RunInterrupted(f"stopped by {name}: {cv.folds - len(cv.left())} of {cv.folds} folds done; the running "
                             "folds saved their last whole epoch", signal_number=stopped[0],
                             hint=f"resume with: {cv.resume_command}")
    crashed = [(i + 1, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
    if crashed and cv.left():
        i, code = crashed[0]
        raise CvError(f"{len(cv.left())} of {cv.folds} folds did not end: worker {i} exited with status {code} "
                      f"({runs.worker_log_tail(cv.path, i)})", hint=f"resume with: {cv.resume_command}")


def _ended(cv: CvFolder, index: int, state: str) -> str:
    row = summary.fold_row(index, cv.fold_dir(index), state)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in row.metrics.items() if k.startswith("val_"))
    return f"fold {index} of {cv.folds}: {state}" + (f" ({shown})" if shown else "")


def _finish(cv: CvFolder) -> CvResult:
    rows = [summary.fold_row(i, cv.fold_dir(i), cv.state(i)) for i in range(1, cv.folds + 1)]
    left = [r for r in rows if r.state not in DONE_STATES]
    if left:
        listed = ", ".join(f"fold {r.fold} ({r.state})" for r in left)
        raise CvError(f"{len(left)} of {cv.folds} folds did not finish: {listed}",
                      hint=f"see their status.json; resume with: {cv.resume_command}")
    stratified = _stratified(cv)
    stats = summary.write(cv.path, rows, cv.folds, stratified)
    notes = [f"fold {r.fold} diverged: left out of the mean and standard deviation" for r in rows
             if r.state != "finished"]
    return CvResult(cv.path, cv.folds, rows, stats, notes)


def _stratified(cv: CvFolder) -> bool:
    """Whether the folds were stratified by class (the data layer wrote it in each fold's dataset.json)."""
    import json

    try:
        info = json.loads((cv.fold_dir(1) / runs.DATASET_FILE).read_text())
    except (OSError, ValueError):
        return False
    return bool((info.get("fold") or {}).get("stratified"))
