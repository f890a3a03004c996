"""Optional MLflow tracking: the flattened config as params, metrics per epoch, model and plots as artifacts.

MLflow is an optional dependency (`pip install 'dltrain[mlflow]'`), imported only when a config has
`tracking.mlflow`. The client API is used rather than `mlflow.start_run`, so no global "active run"
leaks between runs trained in one process. A resumed run continues its MLflow run (the id is kept in
the run folder's mlflow.json).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain.config import LoadedConfig, MlflowConfig
from dltrain.errors import RunError, first_line
import dltrain.runs.folders as runs

MLFLOW_FILE = "mlflow.json"
# MLflow refuses longer parameter values (6000 characters) and bigger batches (100 params per call).
_PARAM_LENGTH = 6000
_BATCH = 100
# What a run folder contributes as artifacts (those that exist).
ARTIFACTS = ("model.keras", "best.keras", "config.yaml", "overrides.txt", "history.csv", "metrics.json",
             "env.json", "dataset.json", "summary.txt", "plots")


def settings(loaded: LoadedConfig) -> MlflowConfig | None:
    """The config's MLflow settings, or None when tracking is off."""
    tracking = loaded.config.tracking
    return tracking.mlflow if tracking is not None else None


def check_installed(loaded: LoadedConfig) -> None:
    """Fail before anything is trained when the config asks for MLflow and it is not installed."""
    if settings(loaded) is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise loaded.error(RunError, ("tracking", "mlflow"), "MLflow is not installed",
                           hint="pip install 'dltrain[mlflow]', or remove tracking.mlflow") from None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as MLflow parameter names: `optimizer.Adam.learning_rate`, `model.layers.2.Dense.units`
    (MLflow allows no brackets in names); a list of plain values stays one value (`dataset.input_shape`)."""
    if isinstance(value, dict) and value:
        found: dict[str, Any] = {}
        for key, inner in value.items():
            found.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return found
    if isinstance(value, list) and any(isinstance(inner, (dict, list)) for inner in value):
        found = {}
        for i, inner in enumerate(value):
            found.update(flatten(inner, f"{prefix}.{i}"))
        return found
    return {prefix: value}


class MlflowTracker(keras.callbacks.Callback):
    """Logs each epoch's metrics to an MLflow run; `finish` adds test metrics and artifacts."""

    def __init__(self, config: MlflowConfig, run_dir: Path, resolved: dict[str, Any]):
        super().__init__()
        import logging

        from mlflow.entities import Param, RunStatus
        from mlflow.tracking import MlflowClient

        # MLflow announces each database migration at INFO on stderr; dltrain's output stays its own.
        logging.getLogger("mlflow.store").setLevel(logging.WARNING)

        self.run_dir = run_dir
        self._status = RunStatus
        try:
            self.client = MlflowClient(tracking_uri=config.tracking_uri)
            self.run_id = self._continue() or self._start(config, resolved, Param)
        except RunError:
            raise
        except Exception as error:  # MLflow raises its own exceptions and those of its stores
            raise RunError(f"MLflow tracking at '{config.tracking_uri or 'the default store'}' failed: "
                           f"{first_line(error)}", key="tracking.mlflow",
                           hint="check tracking.mlflow in the config (a local store: sqlite:///mlflow.db)") from None

    def _continue(self) -> str | None:
        """A resumed run's MLflow run id, marked running again; None for a new run."""
        try:
            saved = json.loads((self.run_dir / MLFLOW_FILE).read_text())
        except (OSError, ValueError):
            return None
        run_id = saved.get("run_id") if isinstance(saved, dict) else None
        if not run_id:
            return None
        self.client.update_run(run_id, status=self._status.to_string(self._status.RUNNING))
        return run_id

    def _start(self, config: MlflowConfig, resolved: dict[str, Any], param: Any) -> str:
        name = config.experiment_name or resolved.get("name", "dltrain")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(
            name, artifact_location=config.artifact_location)
        run = self.client.create_run(experiment_id, run_name=self.run_dir.name,
                                     tags={"dltrain.run_dir": str(self.run_dir.resolve())})
        params = [param(key, _param_text(value)) for key, value in flatten(resolved).items()]
        for start in range(0, len(params), _BATCH):
            self.client.log_batch(run.info.run_id, params=params[start: start + _BATCH])
        runs.atomic_write_json(self.run_dir / MLFLOW_FILE, {
            "tracking_uri": self.client.tracking_uri, "experiment_id": experiment_id, "run_id": run.info.run_id})
        return run.info.run_id

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        """Log finite values (MLflow rejects NaN in some stores) at `step`."""
        from mlflow.entities import Metric

        now = _millis()
        metrics = [Metric(key, float(value), now, step) for key, value in values.items()
                   if isinstance(value, (int, float)) and math.isfinite(float(value))]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start: start + 1000])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch + 1)

    def finish(self, test: dict[str, float], epochs: int) -> None:
        """Log the test metrics and the run folder's files, and mark the MLflow run finished."""
        self.log_metrics({f"test_{k}": v for k, v in test.items()}, step=epochs)
        for name in ARTIFACTS:
            path = self.run_dir / name
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FINISHED")

    def end(self, status: str) -> None:
        """Mark the MLflow run ended early: KILLED (interrupted) or FAILED (diverged, crashed)."""
        try:
            self.client.set_terminated(self.run_id, status=status)
        except Exception:  # the run folder's own status is what counts; tracking must not hide the cause
            pass


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _PARAM_LENGTH else text[: _PARAM_LENGTH - 3] + "..."


def _millis() -> int:
    import time

    return int(time.time() * 1000)
