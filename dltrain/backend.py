"""Import TensorFlow and Keras once, without TensorFlow's C++ start-up chatter on the terminal."""

from __future__ import annotations

import os
import sys
import tempfile


def quiet_import() -> None:
    """Import TensorFlow with stderr captured at the file-descriptor level; replay it if the import fails.

    TensorFlow's C++ side logs oneDNN, CPU-feature and CUDA-probe lines through absl before any log level
    applies, so environment variables cannot silence them.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device probing logs too; do it while captured
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


quiet_import()
