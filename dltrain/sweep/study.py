"""A sweep's Optuna study: its storage, its trial slots, and claiming a trial to run.

Exactly `trials` trials: the process that creates the study adds that many WAITING trials (slots), and
a worker only ever runs a slot it claimed. Claiming is the storage's own atomic WAITING -> RUNNING step
(a row lock in a database, the log order in a journal file), so workers on several machines never run
more trials than the study has. A worker holds a lock file for its trial while it runs it; a RUNNING trial
of this sweep folder whose lock is free lost its process, and the next worker to look adopts it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltrain.config import SweepConfig, SweepParameter
from dltrain.errors import DltrainError, first_line
from dltrain.runs import changed_keys
from dltrain.sweep.space import Space

JOURNAL_FILE = "study.journal"
LOCKS_DIR = ".locks"
# The study's own record (a study user attribute): the sweep section it was created with and its slots.
STUDY_ATTR = "dltrain"
# How long a process joining a database study waits for the process that creates it to add its slots.
JOIN_TIMEOUT_S = 60.0


class SweepError(DltrainError):
    """A sweep cannot open, join or continue its study."""


def quiet_optuna() -> Any:
    """Import Optuna with its INFO logging off (one line per trial would flood worker logs)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def shown_url(url: str) -> str:
    """A database URL with its password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy reads: show it as written
        return url


def open_storage(url: str | None, sweep_dir: Path) -> Any:
    """The study's storage: a journal file in the sweep folder (None), or the database at `url`."""
    optuna = quiet_optuna()
    if url is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(sweep_dir / JOURNAL_FILE)))
    try:
        return _rdb_storage(optuna, url)
    except Exception as error:  # sqlalchemy: a bad URL, a missing driver, a server that does not answer
        hint = "pip install 'dltrain[sweep]' brings the PostgreSQL driver" if "No module named" in str(error) \
            else "is the database server running, and does the URL name it?"
        raise SweepError(f"cannot open the study storage {shown_url(url)}: {first_line(error)}",
                         key="sweep.storage", hint=hint) from None


def _rdb_storage(optuna: Any, url: str) -> Any:
    """RDBStorage, tried again when another process was creating Optuna's tables at the same moment."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url)
        except (IntegrityError, ProgrammingError):  # PostgreSQL: two `CREATE TABLE`s of one name raced
            if attempt == 4:
                raise
            time.sleep(0.5)


def slot_count(sweep: SweepConfig) -> int:
    """How many trials the study holds: `trials`, or every point of a grid."""
    if sweep.trials is not None:
        return sweep.trials
    total = 1
    for parameter in sweep.parameters.values():
        total *= len(parameter.values or ())
    return total


def _add_slots(study: Any, sweep: SweepConfig, space: Space, have: int, want: int) -> None:
    """WAITING trials up to `want`; a grid's slots carry their point's values."""
    if sweep.method == "grid":
        for point in space.grid(want)[have:]:
            study.enqueue_trial(point)
    else:
        for _ in range(want - have):
            study.enqueue_trial({})


def create_or_join(storage: Any, name: str, sweep: SweepConfig, space: Space, recorded: dict[str, Any], *,
                   force: bool = False) -> tuple[Any, bool]:
    """Create the study with its slots, or join the one of that name; (study, joined).

    Joining a study whose sweep section differs is refused, naming the keys, unless `force`."""
    optuna = quiet_optuna()
    direction = sweep.metric.goal
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
    else:
        want = slot_count(sweep)
        _add_slots(study, sweep, space, 0, want)
        study.set_user_attr(STUDY_ATTR, {"sweep": recorded, "slots": want})
        return study, False
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while STUDY_ATTR not in study.user_attrs:  # its creator is still adding the slots
        if time.monotonic() > deadline:
            raise SweepError(f"study '{name}' has no trial slots after {JOIN_TIMEOUT_S:.0f} s",
                             hint="the process that created it died; start it again with --resume")
        time.sleep(0.2)
    update_study(study, sweep, space, recorded, force=force)
    return study, True


def update_study(study: Any, sweep: SweepConfig, space: Space, recorded: dict[str, Any], *, force: bool) -> None:
    """Check the study's sweep section against `recorded`; with `force`, take the new one (and more slots)."""
    record = study.user_attrs[STUDY_ATTR]
    changes = changed_keys(record["sweep"], recorded, ("sweep",))
    if not changes:
        return
    listed = ", ".join(f"{key} ({old} -> {new})" for key, old, new in changes)
    if not force:
        raise SweepError(f"the sweep section changed since study '{study.study_name}' started: {listed}",
                         hint="pass --force to continue with the changed section, or start a new sweep")
    check_compatible(record["sweep"], sweep)
    want = slot_count(sweep)
    if want < record["slots"]:
        raise SweepError(f"study '{study.study_name}' already holds {record['slots']} trials; trials cannot go "
                         f"down to {want}", key="sweep.trials", hint="raise trials, or start a new sweep")
    _add_slots(study, sweep, space, record["slots"], want)
    study.set_user_attr(STUDY_ATTR, {"sweep": recorded, "slots": want})


def _family(parameter: SweepParameter) -> str:
    kind = parameter.kind
    if kind == "categorical":
        return "categorical"
    ints = type(parameter.min) is int and type(parameter.max) is int
    return "int" if kind == "int_uniform" or (kind == "log_uniform_values" and ints) else "float"


def check_compatible(old: dict[str, Any], new: SweepConfig) -> None:
    """What a study cannot change: its metric and direction, a parameter's distribution kind, a categorical's
    choices (Optuna keeps those for the whole study; values of another metric would not compare)."""
    study = SweepConfig.model_validate(old)
    if (study.metric.name, study.metric.goal) != (new.metric.name, new.metric.goal):
        raise SweepError(f"the study is to {study.metric.goal} {study.metric.name}; a study's metric and goal "
                         "cannot change", key="sweep.metric", hint="start a new sweep for another metric or goal")
    for key, parameter in new.parameters.items():
        was = study.parameters.get(key)
        if was is None:
            continue
        if _family(was) != _family(parameter) or (was.values != parameter.values and was.values is not None):
            what = f"values {was.values}" if was.values is not None else f"a {_family(was)} range"
            raise SweepError(f"the study sampled {key} from {what}; Optuna cannot change that within a study",
                             key=f"sweep.parameters.{key}",
                             hint="keep it, give the new values to a new sweep, or change only min and max")


def finished_count(trials: list[Any]) -> int:
    """Trials that are done: COMPLETE, PRUNED or FAIL (Optuna's finished states)."""
    return sum(1 for t in trials if t.state.is_finished())


@dataclass
class Claim:
    """A trial this process runs, and the lock that says so while the process lives."""

    number: int
    trial_id: int
    adopted: bool
    lock_fd: int

    def release(self) -> None:
        """Give the trial's lock back (after the trial is told, so nobody adopts a trial being finished)."""
        os.close(self.lock_fd)


def _lock(sweep_dir: Path, number: int) -> int | None:
    """The trial's lock in this sweep folder, if no live process holds it."""
    folder = sweep_dir / LOCKS_DIR
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / f"trial-{number}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel when the process dies
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def owner(sweep_dir: Path) -> dict[str, str]:
    """The user attributes that tie a trial to this sweep folder on this machine."""
    return {"sweep_dir": str(sweep_dir.resolve()), "host": socket.gethostname()}


def ours(trial: Any, sweep_dir: Path, *, shared: bool) -> bool:
    """Whether this sweep folder claimed the trial (every trial of a journal file in the folder is its own;
    a database study is `shared` with other folders)."""
    return not shared or all(trial.user_attrs.get(k) == v for k, v in owner(sweep_dir).items())


def unfinished(study: Any, sweep_dir: Path, *, shared: bool) -> list[Any]:
    """The trials this sweep folder still has to run: WAITING slots, and RUNNING trials it claimed."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING
            or (t.state == TrialState.RUNNING and ours(t, sweep_dir, shared=shared))]


def claim(study: Any, storage: Any, sweep_dir: Path, *, shared: bool) -> Claim | None:
    """The next trial for this process: a trial of this folder whose process died, else a WAITING slot.

    `shared`: the study lives in a database that other sweep folders use too; only trials this folder
    claimed can be adopted (a journal file in the folder holds only its own)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not ours(trial, sweep_dir, shared=shared):
            continue
        fd = _lock(sweep_dir, trial.number)
        if fd is None:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        if storage.get_trial(trial_id).state == TrialState.RUNNING:  # not finished since the listing
            return Claim(trial.number, trial_id, True, fd)
        os.close(fd)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        fd = _lock(sweep_dir, trial.number)
        if fd is None:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            won = storage.set_trial_state_values(trial_id, state=TrialState.RUNNING)
        except UpdateFinishedTrialError:
            won = False
        if won:
            for key, value in owner(sweep_dir).items():
                storage.set_trial_user_attr(trial_id, key, value)
            return Claim(trial.number, trial_id, False, fd)
        os.close(fd)
    return None


# Optional modules each method needs (Optuna imports them only when sampling).
METHOD_NEEDS = {"cmaes": ("cmaes",), "gp": ("torch", "scipy")}


def check_method(sweep: SweepConfig) -> list[str]:
    """The modules the sweep's method needs that are not installed."""
    import importlib.util

    return [name for name in METHOD_NEEDS.get(sweep.method, ()) if importlib.util.find_spec(name) is None]


def sampler(sweep: SweepConfig) -> Any:
    """The Optuna sampler of `method`."""
    optuna = quiet_optuna()
    if sweep.method == "tpe":
        # constant_liar: trials running in parallel count as bad guesses, so they do not all sample one point
        return optuna.samplers.TPESampler(constant_liar=True)
    if sweep.method == "cmaes":
        return optuna.samplers.CmaEsSampler()
    if sweep.method == "gp":
        return optuna.samplers.GPSampler()
    return optuna.samplers.RandomSampler()  # grid too: every grid slot carries its point's values


def pruner(sweep: SweepConfig, epochs: int) -> Any:
    """The Optuna pruner of `early_terminate` (none without it); steps are epochs, counted from 1."""
    optuna = quiet_optuna()
    early = sweep.early_terminate
    if early is None:
        return optuna.pruners.NopPruner()
    if early.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=early.n_startup_trials, n_warmup_steps=early.min_iter)
    return optuna.pruners.HyperbandPruner(min_resource=early.min_iter, max_resource=early.max_iter or epochs,
                                          reduction_factor=early.eta)
