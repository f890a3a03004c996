"""Stop training cleanly on SIGINT/SIGTERM and at once on a non-finite loss.

A signal only sets a flag; the next batch boundary raises `StopRequested` out of `fit`, so no file is
half-written. After the first signal both signals get their default action back: a second one ends the
process at once, even inside a long TensorFlow step (the files are safe: every write is atomic).
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """A signal asked training to stop."""

    def __init__(self, signal_number: int, epoch: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number
        self.epoch = epoch


class NonFiniteLoss(Exception):
    """The training loss became NaN or infinite."""

    def __init__(self, value: float, epoch: int, step: int):
        super().__init__(f"loss {value} in epoch {epoch + 1}, step {step + 1}")
        self.value = value
        self.epoch = epoch
        self.step = step


class Guard(keras.callbacks.Callback):
    """Raises `StopRequested` or `NonFiniteLoss` at the first batch boundary after the cause.

    Place it first among the callbacks, so that no later callback (a user's ModelCheckpoint, say) sees
    a batch or epoch whose weights are not finite.
    """

    def __init__(self) -> None:
        super().__init__()
        self.signal_number: int | None = None
        self._epoch = 0

    def _handle(self, signal_number: int, frame: Any) -> None:
        self.signal_number = signal_number
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)

    @contextmanager
    def handling_signals(self) -> Iterator[Guard]:
        """Catch SIGINT and SIGTERM while the block runs (main thread only), then restore the handlers."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _check_signal(self) -> None:
        if self.signal_number is not None:
            raise StopRequested(self.signal_number, self._epoch)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._check_signal()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(float(loss), self._epoch, batch)
        self._check_signal()

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._check_signal()
