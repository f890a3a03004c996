"""Nothing lost: resume after kill -9 / SIGTERM / a changed config, crash-safe files, the NaN guard, `dltrain runs`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
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

runner = CliRunner()

# Long enough epochs (94 single steps, ~0.3 s) for a test to signal a process in the middle of one.
SLOW = SYNTHETIC.replace("train_size: 240", "train_size: 4000").replace("epochs: 2", "epochs: 5").replace(
    "Dropout: {rate: 0.1}", "Dropout: {rate: 0.3}") + "  steps_per_execution: 1\n"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def run_folder(output: str) -> Path:
    return Path(re.search(r"^run folder: (.+)$", output.strip(), re.M).group(1))


def weights(run_dir: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(run_dir / "model.keras", safe_mode=True).get_weights()


def max_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [w.shape for w in a] == [w.shape for w in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def start_training(config: Path, output: Path) -> subprocess.Popen:
    """`python -m dltrain train` in a real process of its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DLTRAIN_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "dltrain", "train", str(config), "--output-dir", str(output),
                             "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(process: subprocess.Popen, output: Path, epoch: int, timeout: float = 90) -> Path:
    """Poll status.json until the run has finished `epoch` epochs; return its folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for status_file in output.glob(f"*/{runs.STATUS_FILE}"):
            status = runs.read_status(status_file.parent)
            if status and status.get("state") == "running" and (status.get("epoch") or 0) >= epoch:
                return status_file.parent
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.kill()
    raise AssertionError(f"no epoch {epoch} within {timeout} s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Final weights of the SLOW config trained for 5 epochs without interruption."""
    root = tmp_path_factory.mktemp("reference")
    (root / "slow.yaml").write_text(SLOW)
    result = invoke("train", root / "slow.yaml", "--output-dir", root / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    return weights(run_folder(result.stdout))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run of the tiny config; tests work on copies of it."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.yaml").write_text(SYNTHETIC)
    result = invoke("train", root / "tiny.yaml", "--output-dir", root / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    return run_folder(result.stdout)


def train_until_epoch(tmp_path: Path, epoch: int) -> tuple[subprocess.Popen, Path]:
    """Start the slow config in a real process; return once `epoch` epochs are checkpointed."""
    config = tmp_path / "slow.yaml"
    config.write_text(SLOW)
    process = start_training(config, tmp_path / "out")
    return process, wait_for_epoch(process, tmp_path / "out", epoch)


def copy_run(run: Path, to: Path) -> Path:
    copy = to / run.name
    shutil.copytree(run, copy)
    return copy


@pytest.mark.slow
def test_kill_9_in_epoch_3_of_5_then_resume_is_bit_identical(tmp_path: Path, reference):
    process, run = train_until_epoch(tmp_path, 2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert runs.read_status(run)["epoch"] == 2  # killed during epoch 3
    assert not (run / "model.keras").exists()

    listed = invoke("runs", tmp_path / "out")
    assert listed.exit_code == 0, listed.output
    assert re.search(rf"{run.name}\s+│ interrupted │ 2/5", listed.stdout)
    assert f"resume {run.name}: dltrain resume {run}" in listed.stdout

    resumed = invoke("resume", run, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith("resumed after epoch 2\n")
    assert [row.split(",")[0] for row in (run / "history.csv").read_text().splitlines()] == \
        ["epoch", "1", "2", "3", "4", "5"]
    assert runs.read_status(run)["state"] == "finished"
    final = weights(run)
    print(f"max weight difference after kill -9 and resume: {max_difference(final, reference)}")
    assert all(np.array_equal(a, b) for a, b in zip(final, reference))
    assert max_difference(final, reference) == 0.0


@pytest.mark.slow
def test_sigterm_stops_within_2_s_saves_and_resumes(tmp_path: Path, reference):
    process, run = train_until_epoch(tmp_path, 1)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stopped = process.stderr.readline()  # printed once training stopped and the model was saved
    stopped_after = time.monotonic() - sent
    stderr = stopped + process.communicate(timeout=60)[1]
    exited_after = time.monotonic() - sent
    assert process.returncode == 143, stderr
    print(f"stopped and saved {stopped_after:.2f} s after SIGTERM; process exited after {exited_after:.2f} s")
    assert stopped.startswith("interrupted: ") and stopped_after < 2.0, (stopped, stopped_after)
    done = runs.read_status(run)["epoch"]
    assert stderr.strip().endswith(
        f"interrupted: stopped by SIGTERM in epoch {done + 1}/5; the model and the checkpoint after epoch {done} "
        f"saved in {run} (resume with: dltrain resume {run})")
    status = runs.read_status(run)
    assert status["state"] == "interrupted" and status["message"] == "stopped by SIGTERM"
    assert weights(run)  # the model saved at the stop loads (safe_mode)
    assert not [p for p in run.iterdir() if p.name.startswith(".")], "temp files left behind"

    resumed = invoke("train", tmp_path / "slow.yaml", "--resume", run, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert max_difference(weights(run), reference) == 0.0


def test_changed_config_refuses_resume_and_force_continues_bit_identically(tmp_path: Path, write_config):
    config = write_config(SYNTHETIC.replace("epochs: 2", "epochs: 4"))
    full = invoke("train", config, "--output-dir", tmp_path / "full", "--no-progress")
    assert full.exit_code == 0, full.output
    short = invoke("train", config, "--set", "training.epochs=2", "--output-dir", tmp_path / "short", "--no-progress")
    assert short.exit_code == 0, short.output
    run = run_folder(short.stdout)

    refused = invoke("train", config, "--set", "optimizer.Adam.learning_rate=0.02", "--resume", run, "--no-progress")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        f"error: the config changed since '{run}' started: optimizer.Adam.learning_rate (0.01 -> 0.02), "
        "training.epochs (2 -> 4) (pass --force to resume with the changed config, or start a new run)")
    finished = invoke("resume", run, "--no-progress")
    assert finished.exit_code == 1
    assert finished.stderr.strip() == (
        f"error: '{run}' already finished all 2 epochs (to train longer: dltrain train {run / 'config.yaml'} "
        f"--resume {run} --set training.epochs=7 --force)")

    forced = invoke("train", config, "--resume", run, "--force", "--no-progress")
    assert forced.exit_code == 0, forced.output
    assert forced.stderr.strip() == "note: resumed with a changed config: training.epochs (2 -> 4)"
    assert forced.stdout.startswith("resumed after epoch 2\n")
    assert max_difference(weights(run), weights(run_folder(full.stdout))) == 0.0
    assert "epochs: 4" in (run / "config.yaml").read_text()  # the run now holds the config it continued with


def test_edited_run_config_refuses_resume(tmp_path: Path, tiny_run: Path):
    run = copy_run(tiny_run, tmp_path)
    runs.write_status(run, "interrupted", epoch=2, epochs=2)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("units: 16", "units: 17"))
    refused = invoke("resume", run, "--no-progress")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        f"error: the config changed since '{run}' started: model.layers[0].Dense.units (16 -> 17) "
        "(pass --force to resume with the changed config, or start a new run)")
    forced = invoke("resume", run, "--force", "--no-progress")
    assert forced.exit_code == 1
    assert forced.stderr.strip() == ("error: the checkpoint's dense/kernel has shape (8, 16), the model's (8, 17) "
                                     "(the model layers changed; start a new run)")


def test_damaged_checkpoint_falls_back_to_the_previous_one_or_fails_clearly(tmp_path: Path, tiny_run: Path):
    run = copy_run(tiny_run, tmp_path)
    history = (run / "history.csv").read_text()
    runs.write_status(run, "interrupted", epoch=2, epochs=2)  # as if killed before the final save
    current = run / "checkpoint.npz"
    current.write_bytes(current.read_bytes()[: current.stat().st_size // 2])  # a torn write

    resumed = invoke("resume", run, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stderr.startswith("note: checkpoint.npz is damaged (BadZipFile: ")
    assert resumed.stderr.strip().endswith("; using checkpoint.previous.npz (after epoch 1)")
    assert resumed.stdout.startswith("resumed after epoch 1\n")
    assert (run / "history.csv").read_text().count("\n") == history.count("\n")  # epoch 2 trained again
    assert max_difference(weights(run), weights(tiny_run)) == 0.0

    runs.write_status(run, "interrupted", epoch=2, epochs=2)
    (run / "checkpoint.npz").write_bytes(b"")
    (run / "checkpoint.previous.npz").write_bytes(b"")
    before = (run / "history.csv").read_text()
    failed = invoke("resume", run, "--no-progress")
    assert failed.exit_code == 1
    assert failed.stderr.strip() == (
        f"error: cannot resume '{run}': checkpoint.npz is damaged (EOFError: No data left in file); "
        "checkpoint.previous.npz is damaged (EOFError: No data left in file) "
        f"(no readable checkpoint is left; start a new run with: dltrain train {run / 'config.yaml'})")
    assert (run / "history.csv").read_text() == before  # never silently restarted from scratch


def test_kill_during_a_model_save_leaves_the_previous_model_loadable(tmp_path: Path, tiny_run: Path):
    run = copy_run(tiny_run, tmp_path)
    good = weights(run)
    # A real SIGKILL half-way through writing the new model file (a model whose save writes part of a zip).
    code = (
        "import os, signal; from pathlib import Path; from dltrain import runs\n"
        "class Half:\n"
        "    def save(self, path):\n"
        "        Path(path).write_bytes(b'PK\\x03\\x04' + b'x' * 1000)\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"runs.save_model(Half(), Path({str(run / 'model.keras')!r}))\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert killed.returncode == -signal.SIGKILL
    assert max_difference(weights(run), good) == 0.0
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model.keras.")  # the torn temp file, hidden

    def fail_half_way(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 torn")
        raise OSError("disk full")

    import keras

    model = keras.saving.load_model(run / "model.keras")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.Model, "save", fail_half_way)
        with pytest.raises(OSError, match="disk full"):
            runs.save_model(model, run / "model.keras")
    assert max_difference(weights(run), good) == 0.0
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == leftovers  # its temp file removed


DIVERGING = SYNTHETIC.replace("Adam: {learning_rate: 0.01}", """SGD:
    learning_rate: {ExponentialDecay: {initial_learning_rate: 0.01, decay_steps: 1, decay_rate: 3.0}}""").replace(
    "epochs: 2", "epochs: 30")


def test_diverging_learning_rate_exits_3_and_writes_no_non_finite_file(tmp_path: Path, write_config):
    result = invoke("train", write_config(DIVERGING), "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 3, result.output
    (run,) = (tmp_path / "out").iterdir()
    status = runs.read_status(run)
    assert status["state"] == "diverged" and status["epoch"] >= 1
    done = status["epoch"]
    message = result.stderr.strip()
    assert re.fullmatch(
        rf"error: training diverged: the loss became (nan|inf) in epoch {done + 1}; model.keras and "
        rf"checkpoint.npz hold the last finite weights \(after epoch {done}\) \(lower optimizer's learning_rate, "
        r"or clip gradients \(clipnorm\) in the optimizer's arguments\)", message), message
    assert all(np.isfinite(w).all() for w in weights(run))
    for name in ("checkpoint.npz", "checkpoint.previous.npz"):
        if (run / name).exists():
            with np.load(run / name, allow_pickle=False) as saved:
                assert all(np.isfinite(saved[k]).all() for k in saved.files if k != "meta"), name
    assert len((run / "history.csv").read_text().splitlines()) == done + 1


def test_second_signal_ends_the_process_at_once():
    from dltrain.training.guard import Guard, StopRequested

    guard = Guard()
    before = signal.getsignal(signal.SIGINT)
    with guard.handling_signals():
        signal.raise_signal(signal.SIGINT)  # the first one is only noted...
        assert guard.signal_number == signal.SIGINT
        # ...and gives both signals their default action back: a second one ends the process at once.
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        with pytest.raises(StopRequested):
            guard.on_train_batch_end(0, {"loss": 0.5})
    assert signal.getsignal(signal.SIGINT) is before


def test_runs_lists_newest_first_with_states(tmp_path: Path, tiny_run: Path):
    (tmp_path / "out").mkdir()
    first = copy_run(tiny_run, tmp_path / "out")
    second = tmp_path / "out" / "tiny-later"
    shutil.copytree(first, second)
    status = json.loads((second / "status.json").read_text())
    # A run whose process died without a word: still "running", with a pid that no longer exists.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    status.update(state="running", epoch=0, pid=int(dead.stdout), started="2999-01-01T00:00:00")
    (second / "status.json").write_text(json.dumps(status))

    found = runs.list_runs(tmp_path / "out")
    assert [(info.path, info.state, info.epoch, info.epochs) for info in found] == \
        [(second, "interrupted", 0, 2), (first, "finished", 2, 2)]
    assert found[0].resume == f"dltrain resume {second}" and found[1].resume is None
    listed = invoke("runs", tmp_path / "out")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.index(second.name) < listed.stdout.index(first.name)
    assert f"resume {second.name}: dltrain resume {second}" in listed.stdout
    missing = invoke("runs", tmp_path / "nowhere")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == (f"error: output folder '{tmp_path / 'nowhere'}' not found "
                                      "(train a run first, or pass the folder)")
