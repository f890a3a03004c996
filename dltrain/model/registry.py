"""Names in a config become Keras objects here, and only here, through Keras's own modules."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras  # noqa: E402

from dltrain.config import LoadedConfig, Path_, did_you_mean, split_spec
from dltrain.errors import ConfigError, first_line
from dltrain.runs import PYTHONPATH_FILE
from dltrain.trust import require_trust

_MODULES: dict[str, ModuleType] = {
    "layer": keras.layers,
    "optimizer": keras.optimizers,
    "loss": keras.losses,
    "metric": keras.metrics,
    "callback": keras.callbacks,
    "schedule": keras.optimizers.schedules,
    "initializer": keras.initializers,
    "regularizer": keras.regularizers,
    "constraint": keras.constraints,
    "activation": keras.activations,
    "application": keras.applications,  # backbones (MobileNetV2, ResNet50, ...): functions that build a Model
}
_BASES: dict[str, type] = {
    "layer": keras.layers.Layer,
    "optimizer": keras.optimizers.Optimizer,
    "loss": keras.losses.Loss,
    "metric": keras.metrics.Metric,
    "callback": keras.callbacks.Callback,
    "schedule": keras.optimizers.schedules.LearningRateSchedule,
    "initializer": keras.initializers.Initializer,
    "regularizer": keras.regularizers.Regularizer,
    "constraint": keras.constraints.Constraint,
}
# Names `Model.compile` understands on top of keras.metrics: it picks the accuracy that fits the loss.
_COMPILE_METRICS = ("accuracy", "acc", "crossentropy", "ce")
# Keyword arguments whose one-key mapping value is itself a Keras object of this kind.
_NESTED = (
    ("learning_rate", "schedule"),
    ("layer", "layer"),
    ("backward_layer", "layer"),
    ("_initializer", "initializer"),
    ("_regularizer", "regularizer"),
    ("_constraint", "constraint"),
    ("activation", "activation"),
)
# Names from older Keras or other libraries that users still type.
_ALIASES = {"lr": "learning_rate"}
_NOT_OBJECTS = {"get", "serialize", "deserialize", "Input", "Layer", "Loss", "Metric", "Optimizer"}


@cache
def catalog(kind: str) -> dict[str, Any]:
    """Every name a config may use for `kind`, mapped to the Keras class or function."""
    module, base = _MODULES[kind], _BASES.get(kind)
    found: dict[str, Any] = {}
    for name in dir(module):
        if name.startswith("_") or name in _NOT_OBJECTS:
            continue
        obj = getattr(module, name)
        if inspect.isclass(obj):
            if base is not None and issubclass(obj, base) and not inspect.isabstract(obj):
                found[name] = obj
        elif callable(obj) and kind in ("loss", "metric", "activation"):
            found[name] = obj
        elif callable(obj) and kind == "application" and name[:1].isupper():
            found[name] = obj
    if kind == "optimizer":
        # keras.optimizers.get accepts lower-case names (`adam`, `sgd`); so do configs.
        found.update({name.lower(): cls for name, cls in list(found.items())})
    return found


def list_names(kind: str, pattern: str = "*") -> list[str]:
    """The names of `kind` matching a shell-style pattern, sorted (e.g. `list_names('layer', 'Conv*')`)."""
    from fnmatch import fnmatchcase

    return sorted(n for n in catalog(kind) if fnmatchcase(n, pattern))


def _import(ref: str, loaded: LoadedConfig, path: Path_) -> Any:
    module_name, _, attr = ref.partition(":")
    for folder in reversed(import_folders(loaded)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise loaded.error(ConfigError, path, f"cannot import '{module_name}': {error}",
                           hint="put it next to the config or in the working folder, or pip install it") from None
    except Exception as error:  # the user's module raised while importing; their code, their message
        raise loaded.error(ConfigError, path, f"importing '{module_name}' failed: "
                                              f"{type(error).__name__}: {first_line(error)}") from None
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise loaded.error(ConfigError, path, f"'{module_name}' has no '{attr}'",
                           hint=did_you_mean(attr, names) or f"it defines: {', '.join(names[:12])}")
    return getattr(module, attr)


def import_folders(loaded: LoadedConfig) -> list[str]:
    """Where custom_objects are imported from: the config's folder, the working folder, and for a run
    folder the folders recorded when it was trained."""
    here = loaded.path.resolve().parent
    folders = [str(here), os.getcwd()]
    recorded = here / PYTHONPATH_FILE
    if recorded.is_file():
        folders += [line for line in recorded.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(folders))


def custom_folders(loaded: LoadedConfig) -> list[str]:
    """The folders the config's custom modules were really imported from (recorded in the run folder)."""
    folders = []
    for ref in loaded.config.custom_objects:
        module = sys.modules.get(ref.partition(":")[0])
        file = getattr(module, "__file__", None)
        if file is None:
            continue
        root = Path(file).resolve().parent
        for _ in range(ref.partition(":")[0].count(".") + (Path(file).name == "__init__.py")):
            root = root.parent
        folders.append(str(root))
    return list(dict.fromkeys(folders))


def custom_objects(loaded: LoadedConfig) -> dict[str, Any]:
    """The objects listed in `custom_objects`, imported, by name (also what `load_model` needs)."""
    if loaded.imported is None:  # once per config: lookups of every layer and metric come here
        require_trust(loaded)  # before sys.path or any import changes
        loaded.imported = {ref.partition(":")[2]: _import(ref, loaded, ("custom_objects", i))
                           for i, ref in enumerate(loaded.config.custom_objects)}
    return loaded.imported


def _fits(kind: str, obj: Any) -> bool:
    base = _BASES.get(kind)
    if inspect.isclass(obj):
        return base is not None and issubclass(obj, base)
    return callable(obj) and kind in ("loss", "metric", "activation")


def lookup(kind: str, name: str, loaded: LoadedConfig, path: Path_) -> Any:
    """The Keras class or function called `name`, or a ConfigError with the nearest names."""
    custom = custom_objects(loaded) if loaded.config.custom_objects else {}
    if name in custom:
        if not _fits(kind, custom[name]):
            what = type(custom[name]).__name__ if not inspect.isclass(custom[name]) else \
                next((k for k, b in _BASES.items() if issubclass(custom[name], b)), "class of another kind")
            raise loaded.error(ConfigError, path, f"custom object '{name}' is a {what}, not a {kind}",
                               hint=f"a {kind} here must subclass keras.{_MODULES[kind].__name__.split('.')[-1]}"
                                    f".{_BASES[kind].__name__}" if kind in _BASES else None)
        return custom[name]
    found = catalog(kind).get(name)
    if found is not None:
        return found
    if kind in ("loss", "metric"):
        try:  # Keras's own short names (`mse`, `mae`, `kld`, ...) are resolved by its `get`
            return _MODULES[kind].get(name)
        except (ValueError, TypeError):
            pass
    if kind == "layer":  # a name Keras lacks may be KerasHub's (keras_hub.layers.X names it explicitly)
        from dltrain.model.hub import hub_layer

        try:
            hub = hub_layer(name)
        except ConfigError as error:  # a KerasHub name without KerasHub installed
            raise loaded.error(ConfigError, path, f"layer '{name}' is KerasHub's: {error.message}",
                               hint=error.hint) from None
        if hub is not None:
            return hub
    names = list(catalog(kind)) + list(custom)
    if kind == "metric":
        names += list(_COMPILE_METRICS)
    if kind == "layer":  # a layer's place also takes backbones, the config's blocks and KerasHub's layers
        from dltrain.model.hub import hub_layer_names

        names += list(catalog("application")) + list(loaded.config.blocks) + hub_layer_names()
    hint = did_you_mean(name, names) or f"see the names in keras.{_MODULES[kind].__name__.split('.')[-1]}"
    raise loaded.error(ConfigError, path, f"unknown {kind} '{name}'", hint=hint)


def accepted_arguments(cls: type) -> tuple[set[str], list[str]]:
    """The keyword arguments a Keras class takes (its own and its bases'), and the required ones."""
    accepted: set[str] = set()
    required: list[str] = []
    own = True
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        takes_more = False
        for param in list(inspect.signature(init).parameters.values())[1:]:
            if param.kind is param.VAR_KEYWORD:
                takes_more = True
            elif param.kind is not param.VAR_POSITIONAL:
                accepted.add(param.name)
                if own and param.default is param.empty:
                    required.append(param.name)
        own = False
        # Keras base classes end the chain: their **kwargs only carry deprecated aliases.
        if not takes_more or klass in _BASES.values():
            break
    return accepted, required


def check_arguments(cls: type, kwargs: dict[str, Any], loaded: LoadedConfig, path: Path_) -> None:
    """Check keyword arguments against the real constructor: unknown ones and missing required ones."""
    accepted, required = accepted_arguments(cls)
    for key in kwargs:
        if key not in accepted:
            hint = (f"did you mean '{_ALIASES[key]}'?" if _ALIASES.get(key) in accepted else None) \
                or did_you_mean(key, sorted(accepted)) or f"{cls.__name__} takes: {', '.join(sorted(accepted))}"
            raise loaded.error(ConfigError, path + (key,), f"unknown argument '{key}' of {cls.__name__}", hint=hint)
    missing = [name for name in required if name not in kwargs]
    if missing:
        example = ", ".join(f"{m}: ..." for m in missing)
        raise loaded.error(ConfigError, path, f"{cls.__name__} needs the argument '{missing[0]}'",
                           hint=f"write {{{cls.__name__}: {{{example}}}}}")


def _nested_kind(argument: str) -> str | None:
    for suffix, kind in _NESTED:
        if argument == suffix or (suffix.startswith("_") and argument.endswith(suffix)):
            return kind
    return None


def _nested(argument: str, value: Any, loaded: LoadedConfig, path: Path_) -> Any:
    kind = _nested_kind(argument)
    if kind is None:
        return value
    if isinstance(value, dict) and len(value) == 1:
        (name,) = value
        if isinstance(name, str) and isinstance(value[name], (dict, type(None))):
            return build(kind, value, loaded, path)
    if isinstance(value, str) and kind not in ("layer", "schedule"):
        getter = _MODULES[kind].get
        try:
            getter(value)
        except (ValueError, TypeError):
            names = [n for n in catalog(kind) if n[:1].islower()] or list(catalog(kind))
            hint = did_you_mean(value, names) or f"see the names in keras.{kind}s"
            raise loaded.error(ConfigError, path, f"unknown {kind} '{value}'", hint=hint) from None
    return value


# Layers that run code or read files a config does not show; allowed only with `safe_mode: false`.
_UNSAFE_LAYERS = {
    "Lambda": "runs arbitrary Python code",
    "TFSMLayer": "loads and runs a TensorFlow SavedModel from a path",
}
_VOCABULARY_LAYERS = ("StringLookup", "IntegerLookup", "TextVectorization")


def _check_safe(name: str, kwargs: dict[str, Any], loaded: LoadedConfig, path: Path_) -> dict[str, Any]:
    """Refuse what can run code or read files unless the config turns safe_mode off; resolve Lambda's function."""
    safe = loaded.config.safe_mode
    if name in _UNSAFE_LAYERS and safe:
        raise loaded.error(ConfigError, path, f"{name} {_UNSAFE_LAYERS[name]}, so configs refuse it",
                           hint="write a Layer subclass and list it in custom_objects, "
                                "or set safe_mode: false if you trust this config")
    if name in _VOCABULARY_LAYERS and isinstance(kwargs.get("vocabulary"), str) and safe:
        raise loaded.error(ConfigError, path + ("vocabulary",),
                           f"{name} would read its vocabulary from the file '{kwargs['vocabulary']}'",
                           hint="give the vocabulary as a list, or set safe_mode: false if you trust this config")
    if name == "Lambda" and isinstance(kwargs.get("function"), str):
        custom = custom_objects(loaded)
        function = custom.get(kwargs["function"])
        if not callable(function):
            raise loaded.error(ConfigError, path + ("function",),
                               f"function '{kwargs['function']}' is not in custom_objects",
                               hint="list it there, e.g. custom_objects: [mymodule:" + kwargs["function"] + "]")
        kwargs = {**kwargs, "function": function}
    return kwargs


def build(kind: str, spec: str | dict[str, Any], loaded: LoadedConfig, path: Path_) -> Any:
    """Turn one config entry into a Keras object (`path` is where the entry was written)."""
    name, kwargs = split_spec(spec)
    if kind == "metric" and isinstance(spec, str) and name in _COMPILE_METRICS:
        return name
    entry_path = path + (name,) if isinstance(spec, dict) else path
    obj = lookup(kind, name, loaded, entry_path)
    if not inspect.isclass(obj):
        if kwargs:
            classes = [n for n, c in catalog(kind).items() if inspect.isclass(c)]
            camel = name.replace("_", "").lower()
            match = next((n for n in classes if n.lower() == camel), None)
            raise loaded.error(ConfigError, entry_path, f"'{name}' is a function and takes no arguments",
                               hint=f"use the class '{match}' to pass arguments" if match else None)
        # Keras's own loss and metric functions go to compile by name, which picks their Keras 3 wrappers.
        return name if kind in ("loss", "metric") and catalog(kind).get(name) is obj else obj
    if kind == "layer" and obj is catalog("layer").get(name):
        kwargs = _check_safe(name, kwargs, loaded, entry_path)
    kwargs = {key: _nested(key, value, loaded, entry_path + (key,)) for key, value in kwargs.items()}
    check_arguments(obj, kwargs, loaded, entry_path)
    try:
        return obj(**kwargs)
    except (ValueError, TypeError) as error:
        raise loaded.error(ConfigError, entry_path, f"Keras rejected the arguments of {name}: {first_line(error)}",
                           hint=f"check each value's type and range against help(keras.{_MODULES[kind].__name__.split('.')[-1]}.{name})") from None
