"""`keras.applications` models (MobileNetV2, ResNet50, EfficientNetB0, ...) used as layers of a config.

Arguments are checked against the real function; the input shape is the layer before's. `weights:
imagenet` comes from Keras's cache, where Keras downloads it once; offline (DLTRAIN_OFFLINE=1) or when the
download fails, the error names the file and the folder to put it in. `weights: null` builds offline; a
path loads that file. `trainable: false` freezes the whole backbone.
"""

from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
from keras.src.backend import config as keras_config
from keras.src.utils import file_utils  # the module through which keras.applications fetch weights

from dltrain.config import LoadedConfig, Path_, did_you_mean
from dltrain.data import OFFLINE_ENV
from dltrain.errors import ConfigError, ModelBuildError, first_line
import dltrain.model.registry as registry

# Arguments of the functions that a config does not give, and why.
_REFUSED = {"input_tensor": "a backbone takes the layer before it, or the layer its `inputs:` names"}
# Arguments every backbone takes on top of its function's own (Keras's Layer argument).
EXTRA = ("trainable",)


def arguments(function: Callable[..., Any]) -> tuple[list[str], list[str]]:
    """The keyword arguments a keras.applications function takes, and the required ones."""
    params = [p for p in inspect.signature(function).parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return [p.name for p in params], [p.name for p in params if p.default is p.empty]


def cache_folder(subdir: str, cache_dir: str | None = None) -> Path:
    """Where keras.utils.get_file keeps a file of `subdir` (its own rule, read-only homes included)."""
    base = os.path.expanduser(cache_dir or keras_config.keras_home())
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return Path(base) / subdir


class _Missing(Exception):
    """The weights file is not in Keras's cache and could not be downloaded."""

    def __init__(self, file: Path, origin: str, reason: str | None) -> None:
        super().__init__(str(file))
        self.file, self.origin, self.reason = file, origin, reason


@contextmanager
def _weights_from_cache(offline: bool) -> Iterator[None]:
    """While a backbone is built: its weights come from Keras's cache, downloaded at most once."""
    original = file_utils.get_file
    signature = inspect.signature(original)

    def get_file(*args: Any, **kwargs: Any) -> str:
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        given = call.arguments
        fname = given["fname"] or os.path.basename(str(given["origin"]))
        file = cache_folder(given["cache_subdir"], given["cache_dir"]) / fname
        file_hash = given["file_hash"] or given["md5_hash"]
        cached = file.is_file() and (file_hash is None or file_utils.validate_file(
            str(file), file_hash, algorithm="md5" if given["md5_hash"] and not given["file_hash"] else
            given["hash_algorithm"]))
        if offline and not cached:
            raise _Missing(file, str(given["origin"]), None)
        try:
            return original(*args, **kwargs)
        except Exception as error:  # urllib raises several types; Keras wraps some in a bare Exception
            raise _Missing(file, str(given["origin"]), first_line(error, limit=160)) from None

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = original


def _check(name: str, kwargs: dict[str, Any], names: list[str], loaded: LoadedConfig, at: Path_) -> None:
    for key in kwargs:
        if key in _REFUSED:
            raise loaded.error(ConfigError, at + (key,), f"{name}'s '{key}' is not given in a config",
                               hint=_REFUSED[key])
        if key not in names and key not in EXTRA:
            hint = did_you_mean(key, [*names, *EXTRA]) or f"{name} takes: {', '.join([*names, *EXTRA])}"
            raise loaded.error(ConfigError, at + (key,), f"unknown argument '{key}' of {name}", hint=hint)
    trainable = kwargs.get("trainable", True)
    if not isinstance(trainable, bool):
        raise loaded.error(ConfigError, at + ("trainable",), f"expected true or false, got {trainable!r}")
    weights = kwargs.get("weights")
    if isinstance(weights, str) and weights != "imagenet" and not Path(weights).expanduser().is_file():
        raise loaded.error(ConfigError, at + ("weights",), f"weights file '{weights}' not found",
                           hint="a relative path is read from the working folder; or write weights: imagenet "
                                "(Keras's download) or null (random weights)")


def build(name: str, kwargs: dict[str, Any], input_shape: tuple[int | None, ...], loaded: LoadedConfig,
          path: Path_) -> keras.Model:
    """The backbone `name` built with the config's arguments, on inputs of `input_shape` (batch axis left out)."""
    function = registry.catalog("application")[name]
    at = path + (name,)
    names, _ = arguments(function)
    _check(name, kwargs, names, loaded, at)
    kwargs = dict(kwargs)
    trainable = kwargs.pop("trainable", True)
    if "input_shape" in names and kwargs.get("input_shape") is None:
        kwargs["input_shape"] = tuple(input_shape)
    try:
        with _weights_from_cache(os.environ.get(OFFLINE_ENV) == "1"):
            model = function(**kwargs)
    except _Missing as missing:
        folder = str(missing.file.parent).replace(str(Path.home()), "~", 1)
        what = f"{name}'s {kwargs.get('weights', 'imagenet')} weights"
        message = (f"{what} are not in Keras's cache and downloads are off ({OFFLINE_ENV}=1)" if missing.reason is None
                   else f"{what} are not in Keras's cache and the download failed: {missing.reason}")
        raise loaded.error(ModelBuildError, at + ("weights",), message,
                           hint=f"place {missing.file.name} in {folder}/; Keras downloads it from {missing.origin}; "
                                "weights: null builds the backbone with random weights") from None
    except (ValueError, TypeError) as error:
        raise loaded.error(ConfigError, at, f"Keras rejected the arguments of {name}: {first_line(error)}",
                           hint=f"check each value against help(keras.applications.{name})") from None
    model.trainable = trainable
    return model
