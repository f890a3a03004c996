"""An interrupted run continued from its last checkpoint, with its own config or a changed one (--force)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
import yaml

from dltrain import runs
from dltrain.config import LoadedConfig
from dltrain.data import same_test_split
from dltrain.distribute import check_run_folder
from dltrain.errors import RunError
from dltrain.load import load_config
from dltrain.runs import load_checkpoint, restore_checkpoint
import dltrain.training.phases as phases
import dltrain.training.report as report
from dltrain.training.fit import fit
from dltrain.training.prepare import prepare
from dltrain.training.result import TrainResult
from dltrain.trust import require_trust


def resume(run_dir: Path, loaded: LoadedConfig | None = None, *, force: bool = False, progress: bool = True,
           callbacks: Sequence[keras.callbacks.Callback] = (), trust_code: bool = False) -> TrainResult:
    """Continue an interrupted run from its last checkpoint, with its own config or (`loaded`) a given one.

    A config that differs from the one the run started with is refused unless `force`. `trust_code` applies
    to the run's own config (a given `loaded` carries its own word: dltrain.trust).
    """
    check_run_folder(run_dir)  # a worker of a cluster resumes from the chief's folder
    config_file = runs.run_file(run_dir, runs.CONFIG_FILE)
    info = runs.run_info(run_dir)
    status = runs.read_status(run_dir) or {}
    if info is not None and info.state == "running":
        raise RunError(f"'{run_dir}' is still being trained (process {status.get('pid')})",
                       hint="stop that process first (Ctrl-C), then resume")
    last = load_checkpoint(run_dir)
    notes = list(last.notes) if last else []
    started_with = last.config if last else yaml.safe_load(config_file.read_text())
    started_with.pop("sweep", None)  # written by runs from before train dropped it
    if loaded is None:
        loaded = load_config(config_file, trust_code=trust_code)
    elif ("seed",) not in loaded.source.positions and isinstance(started_with.get("seed"), int):
        loaded.config.seed = started_with["seed"]  # a config without a seed continues with the run's seed
    loaded.config.sweep = None  # as train: a run is one config, whatever sweep section its file holds
    require_trust(loaded)  # first: without it the run cannot continue, whatever else is said
    same_test_split(loaded.config.dataset, started_with.get("dataset") or {})
    changes = runs.changed_keys(started_with, loaded.resolved())
    if changes:
        listed = ", ".join(f"{key} ({old} -> {new})" for key, old, new in changes)
        if not force:
            raise RunError(f"the config changed since '{run_dir}' started: {listed}",
                           hint="pass --force to resume with the changed config, or start a new run")
        notes.append(f"resumed with a changed config: {listed}")
    done = last.epoch if last else 0
    if last is None and int(status.get("epoch") or 0) > 0:
        raise RunError(f"'{run_dir}' finished {status['epoch']} epochs but has no checkpoint",
                       hint=f"it cannot continue; start a new run with: dltrain train {config_file}")
    epochs, written = loaded.config.training.epochs, loaded.config.training.phases
    if info is not None and info.state == "finished" and done >= epochs:
        longer = f"training.phases[{len(written) - 1}].epochs={written[-1].epochs + 5}" if written \
            else f"training.epochs={epochs + 5}"
        raise RunError(f"'{run_dir}' already finished all {epochs} epochs",
                       hint=f"to train longer: dltrain train {config_file} --resume {run_dir} --set {longer} --force")
    prepared = prepare(loaded)
    distribution = prepared.distribution
    if last is not None:
        plan = phases.plan(loaded)
        where = phases.position(plan, last)
        # The phase the run stands in: its trainable flags and optimizer, before the state is put back.
        phases.catch_up(prepared.model, loaded, plan, where.current,
                        lambda spec, path: prepared.compile(loaded, spec, path))
        prepared.callbacks = phases.build_callbacks(loaded, plan[where.current])
        with distribution.scope():  # the optimizer's variables are created here, mirrored like the model's
            restore_checkpoint(prepared.model, last, optimizer=not where.fresh_optimizer(plan, last.epoch))
    if distribution.is_chief:
        if changes:
            runs.atomic_write_yaml(config_file, loaded.resolved())
        report.write_resume(run_dir, loaded, bool(changes), distribution.describe())
    with distribution.taking_part():
        result = distribution.finished(fit(loaded, prepared, distribution.work_folder(run_dir), last,
                                           progress=progress, callbacks=callbacks))
    result.resumed_from = done
    result.notes = notes + result.notes
    return result
