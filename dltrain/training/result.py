"""What a training run gives back, and the error Keras's own failures become."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dltrain.errors import DltrainError


class TrainingError(DltrainError):
    """Keras could not train the model as configured (raised before the first step completes)."""


@dataclass
class TrainResult:
    """What a finished training run produced."""

    run_dir: Path
    metrics: dict[str, dict[str, float]]
    epochs: int
    epoch_seconds: list[float] = field(default_factory=list)
    # The epoch a resumed run continued after (None for a fresh run), and what the user should know.
    resumed_from: int | None = None
    notes: list[str] = field(default_factory=list)
    # The epoch whose weights model.keras holds (earlier than `epochs` when EarlyStopping restored the best).
    weights_epoch: int | None = None
    tensorboard_dir: Path | None = None
    # A worker of a multi-worker job that is not the chief ("worker:1 of 2"): the run folder is the chief's.
    role: str | None = None
    # SIGINT or SIGTERM that arrived after the last batch: the run finished anyway; whoever would start more
    # work after it (a sweep worker) stops instead.
    late_signal: int | None = None
