"""One trial of a sweep: an ordinary run folder, trained (or resumed) with a pruning reporter, told to the study."""

from __future__ import annotations

import math
import shutil
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain import runs
from dltrain.config import LoadedConfig
from dltrain.errors import DltrainError, RunDiverged, RunInterrupted, first_line
from dltrain.runs import read_history, read_metrics
from dltrain.sweep.space import Space, overrides
from dltrain.sweep.study import Claim
from dltrain.training import OVERRIDES_FILE

SNAPSHOT_FILE = "sweep.yaml"
ERROR_FILE = "error.txt"


def trial_name(base: str, number: int) -> str:
    """The run name of trial `number` (its folder is `<name>-<timestamp>` in the sweep folder)."""
    return f"{base[:88]}-trial{number:03d}"


def find_run(sweep_dir: Path, name: str) -> Path | None:
    """The run folder of the trial named `name`, if it was created."""
    found = sorted(p for p in sweep_dir.glob(f"{name}-*") if p.is_dir())
    return found[-1] if found else None


def metric_value(metrics: dict[str, Any], name: str) -> float | None:
    """`val_accuracy` -> metrics.json's val.accuracy (the kept epoch's); `loss` -> train.loss."""
    split, key = ("val", name[4:]) if name.startswith("val_") else ("train", name)
    value = (metrics.get(split) or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class TrialReporter(keras.callbacks.Callback):
    """Reports the sweep metric to the trial after every epoch; stops training when the pruner says so."""

    def __init__(self, trial: Any, metric: str, on_begin: Callable[[], None]) -> None:
        super().__init__()
        self.trial = trial
        self.metric = metric
        self.on_begin = on_begin
        self.pruned_epoch: int | None = None
        self.last_value: float | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.on_begin()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        self.last_value = float(value)
        self.trial.report(self.last_value, epoch + 1)
        # Not after the last epoch: there is nothing left to save, and a trial that trained them all is complete.
        if epoch + 1 < self.params.get("epochs", epoch + 2) and self.trial.should_prune():
            # The run ends like an EarlyStopping run: evaluated and saved, an ordinary run folder.
            self.pruned_epoch = epoch + 1
            self.model.stop_training = True


@dataclass
class TrialContext:
    """What every trial of one worker shares."""

    sweep_dir: Path
    base: LoadedConfig  # the sweep's snapshot config, its sweep section included; its trust_code is every trial's
    space: Space
    study: Any
    storage: Any

    @property
    def metric(self) -> str:
        """The metric the study optimizes."""
        return self.base.config.sweep.metric.name


def run_trial(claim: Claim, ctx: TrialContext) -> str:
    """Run (or finish) the claimed trial and tell the study; return its state (COMPLETE, PRUNED or FAIL).

    A signal stops it resumable: RunInterrupted goes up and the trial stays RUNNING for --resume."""
    import optuna
    from optuna.trial import TrialState

    trial = optuna.Trial(ctx.study, claim.trial_id)
    name = trial_name(ctx.base.config.name, claim.number)
    run_dir = find_run(ctx.sweep_dir, name)

    def record_run() -> None:
        found = find_run(ctx.sweep_dir, name)
        if found is not None:
            trial.set_user_attr("run_dir", str(found.absolute()))  # read from any folder, on any resume

    reporter = TrialReporter(trial, ctx.metric, record_run)
    loaded, trial_overrides = None, [f"name={name}"]
    try:
        if claim.adopted and run_dir is not None and (run_dir / runs.CONFIG_FILE).is_file():
            done = _already_done(run_dir, ctx)
            if done is not None:
                return _tell(ctx, trial, run_dir, *done)
            _report_history(ctx, trial, claim.trial_id, run_dir)
            from dltrain.training import resume

            result = resume(run_dir, progress=False, callbacks=[reporter], trust_code=ctx.base.trust_code)
        else:
            if run_dir is not None and not (run_dir / runs.CONFIG_FILE).is_file():
                shutil.rmtree(run_dir, ignore_errors=True)  # made by a process killed before it wrote anything
            trial_overrides += overrides(ctx.space.suggest(trial))
            from dltrain.load import load_config

            loaded = load_config(ctx.sweep_dir / SNAPSHOT_FILE, trial_overrides, trust_code=ctx.base.trust_code)
            from dltrain.training import train

            result = train(loaded, ctx.sweep_dir, progress=False, callbacks=[reporter])
    except RunInterrupted:
        raise
    except Exception as error:  # any failure is the trial's, kept in its run folder; the sweep goes on
        message = str(error) if isinstance(error, DltrainError) else f"{type(error).__name__}: {first_line(error)}"
        details = None if isinstance(error, DltrainError) else traceback.format_exc()
        run_dir = _failed_run(ctx, name, loaded, trial_overrides, message, details,
                              diverged=isinstance(error, RunDiverged))
        return _tell(ctx, trial, run_dir, TrialState.FAIL, message)
    run_dir = result.run_dir
    if reporter.pruned_epoch is not None:
        message = (f"pruned by the {ctx.base.config.sweep.early_terminate.type} pruner after epoch "
                   f"{reporter.pruned_epoch} ({ctx.metric} {reporter.last_value:.4f})")
        runs.write_status(run_dir, "pruned", message=message)
        state = _tell(ctx, trial, run_dir, TrialState.PRUNED, message)
    else:
        state = _tell(ctx, trial, run_dir, *_outcome(result.metrics, ctx.metric))
    if result.late_signal is not None:  # the stop came while the run was finishing: no next trial
        name = signal.Signals(result.late_signal).name
        raise RunInterrupted(f"stopped by {name} while trial {claim.number} was finishing; it finished ({state})",
                             signal_number=result.late_signal)
    return state


def _outcome(metrics: dict[str, Any], metric: str) -> tuple[Any, Any]:
    """(COMPLETE, value) from a finished run's metrics, or (FAIL, why)."""
    from optuna.trial import TrialState

    value = metric_value(metrics, metric)
    if value is None:
        return TrialState.FAIL, f"metrics.json has no finite {metric}"
    return TrialState.COMPLETE, value


def _already_done(run_dir: Path, ctx: TrialContext) -> tuple[Any, Any] | None:
    """A trial whose run ended but whose process died before telling the study: its state and value."""
    from optuna.trial import TrialState

    info = runs.run_info(run_dir)
    status = runs.read_status(run_dir) or {}
    # Only a run that says it ended is done: a process killed between writing config.yaml and its first
    # status.json leaves a folder whose state is "unknown", and that trial has yet to train.
    if info is None or info.state not in runs.ENDED_STATES:
        return None
    if info.state == "pruned":
        return TrialState.PRUNED, status.get("message")
    if info.state in ("failed", "diverged"):
        return TrialState.FAIL, status.get("message") or info.state
    return _outcome(read_metrics(run_dir), ctx.metric)


def _report_history(ctx: TrialContext, trial: Any, trial_id: int, run_dir: Path) -> None:
    """Report the epochs a killed trial finished but did not report (it died between checkpoint and report)."""
    reported = ctx.storage.get_trial(trial_id).intermediate_values
    for row in read_history(run_dir):
        step, value = int(row.get("epoch", 0)), row.get(ctx.metric)
        if step and step not in reported and value is not None and math.isfinite(value):
            trial.report(value, step)


def _failed_run(ctx: TrialContext, name: str, loaded: LoadedConfig | None, trial_overrides: list[str],
                message: str, details: str | None, *, diverged: bool) -> Path:
    """The failed trial's run folder with its error: the one training left, or a new one saying why."""
    run_dir = find_run(ctx.sweep_dir, name)
    if run_dir is None:  # the trial failed before training made a folder (or training removed it)
        run_dir = runs.create_run(ctx.sweep_dir, name)
        runs.atomic_write_text(run_dir / OVERRIDES_FILE, "".join(f"{o}\n" for o in trial_overrides))
        if loaded is not None:
            runs.atomic_write_yaml(run_dir / runs.CONFIG_FILE, loaded.resolved())
    if not diverged:  # a diverged run's status.json already says so
        runs.write_status(run_dir, "failed", message=message)
    if details is not None:
        runs.atomic_write_text(run_dir / ERROR_FILE, details)
    return run_dir


def _tell(ctx: TrialContext, trial: Any, run_dir: Path | None, state: Any, value: Any) -> str:
    """Record the trial's run folder (and error), then tell the study how it ended."""
    from optuna.trial import TrialState

    if run_dir is not None:
        trial.set_user_attr("run_dir", str(run_dir.absolute()))
    if state == TrialState.COMPLETE:
        ctx.study.tell(trial, value)
    else:
        if state == TrialState.FAIL:
            trial.set_user_attr("error", str(value))
        ctx.study.tell(trial, state=state)
    return state.name
