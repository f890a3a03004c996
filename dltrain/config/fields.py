"""What every config section is made of: Keras specs (a name or {Class: kwargs}), thread counts, import
paths, and sections that refuse unknown keys with a suggestion."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from dltrain.config.hints import did_you_mean, short


def split_spec(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a config entry (`Flatten` or `{Dense: {units: 8}}`) into its name and keyword arguments."""
    if isinstance(spec, str):
        return spec, {}
    (name, kwargs), = spec.items()
    return name, dict(kwargs or {})


def _check_spec(value: Any) -> Any:
    """Accept a bare name or a one-key mapping from a name to its keyword arguments."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and len(value) == 1:
        (name, kwargs), = value.items()
        if isinstance(kwargs, dict) or kwargs is None:
            return {name: kwargs or {}}
        raise PydanticCustomError(
            "spec_kwargs",
            "arguments of '{name}' must be a mapping like {example}, got {got}",
            {"name": name, "got": short(kwargs), "example": "{units: 10}"},
        )
    raise PydanticCustomError(
        "spec",
        "expected a name like 'Dense' or a one-key mapping like {example}, got {got}",
        {"got": short(value), "example": "{Dense: {units: 10}}"},
    )


# A bare name (`Flatten`, `adam`) or a one-key mapping from a Keras class name to its kwargs.
Spec = Annotated[str | dict[str, dict[str, Any]], BeforeValidator(_check_spec)]


def _check_threads(value: Any) -> Any:
    """Accept a thread count >= 0, "auto" or None (TensorFlow's own choice)."""
    if value is None or value == "auto" or (type(value) is int and value >= 0):
        return value
    raise PydanticCustomError("threads", "expected a thread count >= 0, 'auto' or null, got {got}",
                              {"got": short(value)})


# A size for one of TensorFlow's thread pools (see TrainingConfig).
Threads = Annotated[int | Literal["auto"] | None, BeforeValidator(_check_threads)]


class Section(BaseModel):
    """A config section: unknown keys are errors with a suggestion, never silently dropped."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    hint = did_you_mean(str(key), list(cls.model_fields))
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key '{key}'",
                        {"key": str(key), "hint": hint or f"expected one of: {', '.join(cls.model_fields)}"},
                    )
        return data


_IMPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def _check_import_path(value: Any) -> Any:
    if isinstance(value, str) and _IMPORT_PATH.match(value):
        return value
    raise PydanticCustomError(
        "import_path", "expected an import path like 'mypackage.layers:MyBlock', got {got}",
        {"got": short(value), "hint": "a module path, a colon, then the name defined in that module"},
    )


# A config's import path for its own code (`custom_objects`): checked as text, imported only elsewhere.
ImportPath = Annotated[str, BeforeValidator(_check_import_path)]

# A run name: it becomes a folder name.
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
