"""The tf.distribute strategy of a run, and the one place training meets it: the scope the model is built
and compiled in, the datasets (the global batch, sharded by data), and where each worker writes.

Every worker runs the same code, in the same order, so the collectives (the all-reduce of each step,
evaluate's metrics, predict's gather) always match. Only the chief writes the run folder; every other
worker writes the same files into a temporary folder of its own, outside --output-dir, and deletes it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ContextManager, Iterator

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import tensorflow as tf

from dltrain import runs
from dltrain.config import LoadedConfig
from dltrain.data import FitData
import dltrain.distribute.keras_fix as keras_fix
from dltrain.distribute.cluster import DistributeError
from dltrain.distribute.plan import Plan
from dltrain.errors import DltrainError, RunDiverged, RunInterrupted

_KEY = ("distribute", "devices")
_RESTART = ("restart every worker with --resume RUN_DIR (the chief's run folder): the run continues from its "
            "last checkpoint")


@dataclass
class Distribution:
    """A run's strategy (None: TensorFlow's default, one device) and this process's part in it."""

    plan: Plan
    strategy: Any = None
    notes: list[str] = field(default_factory=list)
    _folders: list[Path] = field(default_factory=list)

    @property
    def replicas(self) -> int:
        """How many replicas share each global batch."""
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run folder."""
        return self.plan.is_chief

    @property
    def role(self) -> str | None:
        """`worker:1 of 3` for a worker that is not the chief; None for the process that writes the run."""
        cluster = self.plan.cluster
        return None if cluster is None or cluster.is_chief else f"{cluster.name} of {cluster.size}"

    def scope(self) -> ContextManager[Any]:
        """The scope the model, its optimizer and its metrics are created in."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    @property
    def worker(self) -> tuple[int, int] | None:
        """(rank, workers) of this process in a multi-worker job; None otherwise."""
        cluster = self.plan.cluster
        if self.plan.strategy != "multi_worker" or cluster is None or cluster.size < 2:
            return None
        return cluster.rank, cluster.size

    def datasets(self, data: FitData) -> FitData:
        """The datasets of a fit for this strategy: each global batch is split across the replicas. With
        several workers, training files already dealt to the workers (data.by_file: AutoShardPolicy.FILE,
        done by the feed) are read as they are; everything else is sharded by data: each worker keeps its part
        of every batch (the examples are in memory or a file list, and the (seed, epoch) order is the same on
        every worker)."""
        if self.strategy is None:
            return data
        self.notes.extend(data.notes)

        def sharded(ds: Any, policy: Any = tf.data.experimental.AutoShardPolicy.DATA) -> Any:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = policy
            return ds.with_options(options) if ds is not None else None

        own = tf.data.experimental.AutoShardPolicy.OFF if data.by_file else tf.data.experimental.AutoShardPolicy.DATA
        return replace(data, train=sharded(data.train, own), validation=sharded(data.validation),
                       test=sharded(data.test))

    def compiled(self, model: Any) -> None:
        """Keep a compiled model within what Keras can run here: one step per execution with several
        replicas where dltrain's fix is not in place."""
        if self.replicas > 1 and model.steps_per_execution > 1 and not keras_fix.applied():
            model.steps_per_execution = 1

    def new_run_folder(self, output_dir: Path, name: str, exact: str | None = None) -> Path:
        """The chief's new run folder (`exact`: its name); another worker's temporary folder, outside `output_dir`."""
        if self.is_chief:
            return runs.create_run(output_dir, name, exact=exact)
        return self._temporary()

    def work_folder(self, run_dir: Path) -> Path:
        """Where this process writes while it continues `run_dir`: the folder itself for the chief. Another
        worker gets a temporary folder holding links to the run's files, so that it reads what the chief
        reads (the checkpoint, best.keras) and takes the same decisions; its writes replace the links."""
        if self.is_chief:
            return run_dir
        folder = self._temporary()
        for path in run_dir.iterdir():
            if path.is_file():
                (folder / path.name).symlink_to(path.resolve())
        return folder

    def _temporary(self) -> Path:
        folder = Path(tempfile.mkdtemp(prefix=f"dltrain-{self.plan.cluster.name.replace(':', '')}-"))
        self._folders.append(folder)
        return folder

    def release(self) -> None:
        """Delete this worker's temporary folders (the chief has none)."""
        while self._folders:
            shutil.rmtree(self._folders.pop(), ignore_errors=True)

    def finished(self, result: Any) -> Any:
        """A TrainResult with this strategy's notes, that says, for a worker that is not the chief, which it was."""
        result.role = self.role
        result.notes = [*self.notes, *result.notes]
        return result

    def failed(self, error: Exception) -> Exception:
        """The error a worker that is not the chief reports: its temporary folder is gone, the run is the chief's."""
        role = self.role
        if role is None or not isinstance(error, DltrainError):
            return error
        if isinstance(error, (RunInterrupted, RunDiverged)):
            what = str(error.message).split(";")[0]
            reworded = RunInterrupted(f"{role}: {what}; the chief's run folder holds the last checkpoint",
                                      signal_number=error.signal_number, hint=_RESTART) \
                if isinstance(error, RunInterrupted) else RunDiverged(f"{role}: {what}", hint=error.hint)
            return reworded
        error.message = f"{role}: {error.message}"
        return error

    @contextlib.contextmanager
    def taking_part(self) -> Iterator[None]:
        """Around a fit: a worker's errors say that the run is the chief's, and its temporary folders go at the end."""
        try:
            yield
        except Exception as error:
            ending = self.failed(error)
            if ending is error:
                raise
            raise ending from None
        finally:
            self.release()

    def describe(self) -> dict[str, Any]:
        """What env.json records: the strategy, its replicas and devices, and the cluster."""
        info: dict[str, Any] = {"strategy": self.plan.strategy, "replicas": self.replicas}
        if self.strategy is not None:
            info["devices"] = list(self.strategy.extended.worker_devices)
        if self.plan.cluster is not None and self.plan.strategy == "multi_worker":
            info["workers"] = self.plan.cluster.size
            info["task"] = self.plan.cluster.name
        return info


def start(loaded: LoadedConfig, plan: Plan) -> Distribution:
    """Create the planned strategy; call it before TensorFlow runs anything (it may split the CPU)."""
    if plan.strategy == "none":
        return Distribution(plan)
    if plan.strategy == "multi_worker":
        keras_fix.require_tested()
        keras_fix.apply()
        # TensorFlow reads the cluster from TF_CONFIG itself; plan() has checked it.
        distribution = Distribution(plan, tf.distribute.MultiWorkerMirroredStrategy())
    else:
        devices = _mirrored_devices(loaded, plan.devices)
        distribution = Distribution(plan, tf.distribute.MirroredStrategy(devices))
        if devices is None:
            distribution.notes.append("strategy mirrored found no GPU: training on the CPU alone (name CPU devices "
                                      "in distribute.devices to split it)")
        if distribution.replicas > 1 and keras_fix.tested():
            keras_fix.apply()
    steps = loaded.config.training.steps_per_execution
    if distribution.replicas > 1 and steps > 1 and not keras_fix.applied():
        distribution.notes.append(
            f"steps_per_execution {steps} -> 1: Keras {keras_fix.keras.__version__} fails with several replicas "
            f"and more than one step per execution, and dltrain's fix was tested with Keras "
            f"{', '.join(v + 'x' for v in keras_fix.TESTED)} only")
    return distribution


def _mirrored_devices(loaded: LoadedConfig, devices: tuple[str, ...] | None) -> list[str] | None:
    """The devices of a MirroredStrategy: those named (the CPU split into as many as named), else every GPU."""
    gpus = len(tf.config.list_physical_devices("GPU"))
    if devices is None:
        return [f"GPU:{i}" for i in range(gpus)] or None  # None: TensorFlow's choice, the CPU
    for i, device in enumerate(devices):
        kind, index = device.split(":")
        if kind == "GPU" and int(index) >= gpus:
            has = f"{gpus} GPU{'s' if gpus > 1 else ''} (GPU:0 to GPU:{gpus - 1})" if gpus else "no GPU"
            raise loaded.error(DistributeError, (*_KEY, i), f"there is no {device}: this machine has {has}",
                               hint="name the GPUs it has, or CPU devices (CPU:0, CPU:1, ...)")
    cpus = max((int(d.split(":")[1]) + 1 for d in devices if d.startswith("CPU:")), default=0)
    if cpus > 1:
        _split_cpu(loaded, cpus)
    return list(devices)


def _split_cpu(loaded: LoadedConfig, count: int) -> None:
    """Make the CPU `count` logical devices (as Keras's own distribute tests do); TensorFlow must not run yet."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu)
    if configured is not None and len(configured) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:  # TensorFlow fixes its devices when it runs its first operation
        have = len(tf.config.list_logical_devices("CPU"))
        if have >= count:
            return
        raise loaded.error(DistributeError, _KEY, f"cannot split the CPU into {count} devices: TensorFlow "
                           f"already runs in this process with {have}",
                           hint="start a fresh process (the dltrain command)") from None


def lost_worker(error: BaseException) -> DistributeError | None:
    """The error to show when a collective failed because another worker stopped, else None."""
    text = str(error)
    if not isinstance(error, tf.errors.OpError) or not any(
            mark in text for mark in ("unhealthy", "Collective ops is aborted", "Socket closed",
                                      "failed to connect to all addresses", "Connection reset")):
        return None
    return DistributeError("another worker of the job stopped, and MultiWorkerMirroredStrategy cannot go on "
                           "without it", hint=_RESTART)

