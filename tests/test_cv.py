"""`dltrain cv`: stratified folds cut by the data layer, each fold an ordinary run folder, cv.json / cv.csv with
the mean and standard deviation, --resume finishing only the missing folds, --workers 2."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SYNTHETIC, cli, signal_while_finishing
from dltrain.config import DatasetConfig
from dltrain.data import assign_folds, load

CV = SYNTHETIC.replace("train_size: 240", "train_size: 150").replace("  validation_split: 0.25\n", "").replace(
    "epochs: 2", "epochs: 1")


def cv_folder(output: str) -> Path:
    return Path(re.search(r"^cv folder: (.+)$", output, re.M).group(1))


def fold_metrics(cv_dir: Path, index: int) -> dict[str, float]:
    found = json.loads((cv_dir / f"fold-{index}" / "metrics.json").read_text())
    return {f"{split}_{k}": v for split in ("val", "test", "train") for k, v in found[split].items()}


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished 3-fold cross-validation of the tiny config, in this process; tests read it or copy it."""
    root = tmp_path_factory.mktemp("cv")
    (root / "cv.yaml").write_text(CV)
    result = cli("cv", root / "cv.yaml", "--folds", 3, "--output-dir", root / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    return cv_folder(result.stdout), result.output


def test_folds_are_stratified_disjoint_and_cover_the_training_split():
    y = np.repeat(np.arange(4), [50, 31, 12, 7]).astype(np.int64)
    fold = assign_folds(y, 5, seed=11, stratified=True)
    assert sorted(set(fold)) == [0, 1, 2, 3, 4]  # every example in exactly one fold
    sizes = np.bincount(fold)
    assert sizes.sum() == len(y) and sizes.max() - sizes.min() <= 1
    for c in range(4):  # each class spread over the folds to within one example
        per_fold = np.bincount(fold[y == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1, (c, per_fold)
    assert np.array_equal(fold, assign_folds(y, 5, seed=11, stratified=True))  # a function of the seed
    assert not np.array_equal(fold, assign_folds(y, 5, seed=12, stratified=True))
    plain = assign_folds(np.linspace(0, 1, 23), 4, seed=1, stratified=False)  # regression: plain folds
    assert sorted(np.bincount(plain)) == [5, 6, 6, 6]


def test_the_data_layer_validates_on_one_fold_and_keeps_the_test_split():
    base = {"name": "synthetic", "input_shape": [3], "num_classes": 3, "train_size": 90, "test_size": 20}
    whole = load(DatasetConfig(**base, validation_split=0.0), seed=5)
    seen, tests = [], []
    for index in (1, 2, 3):
        splits = load(DatasetConfig(**base, fold={"index": index, "folds": 3}), seed=5)
        assert len(splits.train) + len(splits.val) == len(whole.train) == 90
        share = np.bincount(whole.train.y, minlength=3) / 3  # stratified: each class's third, to within one
        assert np.all(np.abs(np.bincount(splits.val.y, minlength=3) - share) < 1)
        assert splits.info.fold == {"index": index, "folds": 3, "stratified": True}
        seen.append({tuple(row) for row in splits.val.x.round(6)})
        tests.append(splits.test.x)
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])  # disjoint validation folds
    assert set().union(*seen) == {tuple(row) for row in whole.train.x.round(6)}  # together: the training split
    assert all(np.array_equal(t, whole.test.x) for t in tests)  # the test split stays held out, unchanged


def test_cv_writes_each_fold_and_the_mean_and_std(done):
    cv_dir, output = done
    assert sorted(p.name for p in cv_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) == \
        ["fold-1", "fold-2", "fold-3"]
    folds = [fold_metrics(cv_dir, i) for i in (1, 2, 3)]
    summary = json.loads((cv_dir / "cv.json").read_text())
    assert summary["folds"] == 3 and summary["stratified"] is True and summary["finished"] == 3
    assert [r["metrics"] for r in summary["runs"]] == folds
    for name in ("val_accuracy", "val_loss", "test_accuracy", "train_loss"):
        values = [f[name] for f in folds]
        assert summary["metrics"][name]["mean"] == pytest.approx(statistics.mean(values), abs=1e-12)
        assert summary["metrics"][name]["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
    rows = list(csv.DictReader((cv_dir / "cv.csv").open()))
    assert [r["fold"] for r in rows] == ["1", "2", "3", "mean", "std"]
    assert float(rows[1]["val_accuracy"]) == folds[1]["val_accuracy"]
    assert float(rows[3]["val_accuracy"]) == pytest.approx(summary["metrics"]["val_accuracy"]["mean"], abs=1e-12)
    stats = summary["metrics"]["val_accuracy"]
    assert f"val_accuracy: {stats['mean']:.4f} ± {stats['std']:.4f}" in output
    # Each fold is an ordinary run: its config names its fold, and `runs` lists the folds.
    config = (cv_dir / "fold-2" / "config.yaml").read_text()
    assert "name: tiny-fold-2\n" in config and "fold: {index: 2, folds: 3}" in config
    assert "validation_split" not in config  # the fold takes its place
    assert json.loads((cv_dir / "fold-2" / "dataset.json").read_text())["sizes"] == \
        {"train": 100, "validation": 50, "test": 60}
    listed = cli("runs", cv_dir)
    assert listed.exit_code == 0, listed.output
    assert all(re.search(rf"fold-{i}\s+│ finished", listed.stdout) for i in (1, 2, 3))


def test_resume_trains_only_the_missing_fold(done, tmp_path: Path):
    cv_dir = tmp_path / done[0].name
    shutil.copytree(done[0], cv_dir)
    before = json.loads((cv_dir / "cv.json").read_text())
    kept = {i: (cv_dir / f"fold-{i}" / "metrics.json").stat().st_mtime_ns for i in (1, 3)}
    shutil.rmtree(cv_dir / "fold-2")
    (cv_dir / "cv.json").unlink()
    result = cli("cv", cv_dir / "cv.yaml", "--resume", cv_dir, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "2 of 3 folds already done; running 1\n" in result.stderr
    assert re.findall(r"^fold (\d) of 3: (\w+)", result.stderr, re.M) == [("2", "training"), ("2", "finished")]
    assert {i: (cv_dir / f"fold-{i}" / "metrics.json").stat().st_mtime_ns for i in (1, 3)} == kept
    after = json.loads((cv_dir / "cv.json").read_text())
    assert after["runs"] == before["runs"]  # the same fold, the same seed: the same figures


def test_resume_checks_the_folder_the_folds_and_the_config(done, tmp_path: Path):
    cv_dir = done[0]
    stray = cli("cv", cv_dir / "cv.yaml", "--resume", tmp_path)
    assert stray.exit_code == 1
    assert stray.stderr == f"error: '{tmp_path}' is not a cv folder (it has no readable folds.json) " \
                           "(give the folder `dltrain cv` printed)\n"
    other = cli("cv", cv_dir / "cv.yaml", "--resume", cv_dir, "--folds", 5)
    assert other.exit_code == 1 and f"error: '{cv_dir}' has 3 folds, not 5" in other.stderr
    changed = cli("cv", cv_dir / "cv.yaml", "--resume", cv_dir, "--set", "training.batch_size=8")
    assert changed.exit_code == 1
    assert "the config changed since cross-validation" in changed.stderr and "training.batch_size (32 -> 8)" \
        in changed.stderr


def test_cv_refuses_a_validation_source_and_too_few_folds(write_config, tmp_path: Path):
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 3), "float32"), y=np.zeros(20, "int64"))
    data = tmp_path / "d.npz"
    config = write_config(CV.replace("  name: synthetic\n  input_shape: [8]\n  num_classes: 3\n", f"  path: {data}\n")
                          .replace("  train_size: 150\n  test_size: 60\n", f"  validation: {{path: {data}}}\n"))
    refused = cli("cv", config, "--folds", 3, "--output-dir", tmp_path / "out")
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: {config}:")
    assert "dataset.validation: cross-validation validates on folds of the training split" in refused.stderr
    assert not (tmp_path / "out").exists()
    one = cli("cv", config, "--folds", 1)
    assert one.exit_code == 2 and "Invalid value for '--folds'" in one.output


def test_a_fold_index_beyond_the_folds_is_a_config_error(write_config):
    config = write_config(CV.replace("  test_size: 60\n", "  test_size: 60\n  fold: {index: 4, folds: 3}\n"))
    result = cli("check", config)
    assert result.exit_code == 1
    assert "dataset.fold.index" in result.stderr and "fold 4 does not exist: there are 3 folds" in result.stderr


def test_two_workers_finish_two_folds_with_the_same_figures(done, tmp_path: Path):
    cv_dir = tmp_path / done[0].name
    shutil.copytree(done[0], cv_dir)
    for index in (2, 3):
        shutil.rmtree(cv_dir / f"fold-{index}")
    (cv_dir / "cv.json").unlink()
    result = cli("cv", cv_dir / "cv.yaml", "--resume", cv_dir, "--workers", 2, "--no-progress")
    assert result.exit_code == 0, result.output
    logs = sorted((cv_dir / "logs").iterdir())
    assert [p.name for p in logs] == ["worker-1.log", "worker-2.log"]
    assert all("no fold left; this worker ran 1" in p.read_text() for p in logs)  # one fold each, in parallel
    assert sorted(re.findall(r"^fold (\d) of 3: finished", result.stderr, re.M)) == ["2", "3"]
    ran = [json.loads((done[0] / "cv.json").read_text()), json.loads((cv_dir / "cv.json").read_text())]
    assert ran[0]["runs"] == ran[1]["runs"] and ran[0]["metrics"] == ran[1]["metrics"]


def test_a_signal_while_a_fold_finishes_stops_before_the_next_fold(done, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    signal_while_finishing(monkeypatch, signal.SIGTERM)
    result = cli("cv", done[0] / "cv.yaml", "--folds", 3, "--output-dir", tmp_path, "--no-progress")
    assert result.exit_code == 143, result.output
    cv_dir = cv_folder(result.stdout)
    assert (cv_dir / "fold-1" / "metrics.json").is_file() and not (cv_dir / "fold-2").exists()
    assert "interrupted: stopped by SIGTERM while fold 1 was finishing (it finished); 1 of 3 folds done" \
        in result.stderr
    assert f"resume with: dltrain cv {cv_dir / 'cv.yaml'} --resume {cv_dir}" in result.stderr


@pytest.mark.slow
def test_a_fold_killed_mid_training_resumes_from_its_checkpoint(tmp_path: Path):
    slow = CV.replace("train_size: 150", "train_size: 2000").replace("epochs: 1", "epochs: 3") \
        + "  steps_per_execution: 1\n"
    (tmp_path / "slow.yaml").write_text(slow)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DLTRAIN_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "dltrain", "cv", str(tmp_path / "slow.yaml"), "--folds", "2",
                                "--output-dir", str(tmp_path / "out"), "--no-progress"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = list((tmp_path / "out").glob("*/fold-1/status.json"))
        status = json.loads(found[0].read_text()) if found else None
        if status and status.get("state") == "running" and status.get("epoch", 0) >= 1:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    cv_dir = found[0].parent.parent
    assert not (cv_dir / "fold-2").exists()
    result = cli("cv", tmp_path / "slow.yaml", "--resume", cv_dir, "--no-progress")
    assert result.exit_code == 0, result.output
    assert re.findall(r"^fold (\d) of 2: (\w+)", result.stderr, re.M) == \
        [("1", "resuming"), ("1", "finished"), ("2", "training"), ("2", "finished")]
    history = (cv_dir / "fold-1" / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history] == ["epoch", "1", "2", "3"]
    assert len(json.loads((cv_dir / "fold-1" / "env.json").read_text())["resumes"]) == 1
    assert json.loads((cv_dir / "cv.json").read_text())["finished"] == 2
