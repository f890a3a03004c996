"""The config: load (extends, --set), validate against the schema, report errors by line. No TensorFlow."""

from __future__ import annotations

import copy
import difflib
import heapq
import math
from contextlib import AbstractContextManager, contextmanager
import os
import re
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from dltrain.errors import ConfigError, DataError, Location
from dltrain.references import DATA_FACTS, Resolver, parse_ref
from dltrain.yamlsource import Path_, SourceMap, dotted, parse_yaml, read_yaml

BUILTIN_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "imdb", "reuters", "california_housing")
DATASET_NAMES = (*BUILTIN_NAMES, "synthetic")
FORMATS = ("npz", "npy", "csv", "parquet", "images", "text", "tfds")
# Which sources each source-specific dataset key applies to ("path" formats and built-in names).
SOURCE_KEYS: dict[str, set[str]] = {
    "input_shape": {"synthetic"},
    "num_classes": {"synthetic"},
    "features": {"npz", "npy", "csv", "parquet"},
    "label": {"npz", "npy", "csv", "parquet"},
    "task": {"npz", "npy", "csv", "parquet"},
    "test_split": {"npz", "npy", "csv", "parquet", "images", "text", "tfds", "california_housing", "reuters"},
    "image_size": {"images", "tfds"},
    "color_mode": {"images"},
    "interpolation": {"images", "tfds"},
    "crop_to_aspect_ratio": {"images"},
    "class_names": {"text"},  # images too once data/images.py reads it (text.class_folders does the choosing)
    "max_tokens": {"text", "tfds"},
    "output_sequence_length": {"text", "tfds"},
    "output_mode": {"text", "tfds"},
    "ngrams": {"text", "tfds"},
    "num_words": {"imdb", "reuters"},
    "maxlen": {"imdb", "reuters"},
    "label_mode": {"cifar100"},
    "validation": {"npz", "npy", "csv", "parquet", "images", "text"},
    "test": {"npz", "npy", "csv", "parquet", "images", "text"},
    "train_size": None, "test_size": None,
}
SUFFIX_FORMATS = {".npz": "npz", ".npy": "npy", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # those image_dataset_from_directory reads


def infer_format(path: str) -> str:
    """The format a path's suffix names, or a folder's files show ("" when neither tells)."""
    found = Path(path)
    if found.is_dir():
        # A folder of .npy arrays, or class folders of images or of text files: the first file tells.
        if any(found.glob("*.npy")):
            return "npy"
        for sub in sorted(p for p in found.iterdir() if p.is_dir()):
            # The first 20 names without sorting the whole folder (80 ms for 10,000 files; this takes 4 ms).
            for name in heapq.nsmallest(20, (entry.name for entry in os.scandir(sub))):
                suffix = os.path.splitext(name)[1].lower()
                if suffix in IMAGE_SUFFIXES:
                    return "images"
                if suffix == ".txt":
                    return "text"
        return ""
    return SUFFIX_FORMATS.get(found.suffix.lower(), "")


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...]) -> str | None:
    """A 'did you mean ...?' hint for a misspelt name, or None when nothing is close."""
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered:
        return f"did you mean '{lowered[name.lower()]}'?"
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)]
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


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
            {"name": name, "got": _short(kwargs), "example": "{units: 10}"},
        )
    raise PydanticCustomError(
        "spec",
        "expected a name like 'Dense' or a one-key mapping like {example}, got {got}",
        {"got": _short(value), "example": "{Dense: {units: 10}}"},
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# A bare name (`Flatten`, `adam`) or a one-key mapping from a Keras class name to its kwargs.
Spec = Annotated[str | dict[str, dict[str, Any]], BeforeValidator(_check_spec)]


def _check_threads(value: Any) -> Any:
    """Accept a thread count >= 0, "auto" or None (TensorFlow's own choice)."""
    if value is None or value == "auto" or (type(value) is int and value >= 0):
        return value
    raise PydanticCustomError("threads", "expected a thread count >= 0, 'auto' or null, got {got}",
                              {"got": _short(value)})


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


class SourceConfig(Section):
    """Another file or folder in the same format: an explicit `validation:` or `test:` source."""

    path: str
    format: str | None = None
    features: str | list[str] | None = None
    label: str | None = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        return absolute_path(path)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        return _check_format(value)


def absolute_path(path: str) -> str:
    """A data path as an absolute path: relative paths are read from the working folder, and the run
    folder's config must still find the data when it is evaluated or resumed from elsewhere."""
    return str(Path(os.path.expanduser(path)).absolute())


def _check_format(value: str | None) -> str | None:
    if value is not None and value not in FORMATS:
        raise PydanticCustomError(
            "unknown_format", "unknown format '{name}'",
            {"name": value, "hint": did_you_mean(value, FORMATS) or f"expected one of: {', '.join(FORMATS)}"})
    return value


class DatasetConfig(Section):
    """Where the examples come from and how they are split: a built-in `name`, or `path` + `format`.

    Source-specific keys are named after the Keras argument they feed (`image_size`, `color_mode`,
    `max_tokens`, `num_words`, ...); a key given to a source that does not use it is an error.
    """

    # `format` is validated before `name`: a TFDS name is any of its catalog's, not one of ours.
    format: str | None = None
    name: str | None = None
    path: str | None = None
    # Arrays and tables: which arrays or columns hold the features and the labels.
    features: str | list[str] | None = None
    label: str | None = None
    task: Literal["classification", "regression"] | None = None
    validation_split: float = Field(0.1, ge=0.0, lt=1.0)
    test_split: float | None = Field(None, gt=0.0, lt=1.0)
    validation: SourceConfig | None = None
    test: SourceConfig | None = None
    data_dir: str | None = None
    train_size: int | None = Field(None, ge=1)
    test_size: int | None = Field(None, ge=1)
    # Only for `synthetic`: the shape of one example and the number of classes.
    input_shape: list[int] | None = None
    num_classes: int | None = Field(None, ge=2)
    # Image folders (keras.utils.image_dataset_from_directory's arguments and defaults).
    image_size: list[int] = Field(default_factory=lambda: [256, 256], min_length=2, max_length=2)
    color_mode: Literal["grayscale", "rgb", "rgba"] = "rgb"
    interpolation: Literal["bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian",
                           "mitchellcubic"] = "bilinear"
    crop_to_aspect_ratio: bool = False
    # Text folders: which class folders to read, in label order (Keras's `class_names`: a subset
    # of the folders, e.g. aclImdb/train's neg and pos without unsup). None: every folder, sorted by name.
    class_names: list[str] | None = Field(None, min_length=2)
    # Text folders and TFDS text datasets (keras.layers.TextVectorization's arguments).
    max_tokens: int | None = Field(None, ge=2)
    output_sequence_length: int | None = Field(None, ge=1)
    output_mode: Literal["int", "multi_hot", "count", "tf_idf"] = "int"
    ngrams: int | None = Field(None, ge=1)
    # imdb and reuters (keras.datasets' arguments): vocabulary size and sequence length. As in Keras,
    # `maxlen` leaves out sequences of maxlen tokens or more; the rest are padded to maxlen. Without it
    # every sequence is padded or cut to its last 200 tokens (builtins.DEFAULT_MAXLEN).
    num_words: int | None = Field(None, ge=1)
    maxlen: int | None = Field(None, ge=1)
    # cifar100: "fine" (100 classes) or "coarse" (20).
    label_mode: Literal["fine", "coarse"] = "fine"
    # Keras preprocessing layers applied to training batches only (RandomFlip, RandomRotation, ...).
    augmentation: list[Spec] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str | None, info: ValidationInfo) -> str | None:
        if name is not None and info.data.get("format") != "tfds" and name not in DATASET_NAMES:
            raise PydanticCustomError(
                "unknown_dataset",
                "unknown dataset '{name}'",
                {"name": name, "hint": did_you_mean(name, DATASET_NAMES)
                 or f"expected one of: {', '.join(DATASET_NAMES)}, or path: and format:"},
            )
        return name

    @field_validator("path", "data_dir")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:
        return None if path is None else absolute_path(path)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        return _check_format(value)

    @property
    def kind(self) -> str:
        """The source: a built-in's name, or the format of `path` ("" when it must be read off the folder)."""
        if self.format == "tfds":
            return "tfds"
        if self.name is not None:
            return self.name
        return self.format or infer_format(self.path or "")

    def dump(self) -> dict[str, Any]:
        """Plain data without the keys of other sources (their defaults would read as if they applied)."""
        kind = self.kind
        return {key: value for key, value in self.model_dump(mode="json").items()
                if not (kind and SOURCE_KEYS.get(key) is not None and kind not in SOURCE_KEYS[key])}

    @model_validator(mode="after")
    def _source_keys(self) -> DatasetConfig:
        if self.format == "tfds":
            if self.path is not None:
                raise PydanticCustomError("tfds_path", "a tfds source is named, not given a path",
                                          {"key": "path", "hint": "remove 'path' and give the TFDS name in 'name'"})
        elif (self.name is None) == (self.path is None):
            raise PydanticCustomError(
                "one_source", "give either 'name' (a built-in dataset) or 'path' (with 'format'), not "
                + ("both" if self.name else "neither"),
                {**({"key": "path"} if self.name else {}),
                 "hint": f"built-ins: {', '.join(DATASET_NAMES)}; formats: {', '.join(FORMATS)}"})
        if self.name is not None and self.format is not None and self.format != "tfds":
            raise PydanticCustomError("name_format", "'format' applies only to a 'path' source",
                                      {"key": "format", "hint": f"remove it; {self.name} is a built-in"})
        kind = self.kind
        for key in self.model_fields_set:
            users = SOURCE_KEYS.get(key)
            if users is not None and kind and kind not in users:
                where = f"the {kind} dataset" if self.name and kind != "tfds" else f"'{kind}' sources"
                raise PydanticCustomError(
                    "source_key", "'{key}' does not apply to {where}",
                    {"key": key, "where": where,
                     "hint": f"remove it; it applies to: {', '.join(sorted(users))}"})
        if kind == "text" and self.output_mode != "int" and self.max_tokens is None:
            # The vector has one entry per vocabulary word; the model's layers are built on its length.
            raise PydanticCustomError(
                "max_tokens", "output_mode '{mode}' needs max_tokens (the length of each text's vector)",
                {"key": "output_mode", "mode": self.output_mode, "hint": "add e.g. 'max_tokens: 20000' under 'dataset'"})
        if self.validation is not None and "validation_split" in self.model_fields_set:
            raise PydanticCustomError("validation_twice", "give either 'validation_split' or 'validation', not both",
                                      {"key": "validation", "hint": "'validation' is a source of its own; remove 'validation_split'"})
        if self.test is not None and self.test_split is not None:
            raise PydanticCustomError("test_twice", "give either 'test_split' or 'test', not both",
                                      {"key": "test", "hint": "'test' is a source of its own; remove 'test_split'"})
        return self


class ModelConfig(Section):
    """The network: a list of Keras layers, optionally wired as a graph."""

    input_shape: list[int | None] | None = None
    inputs: dict[str, list[int | None]] | None = None
    layers: list[Spec] = Field(min_length=1)
    outputs: list[str] | None = None

    @model_validator(mode="after")
    def _one_way_to_give_inputs(self) -> ModelConfig:
        if self.input_shape is not None and self.inputs is not None:
            raise PydanticCustomError(
                "inputs_twice",
                "give either 'input_shape' or 'inputs', not both",
                {"hint": "use 'inputs' for a model with several named inputs"},
            )
        return self


class TrainingConfig(Section):
    """How `fit` runs. Keras's own argument names and defaults."""

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    callbacks: list[Spec] = Field(default_factory=list)
    shuffle: bool = True
    # None shuffles the whole training split (it is in memory), so every epoch sees a fresh order.
    shuffle_buffer: int | None = Field(None, ge=1)
    # Keras's default is 1; 50 halves the Fashion-MNIST MLP's epoch time on 2 CPU cores (4.9 s -> 2.0 s),
    # because small models are bound by per-step Python overhead, not by arithmetic.
    steps_per_execution: int = Field(50, ge=1)
    # Keras's "auto" turns XLA off on CPU-only machines and on with a GPU. On 2 CPU cores XLA made both
    # Fashion-MNIST configs slower (MLP 1.2 -> 5-6 s/epoch, CNN 6-8x; benchmarks/README.md).
    jit_compile: bool | Literal["auto"] = "auto"
    # Keras's TensorBoard callback writing <run>/tensorboard/ (scalars each epoch, the graph).
    tensorboard: bool = True
    # true: tf.data keeps the decoded examples (and the fixed validation/test batches) in memory after the
    # first epoch, so later epochs skip slicing and batching (MLP 2.3 -> 1.8 s/epoch); a path: cache files
    # with that prefix, for data larger than memory; false: rebuild every epoch.
    cache: bool | str = True
    # mixed_bfloat16 / mixed_float16: Keras's mixed-precision policies. Off by default: accuracy can move
    # and the gain depends on the hardware (benchmarks/README.md has the CPU numbers).
    mixed_precision: Literal[False, "mixed_bfloat16", "mixed_float16"] = False
    # TensorFlow's thread pools (tf.config.threading); null keeps TensorFlow's choice (one per core). "auto"
    # gives a small Dense-only model one thread each, whose ops are too small to split (the MLP on 2 cores:
    # half the CPU time an epoch), and leaves a conv net every core (dltrain/threads.py has the rule).
    intra_op_parallelism_threads: Threads = "auto"
    inter_op_parallelism_threads: Threads = "auto"


class MlflowConfig(Section):
    """Where MLflow records a run; the names are MLflow's own."""

    # None: MLflow's default ($MLFLOW_TRACKING_URI, else ./mlruns).
    tracking_uri: str | None = None
    # None: the run's name.
    experiment_name: str | None = None
    # Where a new experiment keeps its artifacts (MLflow's default: beside the store or ./mlartifacts).
    artifact_location: str | None = None


class TrackingConfig(Section):
    """Optional experiment tracking."""

    mlflow: MlflowConfig | None = None


# --- sweep: (issue 16; dltrain/sweep/ reads it, `dltrain train` ignores it) ------------------
# Keys follow the W&B sweep format; what Optuna can sample of it (no normal or beta distributions).
DISTRIBUTIONS = ("categorical", "int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values")
SWEEP_METHODS = ("tpe", "random", "grid", "cmaes", "gp")


class SweepMetric(Section):
    """What the study optimizes: a metric the compiled model logs, per epoch."""

    name: str
    goal: Literal["minimize", "maximize"] = "minimize"


def _check_number(value: Any) -> Any:
    """An int stays an int (int min/max sample integers), a float a float; anything else is an error."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise PydanticCustomError("number", "expected a number, got {got}", {"got": _short(value)})


Number = Annotated[int | float | None, BeforeValidator(_check_number)]


class SweepParameter(Section):
    """One dotted config key's search range: `values: [...]`, or `min`/`max` (with `distribution`, `q`)."""

    values: list[Any] | None = Field(None, min_length=1)
    min: Number = None
    max: Number = None
    distribution: str | None = None
    q: Number = Field(None, gt=0)

    @field_validator("distribution")
    @classmethod
    def _known_distribution(cls, name: str | None) -> str | None:
        if name is not None and name not in DISTRIBUTIONS:
            raise PydanticCustomError("unknown_distribution", "unknown distribution '{name}'", {
                "name": name, "hint": did_you_mean(name, DISTRIBUTIONS)
                or f"Optuna samples these: {', '.join(DISTRIBUTIONS)}"})
        return name

    @model_validator(mode="after")
    def _one_range(self) -> SweepParameter:
        ranged = self.min is not None or self.max is not None
        if (self.values is None) == (not ranged) or (ranged and (self.min is None or self.max is None)):
            raise PydanticCustomError("sweep_range", "give either 'values: [...]' or both 'min' and 'max'",
                                      {"hint": "for example {values: [32, 64]} or {min: 0.0, max: 0.5}"})
        kind = self.kind
        if (kind == "categorical") != (self.values is not None):
            raise PydanticCustomError("sweep_distribution", "distribution '{kind}' takes {takes}",
                                      {"key": "distribution", "kind": kind,
                                       "takes": "'values'" if kind == "categorical" else "'min' and 'max'"})
        if ranged and self.min > self.max:
            raise PydanticCustomError("sweep_min_max", "min ({low}) is above max ({high})",
                                      {"key": "min", "low": self.min, "high": self.max, "hint": "swap them"})
        if kind in ("int_uniform",) and not (type(self.min) is int and type(self.max) is int):
            raise PydanticCustomError("sweep_int", "int_uniform takes integer min and max",
                                      {"key": "min", "hint": "write them without a decimal point"})
        if kind == "log_uniform_values" and self.min <= 0:
            raise PydanticCustomError("sweep_log", "log_uniform_values takes min above 0, got {low}",
                                      {"key": "min", "low": self.min,
                                       "hint": "log_uniform (W&B's) takes exponents: min: -9.2 is 1e-4"})
        if (self.q is not None) != (kind == "q_uniform") and not (kind == "int_uniform" and type(self.q) is int):
            raise PydanticCustomError("sweep_q", "'q' (the step) applies to q_uniform, and as an integer to int_uniform",
                                      {"key": "q" if self.q is not None else "distribution",
                                       "hint": "Optuna has no step on a log scale" if self.q is not None
                                       else "add q: the step between values"})
        return self

    @property
    def kind(self) -> str:
        """The distribution, as written or implied (values: categorical; int min/max: int_uniform; else uniform)."""
        if self.distribution is not None:
            return self.distribution
        if self.values is not None:
            return "categorical"
        if type(self.min) is int and type(self.max) is int:
            return "int_uniform"
        return "q_uniform" if self.q is not None else "uniform"


class EarlyTerminate(Section):
    """Pruning on the per-epoch metric: W&B's `type` and `min_iter`, `max_iter` and `eta` for hyperband."""

    type: Literal["median", "hyperband"]
    # The first epoch at which a trial may be pruned.
    min_iter: int = Field(1, ge=1)
    # hyperband: the most epochs a trial trains (default: training.epochs) and the reduction factor.
    max_iter: int | None = Field(None, ge=1)
    eta: int = Field(3, ge=2)
    # median: Optuna's MedianPruner name and default; no trial is pruned until this many have finished.
    n_startup_trials: int = Field(5, ge=0)


class SweepConfig(Section):
    """A study of many runs of this config (DESIGN.md §2.3); `dltrain sweep` runs it."""

    metric: SweepMetric
    method: str = "tpe"
    # The study's total, not "this many more" on every start. A grid defaults to its number of points.
    trials: int | None = Field(None, ge=1)
    parameters: dict[str, SweepParameter] = Field(min_length=1)
    early_terminate: EarlyTerminate | None = None
    # None: a journal file in the sweep folder; a database URL lets several machines share one study.
    storage: str | None = None

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        if name not in SWEEP_METHODS:
            raise PydanticCustomError("unknown_method", "unknown method '{name}'", {
                "name": name, "hint": did_you_mean(name, SWEEP_METHODS) or f"expected one of: {', '.join(SWEEP_METHODS)}"})
        return name

    @field_validator("parameters")
    @classmethod
    def _grid_points(cls, parameters: dict[str, SweepParameter], info: ValidationInfo) -> dict[str, SweepParameter]:
        if info.data.get("method") == "grid":
            for key, parameter in parameters.items():
                if parameter.values is None:
                    raise PydanticCustomError("grid_range", "method grid needs a list of values; min/max is a "
                                              "continuous range", {"key": key, "hint": "write values: [...], or use "
                                                                   "method: tpe or random for a range"})
        return parameters

    @model_validator(mode="after")
    def _trials(self) -> SweepConfig:
        if self.method == "grid":
            points = math.prod(len(p.values or ()) for p in self.parameters.values())
            if self.trials is not None and self.trials > points:
                raise PydanticCustomError("grid_trials", "trials is {trials} but the grid has {points} points",
                                          {"key": "trials", "trials": self.trials, "points": points,
                                           "hint": "a grid tries each point once: lower trials or remove it"})
        elif self.trials is None:
            raise PydanticCustomError("sweep_trials", "method {method} needs 'trials' (the study's total)",
                                      {"key": "trials", "method": self.method, "hint": "add e.g. 'trials: 20' under sweep"})
        return self


_IMPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def _check_import_path(value: Any) -> Any:
    if isinstance(value, str) and _IMPORT_PATH.match(value):
        return value
    raise PydanticCustomError(
        "import_path", "expected an import path like 'mypackage.layers:MyBlock', got {got}",
        {"got": _short(value), "hint": "a module path, a colon, then the name defined in that module"},
    )


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Config(Section):
    """A whole dltrain config file."""

    name: str = "run"
    # None: a fresh seed is drawn and written into the run's config.yaml, so every run reproduces.
    seed: int | None = None
    dataset: DatasetConfig
    model: ModelConfig
    # One loss for every output, or (several outputs) a mapping from output names to losses.
    loss: Spec | dict[str, Spec]
    # Keras's `compile(loss_weights=...)`: one weight per output, by name.
    loss_weights: dict[str, float] | None = None
    optimizer: Spec = "adam"
    metrics: list[Spec] | dict[str, list[Spec]] = Field(default_factory=list)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    # The only way a config brings in code: `package.module:Name` for the user's own layers, losses,
    # metrics, ... imported when (and only when) listed here.
    custom_objects: list[Annotated[str, BeforeValidator(_check_import_path)]] = Field(default_factory=list)
    # Keras's safe_mode: off allows what can run arbitrary code or read arbitrary files (Lambda,
    # TFSMLayer, lookup layers reading a vocabulary file) in the config and when the model is reloaded.
    safe_mode: bool = True
    # Optional experiment tracking (MLflow); runs are always recorded in their run folder.
    tracking: TrackingConfig | None = None
    # A study of many runs of this config (`dltrain sweep`); `dltrain train` ignores it.
    sweep: SweepConfig | None = None

    @field_validator("loss", "metrics", "loss_weights")
    @classmethod
    def _per_output(cls, value: Any, info: ValidationInfo) -> Any:
        model = info.data.get("model")
        if model is None or not isinstance(value, dict):
            return value
        outputs = model.outputs or []
        if info.field_name == "loss" and len(value) == 1 and isinstance(next(iter(value.values())), dict) \
                and not set(value) <= set(outputs):
            return value  # `{Huber: {delta: 1.0}}`: one loss with arguments
        for key in value:
            if key not in outputs:
                if len(outputs) < 2:
                    raise PydanticCustomError(
                        "per_output",
                        "'{key}' is not a model output; a mapping of {field} per output needs several outputs",
                        {"key": key, "field": info.field_name,
                         "hint": "list the output layers in model.outputs, or give one value for all"},
                    )
                raise PydanticCustomError(
                    "unknown_output", "no model output named '{key}'",
                    {"key": key, "hint": did_you_mean(key, outputs) or f"the outputs are: {', '.join(outputs)}"},
                )
        return value

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise PydanticCustomError(
                "bad_name",
                "run name '{name}' is not allowed",
                {"name": name, "hint": "use letters, digits, '.', '_' and '-' (it becomes a folder name)"},
            )
        return name


@contextmanager
def data_errors_located(source: SourceMap) -> Iterator[None]:
    """Data errors name a config key (dataset.path, dataset.label, ...): point them at the line it is on."""
    try:
        yield
    except DataError as error:
        if error.where is None and error.key:
            error.where = source.locate(tuple(error.key.split(".")))
        raise


@dataclass
class LoadedConfig:
    """A validated config with the data it came from and where each key was written."""

    config: Config
    source: SourceMap
    path: Path
    # The key paths that held `${...}` references, with the text the user wrote.
    references: dict[Path_, str] = field(default_factory=dict)
    # The data as written (after extends, --set and references), before defaults were filled in.
    written: dict[str, Any] = field(default_factory=dict)
    # The `--set` overrides, as given (a run folder keeps them in overrides.txt).
    overrides: list[str] = field(default_factory=list)
    # `custom_objects`, once imported (registry.custom_objects): every Keras name lookup consults them.
    imported: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def locate(self, path: Path_) -> Location | None:
        """Where the key `path` (or its nearest parent) was written."""
        return self.source.locate(path)

    def located(self) -> AbstractContextManager[None]:
        """A context in which data errors point at the config line of the key they name."""
        return data_errors_located(self.source)

    def error(self, cls: type[ConfigError], path: Path_, message: str, hint: str | None = None) -> ConfigError:
        """An error of type `cls` pointing at the key `path`."""
        return cls(message, where=self.locate(path), key=dotted(path), hint=hint)

    def resolved(self) -> dict[str, Any]:
        """The fully resolved config as plain data: what `config.yaml` in a run folder holds."""
        data = self.config.model_dump(mode="json")
        data["dataset"] = self.config.dataset.dump()
        return _drop_none(data)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


# --- composition -----------------------------------------------------------------------------


def _merge(base: Any, top: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) is replaced by the top value."""
    if isinstance(base, dict) and isinstance(top, dict):
        merged = dict(base)
        for key, value in top.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return top


def _load_file(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], SourceMap]:
    data, source = read_yaml(path)
    if data is None:
        raise ConfigError("config file is empty", where=Location(str(path)),
                          hint="a config needs at least 'dataset', 'model' and 'loss'")
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of keys, got {type(data).__name__}",
                          where=Location(str(path), 1, 1))
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, source
    where = source.locate(("extends",))
    if not isinstance(base_name, str):
        raise ConfigError("'extends' must be a path to a YAML file", where=where, key="extends")
    # Read it by the path as written (messages show `configs/base.yaml`); compare resolved paths for cycles.
    base_path = Path(os.path.normpath(path.parent / base_name))
    if base_path.resolve() in chain:
        cycle = " -> ".join(p.name for p in chain + (base_path.resolve(),))
        raise ConfigError(f"'extends' forms a cycle: {cycle}", where=where, key="extends",
                          hint="remove one of the 'extends' lines")
    if not base_path.is_file():
        raise ConfigError(f"base config '{base_name}' not found", where=where, key="extends",
                          hint=f"the path is relative to {path.parent}")
    base, base_source = _load_file(base_path, chain + (base_path.resolve(),))
    source.positions.pop(("extends",), None)
    for key, loc in base_source.positions.items():
        base_source.positions[key] = replace(loc, via=(f"{where}",) + loc.via)
    base_source.update(source)
    return _merge(base, data), base_source


def parse_key_path(text: str) -> Path_:
    """Parse `model.layers[2].Dense.units` into ('model', 'layers', 2, 'Dense', 'units')."""
    path = parse_ref(text)
    if path is None:
        raise ConfigError(f"cannot read key path '{text}'", where=Location("--set"),
                          hint="write it like training.epochs=3 or model.layers[2].Dense.units=64")
    return path


def apply_override(data: dict[str, Any], source: SourceMap, override: str) -> None:
    """Apply one `key.path=value` override in place; the value is read as YAML (`3e-4`, `[1, 2]`)."""
    key_text, sep, value_text = override.partition("=")
    where = Location("--set")
    if not sep or not key_text.strip():
        raise ConfigError("an override must look like key.path=value", where=where,
                          hint="for example --set training.epochs=3")
    path = parse_key_path(key_text.strip())
    value, _ = parse_yaml(value_text, f"--set {override}")
    node: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(f"index [{part}] is out of range (the list has {size} items)",
                                  where=where, key=dotted(path[: i + 1]))
            if isinstance(node[part], str) and node[part] == nxt:
                node[part] = {nxt: {}}  # `Flatten` becomes `{Flatten: {...}}` to take an argument
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"'{dotted(path[:i])}' is not a mapping", where=where, key=dotted(path[: i + 1]))
            if node.get(part) is None:
                node[part] = [] if isinstance(nxt, int) else {}
            elif isinstance(node[part], str) and node[part] == nxt:
                node[part] = {nxt: {}}
            node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"index [{last}] is out of range", where=where, key=dotted(path))
    elif not isinstance(node, dict):
        raise ConfigError(f"'{dotted(path[:-1])}' is not a mapping", where=where, key=dotted(path))
    node[last] = value
    for known in [p for p in source.positions if p[: len(path)] == path]:
        del source.positions[known]
    source.positions[path] = where


# --- validation ------------------------------------------------------------------------------

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _message(err: dict[str, Any]) -> tuple[str, str | None]:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "list_type" and isinstance(got, str):
        return f"expected a list, got {_short(got)}", f"write [{got}]"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_short(got)}", None
    if kind == "missing":
        *parent, key = err["loc"]
        where = f"under '{dotted(tuple(parent))}'" if parent else "at the top level"
        return "required key is missing", f"add '{key}:' {where}"
    if kind in ("greater_than_equal", "greater_than", "less_than", "less_than_equal"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(v for k, v in ctx.items() if k in ("ge", "gt", "lt", "le"))
        return f"expected a number {op} {bound}, got {_short(got)}", None
    if kind == "too_short":
        return "must not be empty", None
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {_short(got)}", None
    return err["msg"].removeprefix("Value error, "), ctx.get("hint")


def _is_branch(part: Any) -> bool:
    # pydantic's union branches (`dict[str,any]`, `function-before[...]`); not a key such as a sweep
    # parameter's `model.layers[2].Dense.units`
    return isinstance(part, str) and (re.match(r"[a-z][a-z-]*\[", part) is not None or part in ("str", "bool"))


def _one_branch(errors: list[Any]) -> list[Any]:
    """Of a union's failed branches, keep the errors that got furthest into the value.

    `loss: {label: mse, aux: 5}` fails as one loss (at `loss`) and as a loss per output (at `loss.aux`);
    only the second says what is wrong."""
    def split(err: Any) -> tuple[tuple, bool]:
        loc = err["loc"]
        for i, part in enumerate(loc):
            if _is_branch(part):
                return loc[:i], i == len(loc) - 1
        return loc, False

    deeper = {split(e)[0] for e in errors if split(e)[0] != e["loc"] and not split(e)[1]}
    kept, seen_roots = [], set()
    for err in errors:
        root, at_root = split(err)
        if at_root:
            if root in deeper or root in seen_roots:
                continue
            seen_roots.add(root)
        kept.append(err)
    return kept


def _to_config_error(error: ValidationError, source: SourceMap, file: Path, prefix: Path_ = ()) -> ConfigError:
    """Turn pydantic's errors into one ConfigError about the first problem in file order."""
    found: list[tuple[Path_, str, str | None]] = []
    for err in _one_branch(error.errors()):
        # pydantic adds the union branch (`str`, `dict[...]`) to the location; users never wrote it.
        path = prefix + tuple(p for p in err["loc"] if not _is_branch(p))
        ctx = err.get("ctx") or {}
        if "key" in ctx:  # errors raised for one key of a section point at that key
            path = path + (ctx["key"],)
        message, hint = _message(err)
        found.append((path, message, hint))

    def order(item: tuple[Path_, str, str | None]) -> tuple[int, int]:
        # Missing keys (no line of their own) come last: a misspelt key explains why one is missing.
        loc = source.locate(item[0])
        return (loc.line or 0, loc.column or 0) if loc and loc.line else (10**9, 0)

    found.sort(key=order)
    path, message, hint = found[0]
    if len(found) > 1:
        more = len(found) - 1
        hint = (hint + "; " if hint else "") + f"{more} more error{'s' if more > 1 else ''} after this one"
    where = source.locate(path) or Location(str(file))
    return ConfigError(message, where=where, key=dotted(path) or None, hint=hint)


def schema_default(path: Path_) -> tuple[bool, Any]:
    """The default the schema gives the key `path` (found, value); not found for required keys."""
    section: type[BaseModel] = Config
    for i, part in enumerate(path):
        info = section.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return False, None
        if i == len(path) - 1:
            if info.is_required():
                return False, None
            value = info.get_default(call_default_factory=True)
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            return value is not None, value
        if not (isinstance(info.annotation, type) and issubclass(info.annotation, Section)):
            return False, None
        section = info.annotation
    return False, None


class _DatasetFacts:
    """`${dataset.num_classes}` and friends: asked of the dataset only when a config refers to them."""

    def __init__(self, source: SourceMap, path: Path) -> None:
        self.source = source
        self.path = path
        self.resolver: Resolver | None = None  # set once the resolver that asks exists
        self.info: Any = None

    def __call__(self, target: Path_) -> tuple[bool, Any]:
        if len(target) != 2 or target[0] != "dataset" or target[1] not in DATA_FACTS:
            return False, None
        if self.info is None:
            section = self.resolver.resolve_subtree(("dataset",))
            try:
                dataset = DatasetConfig.model_validate(section)
            except ValidationError as error:
                raise _to_config_error(error, self.source, self.path, ("dataset",)) from None
            from dltrain import data  # numpy only; data.py itself imports this module

            with data_errors_located(self.source):  # as a config error would
                self.info = data.describe(dataset)
        value = getattr(self.info, str(target[1]))
        if value is None:
            raise ConfigError(f"dataset '{self.info.name}' does not know its {target[1]}",
                              where=self.source.locate(("dataset",)), key=dotted(target),
                              hint="write the value instead of the reference")
        return True, list(value) if isinstance(value, tuple) else value


def resolve_references(data: dict[str, Any], source: SourceMap, path: Path) -> dict[Path_, str]:
    """Resolve every `${...}` in `data` in place; return the keys that held references."""
    facts = _DatasetFacts(source, path)
    resolver = facts.resolver = Resolver(data, source, schema_default, facts)
    resolver.resolve_all()
    return resolver.references


def validate(data: dict[str, Any], source: SourceMap, path: Path,
             references: dict[Path_, str] | None = None) -> LoadedConfig:
    """Validate plain config data against the schema; fill a seed when none is given."""
    written = copy.deepcopy(data)
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        raise _to_config_error(error, source, path) from None
    if config.seed is None:
        config.seed = secrets.randbelow(2**31)
    loaded = LoadedConfig(config, source, path, references or {}, written)
    check_graph(loaded)
    return loaded


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedConfig:
    """Load a config file: resolve `extends`, apply `--set` overrides and `${...}` references, validate."""
    path = Path(path)
    data, source = _load_file(path, (path.resolve(),))
    data = copy.deepcopy(data)
    for override in overrides:
        apply_override(data, source, override)
    references = resolve_references(data, source, path)
    loaded = validate(data, source, path, references)
    loaded.overrides = list(overrides)
    return loaded


# --- graph checks ----------------------------------------------------------------------------


def layer_refs(kwargs: dict[str, Any]) -> list[str] | None:
    """The `inputs:` a layer names, as a list, or None when it takes the previous layer."""
    refs = kwargs.get("inputs")
    if refs is None:
        return None
    return [refs] if isinstance(refs, str) else list(refs)


def _cycle(layers: list[Any], index: dict[str, int], start: str, name: Any) -> list[str] | None:
    """The loop `name -> start -> ... -> name` through `inputs:` references, if there is one."""
    if not isinstance(name, str):
        return None
    seen: set[str] = set()

    def walk(node: str, trail: list[str]) -> list[str] | None:
        if node == name:
            return trail
        if node in seen or node not in index:
            return None
        seen.add(node)
        i = index[node]
        refs = layer_refs(split_spec(layers[i])[1])
        if refs is None:  # the default input is the layer just before
            previous = split_spec(layers[i - 1])[1].get("name") if i > 0 else None
            refs = [previous] if isinstance(previous, str) else []
        for ref in refs:
            if isinstance(ref, str) and (found := walk(ref, trail + [ref])):
                return found
        return None

    return walk(start, [name, start])


def check_graph(loaded: LoadedConfig) -> None:
    """Check layer names and `inputs:` / `outputs:` references without building anything."""
    model = loaded.config.model
    input_names = list(model.inputs) if model.inputs else ["input"]
    defined: dict[str, int] = {}
    later = {}
    for i, spec in enumerate(model.layers):
        _, kwargs = split_spec(spec)
        name = kwargs.get("name")
        if isinstance(name, str):
            later.setdefault(name, i)
    used: set[str] = set()
    previous: str | None = input_names[0] if len(input_names) == 1 else None
    for i, spec in enumerate(model.layers):
        class_name, kwargs = split_spec(spec)
        path: Path_ = ("model", "layers", i, class_name)
        refs = layer_refs(kwargs)
        if refs is None:
            if previous is None:
                raise loaded.error(ConfigError, path, "this layer needs 'inputs:'",
                                   hint=f"the model has several inputs: {', '.join(input_names)}")
            refs = [previous]
        elif not refs or not all(isinstance(r, str) for r in refs):
            raise loaded.error(ConfigError, path + ("inputs",), "expected a layer name or a list of names")
        for ref in refs:
            if ref in defined or ref in input_names:
                used.add(ref)
                continue
            if ref in later:
                cycle = _cycle(model.layers, later, ref, kwargs.get("name"))
                if cycle:
                    flow = " -> ".join(reversed(cycle))  # the way data would flow
                    raise loaded.error(ConfigError, path + ("inputs",),
                                       f"layer '{ref}' takes itself as input" if len(cycle) == 2
                                       else f"the layers form a cycle: {flow}",
                                       hint="a model is a graph without loops; take an earlier layer as input")
                raise loaded.error(ConfigError, path + ("inputs",),
                                   f"layer '{ref}' is defined later (model.layers[{later[ref]}])",
                                   hint="a layer can only take earlier layers as inputs")
            hint = did_you_mean(ref, list(defined) + input_names) or "name an earlier layer with 'name:'"
            raise loaded.error(ConfigError, path + ("inputs",), f"no layer or input named '{ref}'", hint=hint)
        name = kwargs.get("name")
        key = name if isinstance(name, str) else f"#{i}"
        if name is not None and not isinstance(name, str):
            raise loaded.error(ConfigError, path + ("name",), f"expected a string, got {_short(name)}")
        if key in defined or key in input_names:
            raise loaded.error(ConfigError, path + ("name",), f"the name '{key}' is used twice",
                               hint="layer names must be unique")
        defined[key] = i
        previous = key
    outputs = model.outputs or [previous]
    for j, out in enumerate(outputs):
        if out not in defined:
            hint = did_you_mean(out, [n for n in defined if not n.startswith("#")])
            raise loaded.error(ConfigError, ("model", "outputs", j), f"no layer named '{out}'", hint=hint)
    unused = [n for n in list(defined) + input_names if n not in used and n not in outputs]
    if unused:
        first = unused[0]
        if first in input_names:
            raise loaded.error(ConfigError, ("model", "inputs", first) if model.inputs else ("model",),
                               f"model input '{first}' feeds no layer", hint="use it in a layer's 'inputs:'")
        i = defined[first]
        label = f"'{first}'" if not first.startswith("#") else f"model.layers[{i}]"
        class_name, _ = split_spec(model.layers[i])
        raise loaded.error(ConfigError, ("model", "layers", i, class_name),
                           f"layer {label} is never used: it feeds no layer and is not in model.outputs",
                           hint="list it in model.outputs or remove it")
