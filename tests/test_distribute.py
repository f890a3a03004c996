"""distribute: the strategy a run picks (config, TF_CONFIG, GPUs), TF_CONFIG's mistakes as one line before any
server starts, and the --workers launcher. No training here: tests/test_distribute_*.py train for real."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SYNTHETIC
from dltrain.cli import app
from dltrain.distribute.cluster import DistributeError, parse, tf_config
from dltrain.distribute.launch import run_workers
from dltrain.distribute.plan import plan
from dltrain.load import load_config

WORKERS = {"worker": ["localhost:2001", "localhost:2002"]}
CHIEF = {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]}


def test_worker_0_is_the_chief_without_a_chief_task():
    first, second = (parse(tf_config(WORKERS, "worker", i)) for i in (0, 1))
    assert (first.size, first.rank, first.is_chief, first.name) == (2, 0, True, "worker:0")
    assert (second.rank, second.is_chief, second.name) == (1, False, "worker:1")


def test_a_chief_task_comes_before_the_workers():
    chief, worker = parse(tf_config(CHIEF, "chief", 0)), parse(tf_config(CHIEF, "worker", 0))
    assert (chief.size, chief.rank, chief.is_chief) == (3, 0, True)
    assert (worker.rank, worker.is_chief, worker.name) == (1, False, "worker:0")


@pytest.mark.parametrize("text, message", [
    ("{cluster:", "TF_CONFIG: not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
                  "(char 1) (TF_CONFIG looks like " + '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                  '"task": {"type": "worker", "index": 0}})'),
    ('{"cluster": {"wroker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster.wroker: unknown task type 'wroker' (did you mean 'worker'?)"),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster.worker[1]: expected an address 'host:port', got 'b'"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "TF_CONFIG: task.index: index 2 is out of range: the cluster has 2 worker tasks (use 0 to 1)"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}',
     'TF_CONFIG: task: the task of this process is missing (add "task": {"type": "worker", "index": N} '
     '(each process its own))'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
     "TF_CONFIG: task.type: task type 'chief' is not in the cluster (the cluster has: worker)"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["p:1"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster.ps: parameter servers ('ps' tasks) are not supported: dltrain trains with "
     "MultiWorkerMirroredStrategy (describe the cluster as chief and worker tasks)"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster: address a:1 is given to two tasks (every task needs a port of its own)"),
])
def test_a_malformed_tf_config_is_one_line_saying_where(text: str, message: str):
    with pytest.raises(DistributeError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_no_cluster_is_no_cluster():
    assert parse("") is None and parse('{"task": {"type": "worker", "index": 0}}') is None


def _plan(write_config, strategy: str, tf_config_text: str | None = None, gpus: int = 0, devices: str = ""):
    path = write_config(SYNTHETIC + f"distribute:\n  strategy: {strategy}\n{devices}")
    environ = {"TF_CONFIG": tf_config_text} if tf_config_text is not None else {}
    return plan(load_config(path), environ, gpus=lambda: gpus)


def test_auto_picks_multi_worker_for_a_cluster_then_mirrored_for_two_gpus(write_config):
    two = tf_config(WORKERS, "worker", 1)
    one = tf_config({"worker": ["localhost:2001"]}, "worker", 0)
    picked = _plan(write_config, "auto", two)
    assert (picked.strategy, picked.cluster.name, picked.is_chief) == ("multi_worker", "worker:1", False)
    assert _plan(write_config, "auto", one, gpus=1).strategy == "none"  # one task: an ordinary run
    assert _plan(write_config, "auto", gpus=2).strategy == "mirrored"
    assert _plan(write_config, "auto", gpus=1).strategy == "none"
    assert _plan(write_config, "none", "{not json").strategy == "none"  # none never reads TF_CONFIG
    mirrored = _plan(write_config, "mirrored", devices="  devices: [CPU:0, /cpu:1]\n")
    assert (mirrored.strategy, mirrored.devices, mirrored.is_chief) == ("mirrored", ("CPU:0", "CPU:1"), True)


def test_multi_worker_without_tf_config_says_how_to_get_one(write_config):
    path = write_config(SYNTHETIC + "distribute:\n  strategy: multi_worker\n")
    line = len(SYNTHETIC.splitlines()) + 2
    with pytest.raises(DistributeError) as caught:
        plan(load_config(path), {})
    assert str(caught.value) == (
        f"{path}:{line}:3: distribute.strategy: multi_worker needs the cluster in the TF_CONFIG environment "
        'variable, which is not set (set TF_CONFIG on each worker (like {"cluster": {"worker": ["host1:2222", '
        '"host2:2222"]}, "task": {"type": "worker", "index": 0}}), try it on this machine with dltrain train '
        "CONFIG --workers 2, or use strategy: auto)")


def test_train_reports_a_malformed_tf_config_before_any_server_starts(write_config, monkeypatch):
    import tensorflow as tf

    def no_server(*args, **kwargs):
        raise AssertionError("a server was started")

    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", no_server)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 5}}')
    result = CliRunner().invoke(app, ["train", str(write_config(SYNTHETIC)), "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr == ("error: TF_CONFIG: task.index: index 5 is out of range: the cluster has 2 worker tasks "
                             "(use 0 to 1)\n")


def test_workers_refuses_to_start_inside_a_cluster(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config(WORKERS, "worker", 0))
    with pytest.raises(DistributeError, match="--workers starts a cluster of its own, but TF_CONFIG is already set"):
        run_workers(["train", "x.yaml"], 2)


def test_workers_exit_with_the_first_failure_and_stop_the_others(tmp_path: Path, monkeypatch):
    """Worker 1 fails at once; the chief, still running, is stopped; the failure's line is shown."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys, time
        task = json.loads(os.environ["TF_CONFIG"])["task"]
        open(sys.argv[1] + f"/started{task['index']}", "w").write(" ".join(sys.argv[2:]))
        if task["index"] == 1:
            print("error: worker 1 cannot read its data")
            sys.exit(4)
        time.sleep(60)
    """))
    shown: list[str] = []
    status = run_workers([str(tmp_path), "--flag"], 2, echo=shown.append, program=[sys.executable, str(script)])
    assert status == 4
    assert shown == ["worker:1: error: worker 1 cannot read its data",
                     "worker:1 exited with status 4; the other workers were stopped"]
    assert (tmp_path / "started0").read_text() == "--flag"
    assert (tmp_path / "started1").read_text() == "--flag --no-progress"  # only the chief shows progress


def test_workers_all_finishing_is_status_0(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    script = tmp_path / "worker.py"
    script.write_text("import json, os\nassert len(json.loads(os.environ['TF_CONFIG'])['cluster']['worker']) == 3\n")
    assert run_workers([], 3, echo=print, program=[sys.executable, str(script)]) == 0


def test_multi_worker_on_an_untested_keras_is_refused_before_any_server_starts(write_config, monkeypatch):
    import tensorflow as tf

    from dltrain.distribute import keras_fix

    def no_server(*args, **kwargs):
        raise AssertionError("a server was started")

    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", no_server)
    monkeypatch.setattr(keras_fix, "TESTED", ("0.0.",))
    monkeypatch.setenv("TF_CONFIG", tf_config(WORKERS, "worker", 0))
    result = CliRunner().invoke(app, ["train", str(write_config(SYNTHETIC)), "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: distribute.strategy: multi-worker training needs dltrain's fix for "
                                    f"keras#20585, which was tested with Keras 0.0.x, not Keras "
                                    f"{keras_fix.keras.__version__} (")


def test_a_worker_that_cannot_see_the_run_folder_is_told_to_share_it(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config(WORKERS, "worker", 1))
    result = CliRunner().invoke(app, ["resume", str(tmp_path / "elsewhere"), "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr == (f"error: run folder '{tmp_path / 'elsewhere'}' not found on worker:1 (to resume, every "
                             "worker reads the chief's run folder: put --output-dir on a volume all workers share)\n")
