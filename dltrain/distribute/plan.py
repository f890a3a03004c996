"""Which strategy a run uses, decided from the config's `distribute:` section, TF_CONFIG and the GPUs here.

No TensorFlow server starts here: every mistake (a malformed TF_CONFIG, multi_worker without a cluster) is
found before one does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping

from dltrain.config import LoadedConfig
from dltrain.distribute.cluster import ENV, EXAMPLE, Cluster, DistributeError, from_environment
from dltrain.errors import RunError


def gpu_count() -> int:
    """The GPUs TensorFlow sees (listing them starts no runtime and no server)."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


@dataclass(frozen=True)
class Plan:
    """The strategy a run trains with, its local devices (None: TensorFlow's choice) and its cluster."""

    strategy: Literal["none", "mirrored", "multi_worker"]
    devices: tuple[str, ...] | None = None
    cluster: Cluster | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run folder (every process that trains alone does)."""
        return self.cluster is None or self.cluster.is_chief


def plan(loaded: LoadedConfig, environ: Mapping[str, str] | None = None,
         gpus: Callable[[], int] = gpu_count) -> Plan:
    """The strategy `distribute.strategy` asks for here: `auto` looks at TF_CONFIG, then at the GPUs."""
    settings = loaded.config.distribute
    if settings.strategy == "none":
        return Plan("none")
    if settings.strategy == "mirrored":
        return Plan("mirrored", tuple(settings.devices) if settings.devices else None)
    cluster = from_environment(environ)
    if settings.strategy == "multi_worker":
        if cluster is None:
            raise loaded.error(DistributeError, ("distribute", "strategy"),
                               f"multi_worker needs the cluster in the {ENV} environment variable, which is not set",
                               hint=f"set {ENV} on each worker (like {EXAMPLE}), try it on this machine with "
                                    "dltrain train CONFIG --workers 2, or use strategy: auto")
        return Plan("multi_worker", cluster=cluster)
    if cluster is not None and cluster.size > 1:
        return Plan("multi_worker", cluster=cluster)
    if gpus() >= 2:
        return Plan("mirrored")
    return Plan("none")


def check_run_folder(run_dir: Path, environ: Mapping[str, str] | None = None) -> None:
    """A RunError for a worker of a cluster that cannot see the run folder it is asked to resume."""
    if run_dir.is_dir():
        return
    cluster = from_environment(environ)
    if cluster is not None and cluster.size > 1:
        raise RunError(f"run folder '{run_dir}' not found on {cluster.name}",
                       hint="to resume, every worker reads the chief's run folder: put --output-dir on a volume "
                            "all workers share")
