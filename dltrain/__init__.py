"""dltrain: a Keras-style, config-driven deep-learning training CLI."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) would bury dltrain's own output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def lazy_face(package: str, table: dict[str, str]):
    """A package face's module `__getattr__`: `table` maps a public name to `module` or `module:name` inside
    `package`, imported on first use, so importing the face costs nothing (no TensorFlow) until a name is used."""
    from importlib import import_module

    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = table[name].partition(":")
        return getattr(import_module(f"{package}.{module}"), attribute or name)

    return __getattr__
