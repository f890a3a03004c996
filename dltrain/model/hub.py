"""`model.task`: a KerasHub task (TextClassifier, CausalLM, ImageClassifier, ...) from a preset, with its
preprocessor's sequence_length or image_size, LoRA adapters (`model.lora`) and a frozen backbone. The
class and its arguments are checked against the real class before a preset is read or downloaded."""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from functools import cache
from types import ModuleType
from typing import Any

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain.config import LoadedConfig, did_you_mean
from dltrain.errors import ConfigError, ModelBuildError, UntrustedCodeError, first_line
import dltrain.model.presets as presets

INSTALL_HINT = "pip install 'dltrain[hub]'"
# from_preset's arguments dltrain sets itself, or that come from the preset.
_FROM_PRESET = ("preset", "load_weights")
_PREPROCESSOR_KEYS = ("sequence_length", "image_size")
_FROM_THE_PRESET = {"backbone": "the backbone comes from the preset; write backbone: {trainable: false} to freeze it",
                    "preprocessor": "the preprocessor comes from the preset; set sequence_length or image_size"}
_LAYER_KEYS = ("name", "dtype")


def keras_hub() -> ModuleType:
    """KerasHub, imported here and nowhere else; missing, one line says what to install."""
    try:
        import keras_hub as module
    except ImportError as error:
        raise ConfigError(f"this config uses KerasHub, which is not installed ({first_line(error)})",
                          hint=INSTALL_HINT) from None
    return module


def takes_text(model: Any) -> bool:
    """Whether a KerasHub task's preprocessor tokenizes text (else it converts images, audio, ...)."""
    return getattr(getattr(model, "preprocessor", None), "tokenizer", None) is not None


def is_task(model: Any) -> bool:
    """Whether a model is a KerasHub task (its preprocessor runs in fit, evaluate and predict)."""
    return any(cls.__module__.startswith("keras_hub.") and cls.__name__ == "Task" for cls in type(model).__mro__)


@cache
def task_classes() -> dict[str, type]:
    """Every keras_hub.models task class, by name."""
    hub = keras_hub()
    base = hub.models.Task
    return {name: obj for name in dir(hub.models) if inspect.isclass(obj := getattr(hub.models, name))
            and issubclass(obj, base)}


def _own_arguments(cls: type) -> set[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def task_arguments(cls: type) -> set[str]:
    """The keyword arguments a task class takes; a generic class (TextClassifier) takes its subclasses'."""
    accepted = _own_arguments(cls)
    if any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(cls.__init__).parameters.values()):
        for other in task_classes().values():
            if other is not cls and issubclass(other, cls):
                accepted |= _own_arguments(other)
    accepted.discard("compile")
    return accepted | set(_LAYER_KEYS)


def split_task(loaded: LoadedConfig) -> tuple[str, type, dict[str, Any]]:
    """The task's class name, class and keyword arguments; unknown names and arguments are errors."""
    (name, kwargs), = loaded.config.model.task.items()
    at = ("model", "task", name)
    classes = task_classes()
    if name not in classes:
        raise loaded.error(ConfigError, ("model", "task"), f"unknown KerasHub task '{name}'",
                           hint=did_you_mean(name, list(classes)) or
                           "see keras_hub.models: TextClassifier, ImageClassifier, CausalLM, Seq2SeqLM, ...")
    cls = classes[name]
    kwargs = dict(kwargs or {})
    accepted = task_arguments(cls)
    for key in kwargs:
        if key in _FROM_PRESET or key in _PREPROCESSOR_KEYS:
            continue
        if key in _FROM_THE_PRESET and not (key == "backbone" and isinstance(kwargs[key], dict)):
            raise loaded.error(ConfigError, at + (key,), f"'{key}' is not given in a config", hint=_FROM_THE_PRESET[key])
        if key == "backbone":
            extra = [k for k in kwargs[key] if k != "trainable"]
            if extra or not isinstance(kwargs[key].get("trainable", True), bool):
                raise loaded.error(ConfigError, at + (key,) + ((extra[0],) if extra else ("trainable",)),
                                   "the backbone takes only 'trainable: false' here",
                                   hint="the backbone's other settings come from the preset")
            continue
        if key not in accepted:
            names = sorted(accepted | set(_PREPROCESSOR_KEYS) | {"preset", "load_weights"})
            raise loaded.error(ConfigError, at + (key,), f"unknown argument '{key}' of {name}",
                               hint=did_you_mean(key, names) or f"{name} takes: {', '.join(names)}")
    if not isinstance(kwargs.get("preset"), str):
        raise loaded.error(ConfigError, at, f"{name} needs a preset",
                           hint="write preset: a KerasHub handle (bert_tiny_en_uncased), kaggle://..., hf://... "
                                "or a local preset folder")
    return name, cls, kwargs


def _looks_like_a_folder(preset: str) -> bool:
    return preset.startswith((".", "/", "~")) or "/" in preset or "\\" in preset


def _located(loaded: LoadedConfig, at: tuple, preset: str) -> presets.Preset:
    """The preset's folder, or (online only) the handle KerasHub downloads; offline a one-line error."""
    from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

    found = presets.locate(preset, BUILTIN_PRESETS)
    if found.local:
        return found
    if found.origin is None:
        if _looks_like_a_folder(preset):
            raise loaded.error(ConfigError, at, f"preset folder '{preset}' not found",
                               hint="a relative path is read from the working folder")
        raise loaded.error(ConfigError, at, f"preset '{preset}' is neither a folder nor a KerasHub handle",
                           hint=did_you_mean(preset, list(BUILTIN_PRESETS)) or "write a folder save_to_preset "
                           "wrote, a KerasHub handle (bert_tiny_en_uncased), kaggle://org/model/keras/variant "
                           "or hf://org/model")
    presets.check_download(loaded, at, found)
    return found


def _check_trust(loaded: LoadedConfig, at: tuple, found: presets.Preset) -> None:
    code = presets.code_in(found.folder) if found.local else None
    if code is not None and not loaded.trust_code:
        file, class_name = code
        raise loaded.error(UntrustedCodeError, at,
                           f"preset '{found.name}' names {class_name} in {file}, which "
                           + ("runs Python code" if class_name in presets.CODE_CLASSES else "Keras has not registered")
                           + " when loaded", hint="pass --trust-code if you trust this preset")


def _from_preset(loaded: LoadedConfig, name: str, cls: type, kwargs: dict[str, Any], found: presets.Preset,
                 custom: dict[str, Any], at: tuple | None = None) -> Any:
    from keras.src.saving.serialization_lib import SafeModeScope

    arguments = {k: v for k, v in kwargs.items() if k not in ("preset", "backbone", *_PREPROCESSOR_KEYS)}
    source = str(found.folder) if found.local else found.name
    at = at or ("model", "task", name)
    try:
        # Keras deserialises the preset's configs in safe mode (no Lambda bytecode); --trust-code lifts it.
        with (SafeModeScope(False) if loaded.trust_code else nullcontext()), keras.saving.custom_object_scope(custom):
            return cls.from_preset(source, **arguments)
    except Exception as error:  # Keras and KerasHub raise TypeError, ValueError, FileNotFoundError, ...
        if not found.local and not isinstance(error, (TypeError, ValueError)):
            # requests, kagglehub and huggingface_hub raise their own types for a failed download
            raise loaded.error(ModelBuildError, at + ("preset",), f"preset '{found.name}' could not be downloaded "
                               f"from {found.origin}: {first_line(error, limit=160)}", hint=presets.LOCAL_HINT) from None
        raise loaded.error(ConfigError, at, f"KerasHub cannot build {name} from preset '{found.name}': "
                           f"{first_line(error)}", hint=f"check the arguments against help(keras_hub.models.{name})"
                           ) from None


def _takes(preprocessor: Any, key: str) -> bool:
    """Whether a preprocessor has a tokenizer (sequence_length) or an image converter (image_size) to set."""
    part = "tokenizer" if key == "sequence_length" else "image_converter"
    return preprocessor is not None and getattr(preprocessor, part, None) is not None and hasattr(preprocessor, key)


def _preprocessor(loaded: LoadedConfig, name: str, task: Any, kwargs: dict[str, Any]) -> None:
    """`sequence_length` and `image_size` go to the task's preprocessor."""
    preprocessor = getattr(task, "preprocessor", None)
    for key in _PREPROCESSOR_KEYS:
        if key not in kwargs:
            continue
        value = kwargs[key]
        at = ("model", "task", name, key)
        if not _takes(preprocessor, key):
            other = next((k for k in _PREPROCESSOR_KEYS if k != key and _takes(preprocessor, k)), None)
            raise loaded.error(ConfigError, at, f"{type(task).__name__}'s preprocessor has no {key}",
                               hint=f"it takes {other}" if other else "remove it")
        if key == "image_size":
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
                raise loaded.error(ConfigError, at, f"expected [height, width], got {value!r}")
            value = tuple(value)
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise loaded.error(ConfigError, at, f"expected a positive integer, got {value!r}")
        try:
            setattr(preprocessor, key, value)
        except ValueError as error:
            raise loaded.error(ConfigError, at, f"KerasHub refused {key}: {first_line(error)}") from None


def apply_lora(loaded: LoadedConfig, task: Any) -> None:
    """`model.lora`: adapters on the backbone's target layers; every other backbone weight frozen."""
    lora = loaded.config.model.lora
    if lora is None:
        return
    backbone = task.backbone
    names = lora.target_layer_names or backbone.default_lora_layer_names()
    present = {layer.name for layer in backbone._flatten_layers(include_self=False) if hasattr(layer, "enable_lora")}
    for i, target in enumerate(lora.target_layer_names or []):
        if target not in present:
            raise loaded.error(ConfigError, ("model", "lora", "target_layer_names", i),
                               f"{type(backbone).__name__} has no layer '{target}' that takes LoRA",
                               hint=did_you_mean(target, sorted(present)) or f"its layers: {', '.join(sorted(present))}")
    if not present & set(names):
        raise loaded.error(ConfigError, ("model", "lora"), f"no layer of {type(backbone).__name__} is called "
                           f"{', '.join(names)}", hint=f"set target_layer_names to some of: {', '.join(sorted(present))}")
    backbone.enable_lora(lora.rank, target_layer_names=list(names))


def build_task(loaded: LoadedConfig, num_classes: int | None = None, custom: dict[str, Any] | None = None
               ) -> keras.Model:
    """The configured KerasHub task, from its preset, with its preprocessor, LoRA and backbone settings
    (`custom`: the config's custom objects, which a trusted preset may name)."""
    name, cls, kwargs = split_task(loaded)
    at = ("model", "task", name, "preset")
    found = _located(loaded, at, kwargs["preset"])
    _check_trust(loaded, at, found)
    task = _from_preset(loaded, name, cls, kwargs, found, custom or {})
    _preprocessor(loaded, name, task, kwargs)
    if isinstance(kwargs.get("backbone"), dict) and kwargs["backbone"].get("trainable") is False:
        task.backbone.trainable = False
    apply_lora(loaded, task)
    classes = getattr(task, "num_classes", None)
    if num_classes is not None and isinstance(classes, int) and classes != num_classes:
        raise loaded.error(ConfigError, ("model", "task", name), f"the task has {classes} classes, the dataset "
                           f"{num_classes}", hint="write num_classes: ${dataset.num_classes}")
    return task


# KerasHub layer names a config may use bare when Keras has no layer of that name; any other KerasHub layer
# is written keras_hub.layers.Name. Listed here so that, without KerasHub, they say what to install.
HUB_LAYER_PREFIX = "keras_hub.layers."
_KNOWN_LAYERS = ("TransformerEncoder", "TransformerDecoder", "TokenAndPositionEmbedding", "PositionEmbedding",
                 "SinePositionEncoding", "RotaryEmbedding", "CachedMultiHeadAttention", "FNetEncoder",
                 "MaskedLMHead", "ReversibleEmbedding", "AlibiBias", "StartEndPacker", "MultiSegmentPacker")


def hub_layer(name: str) -> type | None:
    """The KerasHub layer class a config names (bare, or `keras_hub.layers.X`); None if KerasHub has none."""
    explicit = name.startswith(HUB_LAYER_PREFIX)
    short = name.removeprefix(HUB_LAYER_PREFIX)
    if not explicit and short not in _KNOWN_LAYERS and not short.endswith("Backbone"):
        try:
            import keras_hub as _installed  # noqa: F401  (a name only KerasHub may have is looked up there)
        except ImportError:
            return None
    found = getattr(keras_hub().layers, short, None)
    return found if isinstance(found, type) and issubclass(found, keras.layers.Layer) else None


def hub_layer_names() -> list[str]:
    """KerasHub's layer names (for did-you-mean), empty without KerasHub."""
    try:
        import keras_hub as module
    except ImportError:
        return []
    return [n for n in dir(module.layers) if not n.startswith("_")]


def is_backbone_name(name: str) -> bool:
    """`*Backbone`: a KerasHub backbone used as a layer (`ResNetBackbone: {preset: ...}`)."""
    return name.endswith("Backbone") and name[:1].isupper()


def backbone_layer(name: str, kwargs: dict[str, Any], loaded: LoadedConfig, path: tuple,
                   custom: dict[str, Any] | None = None) -> Any:
    """A KerasHub backbone from its preset, as a layer of model.layers; `trainable: false` freezes it."""
    at = path + (name,)
    hub = keras_hub()
    classes = {n: c for n in dir(hub.models) if isinstance(c := getattr(hub.models, n), type)
               and issubclass(c, hub.models.Backbone)}
    if name not in classes:
        raise loaded.error(ConfigError, at, f"unknown KerasHub backbone '{name}'",
                           hint=did_you_mean(name, list(classes)) or "see keras_hub.models: ResNetBackbone, ...")
    kwargs = dict(kwargs)
    trainable = kwargs.pop("trainable", True)
    if not isinstance(kwargs.get("preset"), str):
        raise loaded.error(ConfigError, at, f"{name} needs a preset", hint="write preset: a handle or a preset folder")
    for key in kwargs:
        if key not in ("preset", "load_weights", "name", "dtype"):
            raise loaded.error(ConfigError, at + (key,), f"unknown argument '{key}' of {name} from a preset",
                               hint=did_you_mean(key, ["preset", "load_weights", "trainable", "name", "dtype"])
                               or "the backbone's settings come from the preset")
    found = _located(loaded, at + ("preset",), kwargs["preset"])
    _check_trust(loaded, at + ("preset",), found)
    backbone = _from_preset(loaded, name, classes[name], kwargs, found, custom or {}, at)
    backbone.trainable = bool(trainable)
    return backbone
