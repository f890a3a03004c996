"""A `validation:` or `test:` source of its own takes the keys of its format; unset, they are the main
source's. Keys that decide what an example is must agree with the training data's, since one model reads
every split: the error names both lines."""

from __future__ import annotations

import json
from typing import Any

from dltrain.config.formats import SOURCE_KEYS, infer_format
from dltrain.config.loaded import LoadedConfig
from dltrain.errors import ConfigError

SPLITS = ("validation", "test")
# The formats a split source may have (tfds and the built-ins bring their own splits).
_SPLIT_FORMATS = SOURCE_KEYS["test"]
# Keys a split source may not set to another value than the training data's, and why.
_SHAPING = {
    "image_size": "would give the {which} images another shape than the training images",
    "color_mode": "would give the {which} images another number of channels than the training images",
    "task": "would make the {which} labels another kind than the training labels",
    "text": "would give the model other free-text inputs than the training data's",
    "sampling_rate": "would let the {which} sounds have another sampling rate than the training sounds",
    **{key: "is a setting of the model's TextVectorization, which is adapted on the training texts and reads every "
            "split" for key in ("max_tokens", "output_sequence_length", "output_mode", "ngrams")},
}


def _shown(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _written(loaded: LoadedConfig, key: str) -> str:
    """The main source's value of `key` and where it was written (or that it is the default)."""
    value = _shown(getattr(loaded.config.dataset, key))
    path = ("dataset", key)
    if path in loaded.source.positions:
        return f"dataset.{key} is {value} at {loaded.locate(path)}"
    return f"dataset.{key} is {value}, the default"


def check_split_sources(loaded: LoadedConfig) -> None:
    """Each key a split source sets must apply to its format and, if it shapes examples, match the main source."""
    dataset = loaded.config.dataset
    for which in SPLITS:
        source = getattr(dataset, which)
        if source is None:
            continue
        kind = source.format or dataset.format or infer_format(source.path) or dataset.kind
        own: dict[str, Any] = {k: v for k, v in source.settings().items() if k not in ("path", "format")}

        def position(key: str) -> tuple[int, int]:
            found = loaded.locate(("dataset", which, key))
            return (found.line or 0, found.column or 0) if found is not None else (0, 0)

        for key in sorted(own, key=position):
            path = ("dataset", which, key)
            users = SOURCE_KEYS.get(key)
            if users is not None and kind and kind not in users:
                raise loaded.error(ConfigError, path, f"'{key}' does not apply to '{kind}' sources",
                                   hint=f"remove it; it applies to: {', '.join(sorted(users & _SPLIT_FORMATS))}")
            if key in _SHAPING and own[key] != getattr(dataset, key):
                raise loaded.error(ConfigError, path, f"{_shown(own[key])} {_SHAPING[key].format(which=which)}; "
                                   f"{_written(loaded, key)}",
                                   hint=f"remove it: unset, the {which} source takes the training data's; or give "
                                        f"dataset.{key} the same value")
