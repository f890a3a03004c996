"""Converters talk: TFLite's C++ side prints MLIR diagnostics and calibration settings straight to file
descriptor 2, tf2onnx logs every op it skips. dltrain reports what matters as one message naming the layer."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet() -> Iterator[None]:
    """Run a converter with stderr captured at the file-descriptor level, the tf2onnx and TensorFlow loggers
    at CRITICAL and Python warnings off; the captured text is dropped (errors carry their own message)."""
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow")]
    levels = [logger.level for logger in loggers]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
