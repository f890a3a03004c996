"""dltrain: a Keras-style, config-driven deep-learning training CLI."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) would bury dltrain's own output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
