"""The `dataset:` section: a built-in `name`, or `path` + `format`, with the keys of that source only."""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from dltrain.config.fields import Section, Spec
from dltrain.config.formats import DATASET_NAMES, FORMATS, SOURCE_KEYS, absolute_path, infer_format
from dltrain.config.hints import did_you_mean


# The test split a source without one gets (Ludwig's default split is 70/10/20): carved from the seed like
# the validation split, and written into the run's config.yaml.
DEFAULT_TEST_SPLIT = 0.2

# A JSON-lines field a template names: a plain name (no attribute or index lookups).
_FIELD = re.compile(r"^[^.\[\]{}!:]+$")

# Keys a source of its own (`validation:`, `test:`) takes as well as the main source: their types.
Task = Literal["classification", "regression"]
ImageSize = Annotated[list[int], Field(min_length=2, max_length=2)]
ColorMode = Literal["grayscale", "rgb", "rgba"]
Interpolation = Literal["bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic"]
ClassNames = Annotated[list[str], Field(min_length=2)]
MaxTokens = Annotated[int, Field(ge=2)]
Positive = Annotated[int, Field(ge=1)]
OutputMode = Literal["int", "multi_hot", "count", "tf_idf"]
# The keys of a TextVectorization (text folders, TFDS text, a table's `text:` columns).
_TEXT_KEYS = ("max_tokens", "output_sequence_length", "output_mode", "ngrams")


class RecordFeature(Section):
    """One `tf.train.Example` key of a tfrecord source: `tf.io.FixedLenFeature`'s shape and dtype, and
    `decode` for an encoded image (decoded to uint8 in the pipeline)."""

    shape: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    dtype: Literal["string", "int64", "float32"] = "int64"
    decode: Literal["png", "jpeg"] | None = None

    @model_validator(mode="after")
    def _decodes_bytes(self) -> RecordFeature:
        if self.decode is not None and (self.dtype != "string" or self.shape):
            raise PydanticCustomError("decode_string", "decode: {decode} reads one encoded image: shape [] and "
                                      "dtype string", {"decode": self.decode, "key": "decode",
                                                       "hint": "write {shape: [], dtype: string, decode: ...}"})
        return self


# Arrays and tables: names of arrays or columns; tfrecord: Example keys with their shape and dtype.
Features = str | list[str] | dict[str, RecordFeature]


class SourceConfig(Section):
    """An explicit `validation:` or `test:` source: its own path, and the keys of its format where it sets
    them (unset, they are the main source's). config/split_sources.py checks them against the training data's."""

    path: str
    format: str | None = None
    features: Features | None = None
    label: str | list[str] | None = None
    task: Task | None = None
    label_separator: Annotated[str, Field(min_length=1)] | None = None
    text: str | list[str] | None = None
    image_size: ImageSize | None = None
    color_mode: ColorMode | None = None
    interpolation: Interpolation | None = None
    crop_to_aspect_ratio: bool | None = None
    class_names: ClassNames | None = None
    max_tokens: MaxTokens | None = None
    output_sequence_length: Positive | None = None
    output_mode: OutputMode | None = None
    ngrams: Positive | None = None
    masks: str | None = None
    sampling_rate: Positive | None = None

    def settings(self) -> dict[str, Any]:
        """The keys this source sets itself, path included; every other key is the main source's."""
        return {key: getattr(self, key) for key in self.model_fields_set if getattr(self, key) is not None}

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str, info: ValidationInfo) -> str:
        return _local_or_hub(path, info.data.get("format"))

    @field_validator("masks")
    @classmethod
    def _absolute_masks(cls, path: str | None) -> str | None:
        return None if path is None else absolute_path(path)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        return _check_format(value)


def _local_or_hub(path: str, kind: str | None) -> str:
    """A path made absolute, except a Hugging Face hub name (`user/name`) that is not a local folder."""
    if kind == "hf" and not Path(os.path.expanduser(path)).exists():
        return path
    return absolute_path(path)


def _check_format(value: str | None) -> str | None:
    if value is not None and value not in FORMATS:
        raise PydanticCustomError(
            "unknown_format", "unknown format '{name}'",
            {"name": value, "hint": did_you_mean(value, FORMATS) or f"expected one of: {', '.join(FORMATS)}"})
    return value


class FoldConfig(Section):
    """One fold of a cross-validation (`dltrain cv` sets it): the training split is cut into `folds` parts,
    stratified by class for a classification, drawn from the seed; the run validates on part `index` (from 1)
    and trains on the others. It takes validation_split's place; the test split is carved as without it."""

    index: int = Field(ge=1)
    folds: int = Field(ge=2)

    @model_validator(mode="after")
    def _index_within(self) -> FoldConfig:
        if self.index > self.folds:
            raise PydanticCustomError("fold_index", "fold {index} does not exist: there are {folds} folds",
                                      {"key": "index", "index": self.index, "folds": self.folds,
                                       "hint": f"give an index from 1 to {self.folds}"})
        return self


class DatasetConfig(Section):
    """Where the examples come from and how they are split: a built-in `name`, or `path` + `format`.

    Source-specific keys are named after the Keras argument they feed (`image_size`, `color_mode`,
    `max_tokens`, `num_words`, ...); a key given to a source that does not use it is an error.
    """

    # `format` is validated before `name`: a TFDS name is any of its catalog's, not one of ours.
    format: str | None = None
    name: str | None = None
    path: str | None = None
    # Arrays and tables: which arrays or columns hold the features and the labels; tfrecord: Example keys.
    features: Features | None = None
    # One column (or array); a list of 0/1 columns (multi-label) or of columns to forecast (timeseries).
    label: str | list[str] | None = None
    task: Task | None = None
    # Tables: the label column holds tags joined by this separator -> multi-hot labels, one class per tag.
    label_separator: Annotated[str, Field(min_length=1)] | None = None
    # Tables: string columns read as free text by a TextVectorization (the text keys below), not as categories.
    text: str | list[str] | None = None
    # Time series (keras.utils.timeseries_dataset_from_array's arguments), and how far ahead the label is;
    # `sampling_rate` (below) keeps one row in N there.
    sequence_length: Positive | None = None
    sequence_stride: Positive | None = None
    horizon: int = Field(1, ge=0)
    validation_split: float = Field(0.1, ge=0.0, lt=1.0)
    # None: the source's own test split, else DEFAULT_TEST_SPLIT (the run's config.yaml then says so).
    test_split: float | None = Field(None, gt=0.0, lt=1.0)
    validation: SourceConfig | None = None
    test: SourceConfig | None = None
    # Cross-validation: validate on this fold of the training split instead of carving validation_split.
    fold: FoldConfig | None = None
    data_dir: str | None = None
    train_size: int | None = Field(None, ge=1)
    test_size: int | None = Field(None, ge=1)
    # hf: the split of a DatasetDict (or a hub dataset) trained on.
    split: str | None = None
    # `synthetic`: the shape of one example and the number of classes. Image folders with `masks`: the
    # number of classes (else the largest mask value plus one, which reads every mask).
    input_shape: list[int] | None = None
    num_classes: int | None = Field(None, ge=2)
    # Segmentation: a folder of label images paired with the images by file stem (pixel value: class index).
    masks: str | None = None
    # Audio folders (keras.utils.audio_dataset_from_directory's arguments): the files' rate is checked, not
    # resampled; output_sequence_length (above) cuts or pads every file (default: the longest file's length).
    # Time series: one row in N (keras.utils.timeseries_dataset_from_array's `sampling_rate`).
    sampling_rate: Positive | None = None
    # Audio folders: damaged files are left out, counted and named, instead of stopping the run.
    skip_damaged: bool = False
    # Image folders (keras.utils.image_dataset_from_directory's arguments and defaults).
    image_size: ImageSize = Field(default_factory=lambda: [256, 256])
    color_mode: ColorMode = "rgb"
    interpolation: Interpolation = "bilinear"
    crop_to_aspect_ratio: bool = False
    # Text folders: which class folders to read, in label order (Keras's `class_names`: a subset
    # of the folders, e.g. aclImdb/train's neg and pos without unsup). None: every folder, sorted by name.
    class_names: ClassNames | None = None
    # Text folders and TFDS text datasets (keras.layers.TextVectorization's arguments).
    max_tokens: MaxTokens | None = None
    output_sequence_length: Positive | None = None
    output_mode: OutputMode = "int"
    ngrams: Positive | None = None
    # imdb and reuters (keras.datasets' arguments): vocabulary size and sequence length. As in Keras,
    # `maxlen` leaves out sequences of maxlen tokens or more; the rest are padded to maxlen. Without it
    # every sequence is padded or cut to its last 200 tokens (builtins.DEFAULT_MAXLEN).
    num_words: int | None = Field(None, ge=1)
    maxlen: int | None = Field(None, ge=1)
    # JSON lines: each line's fields formatted into one text ("Instruction:\n{instruction}\n\nResponse:\n{response}");
    # None: the text is the field `features` names (default "text").
    template: str | None = None
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

    @field_validator("template")
    @classmethod
    def _template_fields(cls, template: str | None) -> str | None:
        if template is None:
            return None
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as error:
            raise PydanticCustomError("template", "cannot read the template: {why}",
                                      {"why": str(error), "hint": "write a field as {name}; a brace itself as {{ or }}"})
        bad = next((f for f in fields if not f or not _FIELD.match(f)), None)
        if bad is not None or not fields:
            raise PydanticCustomError(
                "template", "the template names no field" if not fields else "'{field}' is not a field name",
                {"field": "{" + str(bad) + "}", "hint": "write each field of a line as {name}, e.g. \"{instruction}\\n{response}\""})
        return template

    @field_validator("path", "data_dir", "masks")
    @classmethod
    def _absolute(cls, path: str | None, info: ValidationInfo) -> str | None:
        return None if path is None else _local_or_hub(path, info.data.get("format") if info.field_name == "path" else None)

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
        # A table without text columns has no TextVectorization: its keys would read as if they applied.
        unused = _TEXT_KEYS if kind in ("csv", "parquet") and self.text is None else ()
        return {key: value for key, value in self.model_dump(mode="json").items()
                if not (kind and SOURCE_KEYS.get(key) is not None and kind not in SOURCE_KEYS[key])
                and key not in unused
                and not (key == "validation_split" and self.fold is not None)}  # the fold takes its place

    def _task_keys(self, kind: str) -> None:
        """The keys of time series, tags and text columns that only make sense together."""
        if kind == "timeseries":
            if self.sequence_length is None:
                raise PydanticCustomError("sequence_length", "a timeseries source needs sequence_length (rows per "
                                          "window)", {"key": "format", "hint": "add e.g. 'sequence_length: 24' under "
                                                                                "'dataset'"})
            if self.label is None:
                raise PydanticCustomError("series_label", "a timeseries source needs 'label', the column to forecast",
                                          {"key": "format", "hint": "add 'label: <column>' under 'dataset'"})
        if isinstance(self.label, list):
            if kind not in ("csv", "parquet", "timeseries"):
                raise PydanticCustomError("label_list", "a list of labels needs a table (csv, parquet or timeseries)",
                                          {"key": "label", "hint": "name one array"})
            if not self.label or len(set(self.label)) != len(self.label):
                raise PydanticCustomError("label_list", "list each label column once, and at least one",
                                          {"key": "label", "hint": "e.g. label: [cs.LG, cs.CV]"})
            if self.label_separator is not None:
                raise PydanticCustomError(
                    "label_separator", "label_separator splits one tags column; 'label' is a list of 0/1 columns",
                    {"key": "label_separator", "hint": "remove label_separator, or give label one column of tags"})
        if (self.label_separator is not None or isinstance(self.label, list)) and self.task is not None \
                and kind != "timeseries":
            raise PydanticCustomError("multi_label_task", "multi-label data has no task to choose",
                                      {"key": "task", "hint": "remove task: the labels are multi-hot"})
        if kind in ("csv", "parquet") and self.text is None:
            for key in _TEXT_KEYS:
                if key in self.model_fields_set:
                    raise PydanticCustomError(
                        "text_key", "'{key}' is a setting of the text columns' TextVectorization; this table has none",
                        {"key": key, "hint": "name the free-text columns in 'text: [...]', or remove it"})

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
        # In the fields' declared order: a set's order would name another key from one run to the next.
        for key in [key for key in type(self).model_fields if key in self.model_fields_set]:
            users = SOURCE_KEYS.get(key)
            if users is not None and kind and kind not in users:
                where = f"the {kind} dataset" if self.name and kind != "tfds" else f"'{kind}' sources"
                raise PydanticCustomError(
                    "source_key", "'{key}' does not apply to {where}",
                    {"key": key, "where": where,
                     "hint": f"remove it; it applies to: {', '.join(sorted(users))}"})
        self._task_keys(kind)
        if kind == "images" and self.num_classes is not None and self.masks is None:
            raise PydanticCustomError(
                "num_classes_masks", "'num_classes' applies to an image folder with 'masks' only",
                {"key": "num_classes", "hint": "remove it: a classifier's classes are its class folders; or add "
                                               "'masks:' (a folder of label images) for a segmentation"})
        if (kind == "text" or self.text) and self.output_mode != "int" and self.max_tokens is None:
            # The vector has one entry per vocabulary word; the model's layers are built on its length.
            raise PydanticCustomError(
                "max_tokens", "output_mode '{mode}' needs max_tokens (the length of each text's vector)",
                {"key": "output_mode", "mode": self.output_mode, "hint": "add e.g. 'max_tokens: 20000' under 'dataset'"})
        if kind == "tfrecord" and not isinstance(self.features, dict):
            raise PydanticCustomError(
                "record_features", "a tfrecord source needs 'features': a mapping of Example keys to {shape, dtype}",
                {"key": "features", "hint": "e.g. features: {image: {shape: [], dtype: string, decode: png}, "
                                            "label: {shape: [], dtype: int64}}"})
        if isinstance(self.features, dict) and kind != "tfrecord":
            raise PydanticCustomError("features_map", "'features' is a mapping of Example keys only for tfrecord "
                                      "sources", {"key": "features", "hint": "give a column or array name, or a list"})
        if self.validation is not None and "validation_split" in self.model_fields_set:
            raise PydanticCustomError("validation_twice", "give either 'validation_split' or 'validation', not both",
                                      {"key": "validation", "hint": "'validation' is a source of its own; remove 'validation_split'"})
        if self.fold is not None and self.validation is not None:
            raise PydanticCustomError("fold_validation", "a fold validates on part of the training split, but "
                                      "'validation' reads a source of its own",
                                      {"key": "fold", "hint": "remove 'validation' (or 'fold')"})
        if self.test is not None and self.test_split is not None:
            raise PydanticCustomError("test_twice", "give either 'test_split' or 'test', not both",
                                      {"key": "test", "hint": "'test' is a source of its own; remove 'test_split'"})
        return self
