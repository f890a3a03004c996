"""Sweeps with real Optuna and real worker processes on tiny synthetic data: exactly N trials with 2 workers,
the best trial retrained from its config.yaml, pruning, a failed trial, SIGKILL then --resume, and two
`dltrain sweep` processes sharing one study in a real PostgreSQL server."""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT, SYNTHETIC
from dltrain.runs import folders as runs
from dltrain.cli import app
from dltrain.config.yamlsource import read_yaml

runner = CliRunner()
TINY = SYNTHETIC + "  tensorboard: false\n"
SWEEP = TINY + """\
sweep:
  metric: {name: val_accuracy, goal: maximize}
  method: random
  trials: 4
  parameters:
    optimizer.Adam.learning_rate: {distribution: log_uniform_values, min: 1.0e-3, max: 1.0e-1}
    model.layers[0].Dense.units: {values: [8, 32]}
"""
# Grid order is the order written: a good trial, one the median pruner stops after epoch 1, one that diverges.
PRUNING = TINY.replace("epochs: 2", "epochs: 3") + """\
sweep:
  metric: {name: val_accuracy, goal: maximize}
  method: grid
  parameters:
    optimizer.Adam.learning_rate: {values: [0.05, 1.0e-7, 1.0e+30]}
  early_terminate: {type: median, min_iter: 1, n_startup_trials: 1}
"""
# Epochs long enough (125 single steps) to kill a trial in the middle of one.
SLOW = SWEEP.replace("train_size: 240", "train_size: 4000").replace("epochs: 2", "epochs: 3").replace(
    "  tensorboard: false\n", "  tensorboard: false\n  steps_per_execution: 1\n").replace("trials: 4", "trials: 3")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def sweep_folder(output: str) -> Path:
    return Path(re.search(r"^sweep folder: (.+)$", output, re.M).group(1))


def leaderboard(folder: Path) -> list[dict[str, str]]:
    with open(folder / "leaderboard.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def load_study(folder: Path, storage: object = None):
    """The sweep's Optuna study, from its journal file unless `storage` is given."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if storage is None:
        storage = JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    return optuna.load_study(study_name="tiny", storage=storage)


def study_states(folder: Path, storage: object = None) -> list[str]:
    return [t.state.name for t in load_study(folder, storage).get_trials()]


def trial_errors(folder: Path) -> dict[int, str]:
    """Each failed trial's error, for an assertion's message."""
    return {t.number: t.user_attrs.get("error") for t in load_study(folder).get_trials() if t.state.name == "FAIL"}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A finished 4-trial sweep run by 2 worker processes."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "sweep.yaml").write_text(SWEEP)
    result = invoke("sweep", root / "sweep.yaml", "--workers", 2, "--output-dir", root / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    return sweep_folder(result.stdout), result


def test_two_workers_finish_exactly_n_trials(two_workers):
    folder, result = two_workers
    assert study_states(folder) == ["COMPLETE"] * 4
    assert sorted(p.name for p in (folder / "logs").iterdir()) == ["worker-1.log", "worker-2.log"]
    ran = [int(n) for log in (folder / "logs").iterdir() for n in re.findall(r"^trial (\d+): COMPLETE$",
                                                                             log.read_text(), re.M)]
    assert sorted(ran) == [0, 1, 2, 3]
    assert "4 of 4 trials finished (4 complete, 0 pruned, 0 failed); best first" in result.stdout
    assert f"best config: {leaderboard(folder)[0]['run_dir']}/config.yaml" in result.stdout


def test_leaderboard_is_best_first_with_each_runs_metric(two_workers):
    folder, _ = two_workers
    rows = leaderboard(folder)
    assert list(rows[0]) == ["trial", "state", "value", "optimizer.Adam.learning_rate",
                             "model.layers[0].Dense.units", "run_dir"]
    values = [float(r["value"]) for r in rows]
    assert values == sorted(values, reverse=True)
    for row in rows:
        run_dir = Path(row["run_dir"])
        assert run_dir.parent == folder.absolute()
        # The metric of the epoch whose weights the run kept: the same number as metrics.json.
        assert float(row["value"]) == read_json(run_dir / "metrics.json")["val"]["accuracy"]
        config, _ = read_yaml(run_dir / "config.yaml")
        assert "sweep" not in config and config["name"] == f"tiny-trial{int(row['trial']):03d}"
        assert config["optimizer"]["Adam"]["learning_rate"] == float(row["optimizer.Adam.learning_rate"])
        assert config["model"]["layers"][0]["Dense"]["units"] == int(row["model.layers[0].Dense.units"])
        assert runs.read_status(run_dir)["state"] == "finished"
    assert {p.name for p in (folder / "plots").iterdir()} == {
        "optimization_history.png", "param_importances.png", "parallel_coordinate.png"}


def test_best_trial_retrains_from_its_config_to_the_same_value(two_workers, tmp_path: Path):
    folder, _ = two_workers
    best = leaderboard(folder)[0]
    result = invoke("train", Path(best["run_dir"]) / "config.yaml", "--output-dir", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    (again,) = tmp_path.iterdir()
    assert read_json(again / "metrics.json")["val"]["accuracy"] == float(best["value"])


def test_run_commands_work_on_trials(two_workers, tmp_path: Path):
    folder, _ = two_workers
    first, second = (Path(r["run_dir"]) for r in leaderboard(folder)[:2])
    listed = invoke("runs", folder, "--json")
    assert listed.exit_code == 0, listed.output
    assert sorted(r["name"] for r in json.loads(listed.stdout)) == sorted(
        Path(r["run_dir"]).name for r in leaderboard(folder))
    assert all(r["state"] == "finished" for r in json.loads(listed.stdout))
    compared = invoke("compare", first, second)
    assert compared.exit_code == 0 and "optimizer.Adam.learning_rate" in compared.stdout, compared.output
    scored = invoke("evaluate", first, "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout) == pytest.approx(read_json(first / "metrics.json")["test"])
    saved = invoke("save", first, "--out", tmp_path / "model.keras")
    assert saved.exit_code == 0 and (tmp_path / "model.keras").is_file(), saved.output
    assert invoke("plot", first, "--curves-only").exit_code == 0


def test_resume_refuses_a_changed_sweep_section_then_force_adds_trials(two_workers, tmp_path: Path):
    folder, _ = two_workers
    changed = tmp_path / "sweep.yaml"
    changed.write_text(SWEEP.replace("trials: 4", "trials: 5").replace("max: 1.0e-1", "max: 2.0e-1"))
    refused = invoke("sweep", changed, "--resume", folder, "--no-progress")
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"error: the config changed since sweep '{folder}' started: sweep.trials (4 -> 5), "
        "sweep.parameters.optimizer.Adam.learning_rate.max (0.1 -> 0.2) (pass --force to continue with the "
        "changed config, or start a new sweep)\n")
    other_choices = tmp_path / "choices.yaml"
    other_choices.write_text(SWEEP.replace("values: [8, 32]", "values: [8, 64]"))
    refused = invoke("sweep", other_choices, "--resume", folder, "--force", "--no-progress")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "error: sweep.parameters.model.layers[0].Dense.units: the study sampled model.layers[0].Dense.units from "
        "values [8, 32]; Optuna cannot change that within a study (keep it, give the new values to a new sweep, "
        "or change only min and max)\n")
    shutil.copytree(folder, tmp_path / "copy")  # the module's sweep stays as other tests read it
    forced = invoke("sweep", changed, "--resume", tmp_path / "copy", "--force", "--no-progress")
    assert forced.exit_code == 0, forced.output
    assert study_states(tmp_path / "copy") == ["COMPLETE"] * 5
    assert len(leaderboard(tmp_path / "copy")) == 5


def test_every_distribution_samples_what_the_config_takes(write_config):
    import math

    import optuna

    from dltrain.load import load_config
    from dltrain.sweep.space import check_space, overrides

    config = write_config(TINY + """\
sweep:
  metric: {name: val_loss}
  method: random
  trials: 30
  parameters:
    model.layers[0].Dense.units: {min: 8, max: 64, q: 8}
    model.layers[1].Dropout.rate: {min: 0.0, max: 0.5, q: 0.1}
    optimizer.Adam.learning_rate: {distribution: log_uniform, min: -9.2, max: -4.6}
    training.batch_size: {distribution: log_uniform_values, min: 8, max: 64}
    model.input_shape: {values: [[8], [8, 1]]}
""")
    space = check_space(load_config(config))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        values = space.suggest(study.ask())
        assert values["model.layers[0].Dense.units"] in range(8, 65, 8)
        assert round(values["model.layers[1].Dropout.rate"] * 10, 6).is_integer()
        assert math.exp(-9.2) <= values["optimizer.Adam.learning_rate"] <= math.exp(-4.6)
        assert type(values["training.batch_size"]) is int and 8 <= values["training.batch_size"] <= 64
        assert values["model.input_shape"] in ([8], [8, 1])  # lists travel through Optuna as JSON text
        assert load_config(config, overrides(values)).config.model.input_shape == values["model.input_shape"]


def test_samplers_and_pruners_are_optunas_own(write_config):
    import optuna

    from dltrain.load import load_config
    from dltrain.sweep.study import pruner, sampler

    def sweep(extra: str):
        return load_config(write_config(SWEEP.replace("  method: random\n", extra))).config.sweep

    assert isinstance(sampler(sweep("")), optuna.samplers.TPESampler)
    assert isinstance(sampler(sweep("  method: cmaes\n")), optuna.samplers.CmaEsSampler)
    assert isinstance(pruner(sweep(""), 5), optuna.pruners.NopPruner)
    median = pruner(sweep("  early_terminate: {type: median, min_iter: 2, n_startup_trials: 3}\n"), 5)
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_warmup_steps, median._n_startup_trials) == (2, 3)
    hyperband = pruner(sweep("  early_terminate: {type: hyperband, min_iter: 1, eta: 2}\n"), 9)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._max_resource, hyperband._reduction_factor) == (1, 9, 2)


def test_live_display_shows_done_running_and_best():
    from rich.console import Console

    from dltrain.sweep.board import Row
    from dltrain.sweep.live import SweepDisplay

    key = "optimizer.Adam.learning_rate"
    console = Console(record=True, width=100)
    display = SweepDisplay("tiny", "val_accuracy", [key], 5, console=console)
    rows = [Row(2, "COMPLETE", 0.91, {key: 0.01}, "/x", 5), Row(0, "PRUNED", 0.4, {key: 0.3}, "/y", 2),
            Row(3, "RUNNING", None, {key: 0.003}, "/z", 2), Row(1, "FAIL", None, {key: 9.0}, "/w")]
    console.print(display.render(rows, 6))
    text = console.export_text()
    assert text.splitlines()[0] == "sweep tiny: 3/6 trials done (1 pruned, 1 failed); best val_accuracy 0.9100 (trial 2)"
    assert re.search(r"│ 3\s+│ 2/5\s+│ 0\.003\s+│", text), text
    assert "0.01 " not in text  # finished trials are not in the running table


def test_train_ignores_the_sweep_section(tmp_path: Path):
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    result = invoke("train", tmp_path / "sweep.yaml", "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "out").iterdir()
    assert run.name.startswith("tiny-2") and read_json(run / "metrics.json")["epochs"] == 2
    config, _ = read_yaml(run / "config.yaml")
    assert "sweep" not in config and config["optimizer"] == {"Adam": {"learning_rate": 0.01}}
    # Resumed with the sweep config itself: the sweep section is no change to the run.
    with open(run / "status.json", "r+") as handle:  # as if killed in its last epoch, after the checkpoint
        status = json.load(handle)
        status.update(state="interrupted", epoch=1)
        handle.seek(0), handle.truncate(), json.dump(status, handle)
    resumed = invoke("train", tmp_path / "sweep.yaml", "--resume", run, "--no-progress")
    assert resumed.exit_code == 0, resumed.output


def test_pruning_prunes_and_a_failed_trial_keeps_its_error(tmp_path: Path):
    (tmp_path / "prune.yaml").write_text(PRUNING)
    result = invoke("sweep", tmp_path / "prune.yaml", "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    folder = sweep_folder(result.stdout)
    rows = leaderboard(folder)
    assert [(r["trial"], r["state"]) for r in rows] == [("0", "COMPLETE"), ("1", "PRUNED"), ("2", "FAIL")]
    pruned, failed = Path(rows[1]["run_dir"]), Path(rows[2]["run_dir"])
    history = list(csv.DictReader((pruned / "history.csv").open()))
    assert len(history) == 1 and float(rows[1]["value"]) == float(history[0]["val_accuracy"])
    status = runs.read_status(pruned)
    assert status["state"] == "pruned"
    assert status["message"] == f"pruned by the median pruner after epoch 1 (val_accuracy {float(rows[1]['value']):.4f})"
    assert (pruned / "model.keras").is_file()  # a pruned trial is still a whole run folder
    assert rows[2]["value"] == ""
    status = runs.read_status(failed)
    assert status["state"] == "diverged" and status["message"].startswith("training diverged: the loss became")
    assert "1 pruned, 1 failed" in result.stdout


def test_a_metric_the_model_does_not_log_is_refused_before_any_trial(tmp_path: Path):
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP.replace("name: val_accuracy", "name: val_acurracy"))
    result = invoke("sweep", config, "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 1
    line = SWEEP.splitlines().index("  metric: {name: val_accuracy, goal: maximize}") + 1
    assert result.stderr == (f"error: {config}:{line}:12: sweep.metric.name: the model does not log 'val_acurracy' "
                             "(did you mean 'val_accuracy' or 'accuracy'?)\n")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# A config that names the user's own layer: its module leaves a marker file beside itself when imported.
CUSTOM_MODULE = """\
import pathlib

pathlib.Path(__file__).with_name("imported.txt").write_text("imported")

import keras


class Halve(keras.layers.Layer):
    def call(self, x):
        return x * 0.5
"""
CUSTOM = SWEEP.replace("    - Dense: {units: 16, activation: relu}",
                       "    - Halve\n    - Dense: {units: 16, activation: relu}") \
    .replace("model.layers[0].Dense", "model.layers[1].Dense").replace("trials: 4", "trials: 1") \
    .replace("  epochs: 2", "  epochs: 1") + "custom_objects: [sweep_probe_layers:Halve]\n"


@pytest.fixture
def custom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CUSTOM beside its module; the commands run from another folder, with sys.path and modules restored."""
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "sweep_probe_layers.py").write_text(CUSTOM_MODULE)
    (tmp_path / "project" / "custom.yaml").write_text(CUSTOM)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "sweep_probe_layers", raising=False)
    yield tmp_path / "project" / "custom.yaml"
    sys.modules.pop("sweep_probe_layers", None)


def test_a_sweep_of_custom_objects_needs_the_users_word_like_train(custom: Path, tmp_path: Path):
    refused = invoke("sweep", custom, "--output-dir", tmp_path / "out", "--no-progress")
    assert refused.exit_code == 1
    trained = invoke("train", custom, "--output-dir", tmp_path / "out", "--no-progress")
    assert refused.stderr == trained.stderr == (
        f"error: {custom}:{CUSTOM.splitlines().index('custom_objects: [sweep_probe_layers:Halve]') + 1}:1: "
        "custom_objects: importing sweep_probe_layers:Halve would run its code (pass --trust-code if the code is "
        "yours or you trust it)\n")
    assert not (tmp_path / "out").exists()  # refused before the sweep folder or any trial
    assert not (custom.parent / "imported.txt").exists()

    # DLTRAIN_TRUST_CODE=1 is --trust-code; the worker processes and every trial get the word.
    trusted = runner.invoke(app, ["sweep", str(custom), "--output-dir", str(tmp_path / "out"), "--no-progress"],
                            env={"DLTRAIN_TRUST_CODE": "1"})
    assert trusted.exit_code == 0, trusted.output
    folder = sweep_folder(trusted.stdout)
    assert study_states(folder) == ["COMPLETE"]
    assert (folder / "pythonpath.txt").read_text().splitlines()[0] == str(custom.parent)
    for row in leaderboard(folder):
        trial = Path(row["run_dir"])
        assert (trial / "pythonpath.txt").read_text() == f"{custom.parent}\n"
        config, _ = read_yaml(trial / "config.yaml")
        assert config["custom_objects"] == ["sweep_probe_layers:Halve"] and "sweep" not in config


def test_check_config_and_explain_know_the_sweep_section(tmp_path: Path):
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    checked = invoke("check", tmp_path / "sweep.yaml")
    assert checked.exit_code == 0, checked.output
    assert "sweep: 2 parameters, each value builds the model" in checked.stdout
    explained = invoke("config", tmp_path / "sweep.yaml", "--explain")
    assert explained.exit_code == 0, explained.output
    line = SWEEP.splitlines().index("  method: random") + 1
    assert re.search(rf'^sweep\.method: "random" +# {re.escape(str(tmp_path / "sweep.yaml"))}:{line}:3$',
                     explained.stdout, re.M), explained.stdout
    from dltrain.model.schema import config_schema

    import jsonschema
    import yaml

    schema = config_schema()
    jsonschema.validate(yaml.safe_load(SWEEP), schema)
    with pytest.raises(jsonschema.ValidationError, match="'trails' was unexpected"):
        jsonschema.validate(yaml.safe_load(SWEEP.replace("trials: 4", "trails: 4")), schema)


def start_sweep(*args: object) -> subprocess.Popen:
    """`python -m dltrain sweep ...` in a real process of its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DLTRAIN_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "dltrain", "sweep", *map(str, args), "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def epochs_done(output: Path) -> dict[Path, int]:
    return {f.parent: (runs.read_status(f.parent) or {}).get("epoch") or 0 for f in output.glob("*/*/status.json")}


def wait_for_epoch(process: subprocess.Popen, output: Path, before: dict[Path, int] | None = None) -> Path:
    """A trial's run folder once this process trained it one more epoch, in the middle of its training
    (more epochs done than `before`, fewer than all)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for status_file in output.glob("*/*/status.json"):
            status = runs.read_status(status_file.parent) or {}
            if status.get("state") == "running" and (before or {}).get(status_file.parent, 0) \
                    < (status.get("epoch") or 0) < status.get("epochs", 0):
                return status_file.parent
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()
    raise AssertionError("no trial finished an epoch in time")


def _children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


@pytest.mark.slow
def test_sigkill_mid_trial_then_sigterm_then_resume_finishes_exactly_n(tmp_path: Path):
    config = tmp_path / "slow.yaml"
    config.write_text(SLOW)
    driver = start_sweep(config, "--workers", 2, "--output-dir", tmp_path / "out")
    killed = wait_for_epoch(driver, tmp_path / "out")
    workers = _children(driver.pid)
    for pid in workers:  # the workers first: otherwise they see their parent die and stop cleanly
        os.kill(pid, signal.SIGKILL)
    driver.kill()
    driver.communicate()
    while any(Path(f"/proc/{pid}").exists() for pid in workers):  # until init has reaped them
        time.sleep(0.05)
    folder = killed.parent
    assert "RUNNING" in study_states(folder) and runs.run_info(killed).state == "interrupted"

    # Resumed, then stopped by SIGTERM: the sweep forwards it, every trial stops at a batch boundary.
    before = epochs_done(tmp_path / "out")
    driver = start_sweep(config, "--resume", folder, "--workers", 2)
    stopped = wait_for_epoch(driver, tmp_path / "out", before)
    driver.send_signal(signal.SIGTERM)
    _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 143, stderr
    assert re.search(r"^interrupted: stopped by SIGTERM: \d of 3 trials finished; the running trials saved their "
                     rf"last whole epoch \(resume with: dltrain sweep {folder}/sweep.yaml --resume {folder}\)$",
                     stderr, re.M), stderr
    assert runs.read_status(stopped)["message"] == "stopped by SIGTERM"

    resumed = invoke("sweep", config, "--resume", folder, "--workers", 2, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert study_states(folder) == ["COMPLETE"] * 3, trial_errors(folder)
    trials = sorted(p for p in folder.iterdir() if (p / "config.yaml").is_file())
    assert len(trials) == 3 and {killed, stopped} <= set(trials)  # finished in their own folders
    for trial in {killed, stopped}:  # from their checkpoints
        assert read_json(trial / "env.json").get("resumes") and read_json(trial / "metrics.json")["epochs"] == 3


def open_only(tmp_path: Path, trials: int) -> Path:
    """A sweep folder and its study, as `dltrain sweep` leaves them before it starts any worker."""
    from dltrain.sweep import driver

    (tmp_path / "sweep.yaml").write_text(SWEEP.replace("trials: 4", f"trials: {trials}"))
    sweep = driver.open_sweep(tmp_path / "sweep.yaml", [], output_dir=tmp_path / "out")
    os.close(sweep.lock_fd)
    return sweep.path


def test_a_trial_killed_before_its_first_status_is_trained_by_the_worker_that_adopts_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from dltrain.training import report
    from dltrain.sweep import worker

    folder = open_only(tmp_path, 1)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the worker's process ends here, as under SIGKILL: nothing else runs

    with monkeypatch.context() as patch:  # after config.yaml and dataset.json, before status.json
        patch.setattr(report, "write_start", killed)
        with pytest.raises(KeyboardInterrupt):
            worker.work(folder)
    (run_dir,) = [p for p in folder.iterdir() if (p / "config.yaml").is_file()]
    assert not (run_dir / "status.json").exists() and study_states(folder) == ["RUNNING"]

    assert worker.work(folder) == 1
    assert study_states(folder) == ["COMPLETE"]
    assert runs.read_status(run_dir)["state"] == "finished" and read_json(run_dir / "metrics.json")["epochs"] == 2


def test_a_signal_while_a_trial_finishes_stops_the_worker_before_the_next_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from conftest import signal_while_finishing
    from dltrain.errors import RunInterrupted
    from dltrain.sweep import worker

    folder = open_only(tmp_path, 2)
    with monkeypatch.context() as patch:
        signal_while_finishing(patch, signal.SIGTERM)  # `dltrain sweep` forwards it while the test split is scored
        with pytest.raises(RunInterrupted, match=r"^stopped by SIGTERM while trial 0 was finishing; "
                                                 r"it finished \(COMPLETE\)$") as stopped:
            worker.work(folder)
    assert stopped.value.exit_code == 143
    assert study_states(folder) == ["COMPLETE", "WAITING"]


@pytest.fixture
def postgres() -> str:
    """A PostgreSQL server of its own on a free localhost port; its URL."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.skip("PostgreSQL server binaries not installed (Debian's postgresql package; .ci/run installs it)")
    bin_dir = Path(binaries[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="dltrain-pg-"))
    # PostgreSQL refuses to run as root: as root, the server runs as the postgres user in a folder it owns.
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = root / "data"
    subprocess.run(as_user + [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                              "--no-sync"], check=True, capture_output=True)
    subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
                              "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_sweep_processes_share_one_postgresql_study(tmp_path: Path, postgres: str):
    config = tmp_path / "shared.yaml"
    config.write_text(SWEEP.replace("  method: random\n", f"  method: random\n  storage: {postgres}\n"))
    processes = [start_sweep(config, "--output-dir", tmp_path / f"machine{i}") for i in (1, 2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert "note: joined study 'tiny'" in outputs[0][1] + outputs[1][1]
    assert study_states(tmp_path, postgres) == ["COMPLETE"] * 4
    folders = [sweep_folder(out) for out, _ in outputs]
    ran = sorted(int(n) for f in folders for p in f.iterdir() if (p / "config.yaml").is_file()
                 for n in re.findall(r"-trial(\d+)-", p.name))
    assert ran == [0, 1, 2, 3]  # every trial ran once, in one of the two sweep folders
    for folder in folders:  # each machine's leaderboard shows the whole study
        assert sorted(r["trial"] for r in leaderboard(folder)) == ["0", "1", "2", "3"]


BLOCKS = SWEEP.replace("""model:
  layers:
    - Dense: {units: 16, activation: relu}
""", """blocks:
  dense_drop:
    params: {units: 16}
    layers:
      - Dense: {units: $units, activation: relu}
model:
  layers:
    - dense_drop: {units: 16}
""")


def test_a_sweep_of_a_config_with_blocks_names_the_expanded_layers(tmp_path: Path):
    config = tmp_path / "blocks.yaml"
    config.write_text(BLOCKS)
    checked = invoke("check", config)  # model.layers[0] is the block's Dense once expanded
    assert checked.exit_code == 0, checked.output
    assert "sweep: 2 parameters, each value builds the model" in checked.stdout
    config.write_text(BLOCKS.replace("model.layers[0].Dense.units:", "blocks.dense_drop.params.units:"))
    refused = invoke("check", config)
    line = BLOCKS.splitlines().index("    model.layers[0].Dense.units: {values: [8, 32]}") + 1
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"error: {config}:{line}:5: sweep.parameters.blocks.dense_drop.params.units: blocks are expanded into "
        "model.layers before any trial runs (sweep the expanded layer's key, as `dltrain config` prints it "
        "(model.layers[N]...))\n")
