"""The cluster a process belongs to, read from TF_CONFIG as Kubeflow's TFJob, Vertex AI and SageMaker set it.

Checked here, without TensorFlow, so a malformed TF_CONFIG is one line before any server starts:

    {"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]},
     "task": {"type": "worker", "index": 0}}

Without a `chief` task, worker 0 is the chief (TensorFlow's rule). An `evaluator` task is outside the cluster
that trains; parameter servers (`ps`) belong to ParameterServerStrategy, which dltrain does not run.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from dltrain.config import did_you_mean
from dltrain.errors import DltrainError, Location

ENV = "TF_CONFIG"
TRAINING_TASKS = ("chief", "worker")
_KNOWN_TASKS = (*TRAINING_TASKS, "evaluator", "ps")
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")
EXAMPLE = '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}'


class DistributeError(DltrainError):
    """The distribution settings or the cluster description cannot be used."""


def _error(message: str, key: str | None = None, hint: str | None = None) -> DistributeError:
    return DistributeError(message, where=Location(ENV), key=key, hint=hint)


@dataclass(frozen=True)
class Cluster:
    """The training tasks of a cluster (chief first, then workers) and which one this process is."""

    tasks: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def size(self) -> int:
        """How many processes train together."""
        return sum(len(self.tasks.get(kind, [])) for kind in TRAINING_TASKS)

    @property
    def rank(self) -> int:
        """This task's place among the training tasks: 0 is the chief."""
        return self.task_index + (len(self.tasks.get("chief", [])) if self.task_type == "worker" else 0)

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run folder."""
        return self.rank == 0

    @property
    def name(self) -> str:
        """This task as TF_CONFIG names it: `chief:0`, `worker:1`."""
        return f"{self.task_type}:{self.task_index}"


def _addresses(kind: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _error(f"expected a non-empty list of 'host:port' addresses, got {value!r}", f"cluster.{kind}")
    for i, address in enumerate(value):
        match = _ADDRESS.match(address) if isinstance(address, str) else None
        if not match or not 0 < int(match.group(2)) < 65536:
            raise _error(f"expected an address 'host:port', got {address!r}", f"cluster.{kind}[{i}]")
    return list(value)


def parse(text: str) -> Cluster | None:
    """The cluster TF_CONFIG's text describes (None when it names none), or a DistributeError saying what is wrong."""
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise _error(f"not valid JSON: {error}", hint=f"TF_CONFIG looks like {EXAMPLE}") from None
    if not isinstance(data, dict):
        raise _error(f"expected a JSON object, got {text.strip()[:60]!r}", hint=f"TF_CONFIG looks like {EXAMPLE}")
    cluster = data.get("cluster")
    if not cluster:
        return None  # TensorFlow's reading too: no cluster, one process on its own
    if not isinstance(cluster, dict):
        raise _error(f"expected a mapping of task types to addresses, got {cluster!r}", "cluster")
    for kind in cluster:
        if kind not in _KNOWN_TASKS:
            raise _error(f"unknown task type '{kind}'", f"cluster.{kind}",
                         did_you_mean(str(kind), _KNOWN_TASKS) or "the task types are chief and worker")
    if "ps" in cluster:
        raise _error("parameter servers ('ps' tasks) are not supported: dltrain trains with "
                     "MultiWorkerMirroredStrategy", "cluster.ps", "describe the cluster as chief and worker tasks")
    tasks = {kind: _addresses(kind, cluster[kind]) for kind in cluster}
    if len(tasks.get("chief", [])) > 1:
        raise _error(f"a cluster has one chief, this one names {len(tasks['chief'])}", "cluster.chief")
    if not any(kind in tasks for kind in TRAINING_TASKS):
        raise _error("the cluster names no chief or worker task", "cluster")
    everyone = [a for kind in TRAINING_TASKS for a in tasks.get(kind, [])]
    twice = next((a for i, a in enumerate(everyone) if a in everyone[:i]), None)
    if twice is not None:
        raise _error(f"address {twice} is given to two tasks", "cluster", "every task needs a port of its own")
    task = data.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise _error("the task of this process is missing", "task",
                     'add "task": {"type": "worker", "index": N} (each process its own)')
    kind, index = task["type"], task.get("index", 0)
    if kind == "evaluator":
        raise _error("this process is an 'evaluator' task; dltrain has none",
                     "task.type", "score a run with: dltrain evaluate RUN_DIR")
    if kind not in tasks:
        raise _error(f"task type '{kind}' is not in the cluster", "task.type",
                     did_you_mean(str(kind), list(tasks)) or f"the cluster has: {', '.join(tasks)}")
    if type(index) is not int or not 0 <= index < len(tasks[kind]):
        raise _error(f"index {index!r} is out of range: the cluster has {len(tasks[kind])} {kind} task"
                     f"{'s' if len(tasks[kind]) > 1 else ''}", "task.index",
                     f"use 0 to {len(tasks[kind]) - 1}" if len(tasks[kind]) > 1 else "use 0")
    return Cluster({k: v for k, v in tasks.items() if k in TRAINING_TASKS}, kind, index)


def from_environment(environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster of this process from $TF_CONFIG, or None when there is none."""
    return parse((os.environ if environ is None else environ).get(ENV, ""))


def tf_config(tasks: dict[str, list[str]], task_type: str, task_index: int) -> str:
    """TF_CONFIG's text for one task of a cluster."""
    return json.dumps({"cluster": tasks, "task": {"type": task_type, "index": task_index}})
