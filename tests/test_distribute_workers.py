"""Multi-worker training with real processes on localhost: 2 workers via TF_CONFIG (workers only, started by
`--workers 2`, and a chief plus a worker), and a job killed after epoch 1 then resumed on every worker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ROOT, SYNTHETIC
from dltrain.runs import folders as runs
from dltrain.cli import app
from dltrain.distribute.cluster import tf_config
from dltrain.distribute.launch import free_ports

# The weights each process ends with go to a file of its own (a worker's folder is deleted), and a job
# can be held before its second epoch while a file exists, to be killed there.
HELPERS = '''
import json, os, time
from pathlib import Path

import numpy as np
import keras


def task() -> str:
    found = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {"type": "single", "index": 0}
    return f"{found['type']}{found['index']}"


class SaveWeights(keras.callbacks.Callback):
    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def on_train_end(self, logs=None):
        np.savez(Path(self.folder) / f"{task()}.npz", *self.model.get_weights())


class HoldWhile(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_begin(self, epoch, logs=None):
        while epoch >= 1 and Path(self.path).exists():
            time.sleep(0.05)
'''
# No Dropout: each replica draws masks for its half of a batch, which differ from one process's draws.
# 200 training examples in batches of 32 (the last of 8): 7 steps an epoch, split between the workers.
BASE = SYNTHETIC.replace("    - Dropout: {rate: 0.1}\n", "").replace("train_size: 240", "train_size: 250") \
    .replace("validation_split: 0.25", "validation_split: 0.2") \
    .replace("metrics: [accuracy]\n", "metrics: [accuracy]\ncustom_objects: [helpers:SaveWeights, helpers:HoldWhile]\n")
# Measured: see test_two_workers... (float32 sums of the two halves of each batch, in another order).
TOLERANCE = 1e-5


def config(folder: Path, hold: Path | None = None) -> Path:
    """The config, the helpers beside it, and where the weights go."""
    (folder / "helpers.py").write_text(HELPERS)
    (folder / "weights").mkdir(exist_ok=True)
    callbacks = f"  callbacks:\n    - SaveWeights: {{folder: {folder / 'weights'}}}\n"
    if hold is not None:
        callbacks += f"    - HoldWhile: {{path: {hold}}}\n"
    path = folder / "config.yaml"
    path.write_text(BASE + callbacks)
    return path


def environment(folder: Path) -> dict[str, str]:
    """A process's environment: this tree, offline, no cluster of the caller's, and a temp folder to inspect."""
    (folder / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DLTRAIN_OFFLINE": "1", "TMPDIR": str(folder / "tmp")}
    env.pop("TF_CONFIG", None)
    return env


def dltrain(*args: object, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dltrain", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def model_weights(run: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(run / runs.MODEL_FILE, safe_mode=True).get_weights()


def difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [w.shape for w in a] == [w.shape for w in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def only_run(output: Path) -> Path:
    """The one run folder in `output`: no other process wrote one."""
    found = list(output.iterdir())
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config trained in one process (this one), no cluster: the run folder."""
    root = tmp_path_factory.mktemp("single")
    old = os.environ.pop("TF_CONFIG", None)
    try:
        result = CliRunner().invoke(app, ["train", str(config(root)), "--output-dir", str(root / "out"),
                                          "--no-progress", "--trust-code"])
    finally:
        if old is not None:
            os.environ["TF_CONFIG"] = old
    assert result.exit_code == 0, result.output
    return only_run(root / "out")


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, float]:
    """`dltrain train CONFIG --workers 2`: its folder, the chief's output, and how long it took."""
    root = tmp_path_factory.mktemp("workers")
    start = time.perf_counter()
    # The config imports the test's own callbacks: --trust-code, which the launcher passes on to every worker.
    code, out, err = finish(dltrain("train", config(root), "--workers", 2, "--trust-code", "--output-dir",
                                    root / "out", "--no-progress", env=environment(root)))
    assert code == 0, err[-3000:]
    return root, out, time.perf_counter() - start


def test_two_workers_train_together_and_only_the_chief_writes(two_workers, single: Path):
    root, out, seconds = two_workers
    run = only_run(root / "out")
    assert f"run folder: {run}" in out  # the chief's own output, through the launcher
    # Both workers end with the same weights: the chief's are model.keras.
    chief, worker = weights(root / "weights" / "worker0.npz"), weights(root / "weights" / "worker1.npz")
    assert difference(chief, worker) == 0.0
    assert difference(chief, model_weights(run)) == 0.0
    # ... and those of one process within float32 rounding of the other summation order.
    measured = difference(chief, model_weights(single))
    print(f"2 workers vs 1 process: max weight difference {measured:.2e}, {seconds:.1f} s")
    assert measured < TOLERANCE
    # The run folder holds what a one-process run's does; the other worker's folder is gone.
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in single.iterdir())
    assert sorted(os.listdir(root / "tmp")) == []
    assert runs.read_status(run)["state"] == "finished"
    env = json.loads((run / "env.json").read_text())["distribute"]
    assert env == {"strategy": "multi_worker", "replicas": 2, "workers": 2, "task": "worker:0",
                   "devices": ["/job:worker/replica:0/task:0/device:CPU:0"]}
    metrics = [json.loads((r / runs.METRICS_FILE).read_text()) for r in (run, single)]
    for split in ("train", "val", "test"):
        for key, value in metrics[1][split].items():
            assert abs(metrics[0][split][key] - value) < TOLERANCE, (split, key)


def test_a_chief_and_a_worker_train_together(tmp_path: Path, two_workers):
    path = config(tmp_path)
    chief_port, worker_port = free_ports(2)
    tasks = {"chief": [f"localhost:{chief_port}"], "worker": [f"localhost:{worker_port}"]}
    env = environment(tmp_path)
    started = [dltrain("train", path, "--output-dir", tmp_path / "out", "--no-progress", "--trust-code",
                       env={**env, "TF_CONFIG": tf_config(tasks, kind, 0)}) for kind in ("chief", "worker")]
    (chief_code, chief_out, chief_err), (worker_code, worker_out, worker_err) = [finish(p) for p in started]
    assert (chief_code, worker_code) == (0, 0), chief_err[-2000:] + worker_err[-2000:]
    run = only_run(tmp_path / "out")
    assert f"run folder: {run}" in chief_out
    assert worker_out.strip().endswith("worker:0 of 2: trained with the chief, which wrote the run folder")
    chief, worker = weights(tmp_path / "weights" / "chief0.npz"), weights(tmp_path / "weights" / "worker0.npz")
    assert difference(chief, worker) == 0.0
    # The same job as two workers without a chief: the same weights, bit for bit.
    assert difference(chief, weights(two_workers[0] / "weights" / "worker0.npz")) == 0.0
    assert sorted(os.listdir(tmp_path / "tmp")) == []
    assert json.loads((run / "env.json").read_text())["distribute"]["task"] == "chief:0"


@pytest.mark.slow
def test_a_job_killed_after_epoch_1_resumes_on_every_worker(tmp_path: Path, two_workers):
    hold = tmp_path / "hold"
    hold.touch()
    path = config(tmp_path, hold)
    env = environment(tmp_path)
    tasks = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = [dltrain("train", path, "--output-dir", tmp_path / "out", "--no-progress", "--trust-code",
                       env={**env, "TF_CONFIG": tf_config(tasks, "worker", i)}) for i in (0, 1)]
    deadline = time.monotonic() + 600
    while not any((s := runs.read_status(r)) and s.get("epoch") == 1 for r in (tmp_path / "out").glob("*")):
        assert all(w.poll() is None for w in workers) and time.monotonic() < deadline, workers[0].communicate()
        time.sleep(0.05)
    for worker in workers:  # kill -9 every worker, held before epoch 2
        worker.kill()
    for worker in workers:
        worker.communicate()
    hold.unlink()
    run = only_run(tmp_path / "out")
    assert runs.run_info(run).state == "interrupted"
    killed = sorted(os.listdir(tmp_path / "tmp"))  # kill -9 leaves a worker's temporary folder; nothing else can
    code, out, err = finish(dltrain("train", path, "--resume", run, "--workers", 2, "--trust-code", "--no-progress",
                                    env=env))
    assert code == 0, err[-3000:]
    assert "resumed after epoch 1" in out
    assert runs.read_status(run)["state"] == "finished"
    chief, worker = weights(tmp_path / "weights" / "worker0.npz"), weights(tmp_path / "weights" / "worker1.npz")
    assert difference(chief, worker) == 0.0
    # Resumed, the job ends exactly where the uninterrupted one did.
    assert difference(chief, weights(two_workers[0] / "weights" / "worker0.npz")) == 0.0
    assert only_run(tmp_path / "out") == run
    assert sorted(os.listdir(tmp_path / "tmp")) == killed
