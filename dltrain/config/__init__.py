"""The config: YAML with line positions, `extends`, `--set`, references, the schema, graph checks and the
messages that point at a line. No TensorFlow, and nothing above it: data/ and the rest are built on this.

The face the rest of dltrain imports; each piece lives in its own module:
  yamlsource  YAML read with the line and column of every key
  compose     `extends` and `--set`, before validation
  references  `${...}` between keys (and `${dataset.*}`, answered by the data layer)
  fields      specs, thread counts, import paths, sections that refuse unknown keys
  formats     data sources and the dataset keys each takes
  dataset     the `dataset:` section
  schema      the whole file's sections
  sweep       the `sweep:` section (a study of many runs; dltrain/sweep/ runs it)
  messages    pydantic's errors in the user's words
  graph       `inputs:` / `outputs:` checked as a graph
  split_sources  a `validation:` / `test:` source's own keys, checked against the training data's
  loaded      a validated config with where each key was written
  read        all of the above, in order
  explain     where each resolved value came from
"""

from dltrain.config.compose import apply_override, parse_key_path
from dltrain.config.dataset import DEFAULT_TEST_SPLIT, DatasetConfig, RecordFeature, SourceConfig
from dltrain.config.explain import origins
from dltrain.config.fields import Section, Spec, split_spec
from dltrain.config.formats import (AUDIO_SUFFIXES, BUILTIN_NAMES, DATASET_NAMES, FORMATS, IMAGE_SUFFIXES, SOURCE_KEYS, absolute_path,
                                    infer_format)
from dltrain.config.graph import check_graph, layer_refs, split_output
from dltrain.config.hints import did_you_mean
from dltrain.config.loaded import LoadedConfig, data_errors_located
from dltrain.config.read import Describe, read_config, validate
from dltrain.config.references import get_path, parse_ref
from dltrain.config.schema import Config, MlflowConfig, ModelConfig, TrackingConfig, TrainingConfig
from dltrain.config.sweep import SweepConfig, SweepParameter
from dltrain.config.yamlsource import Path_, SourceMap, dotted, parse_yaml, read_yaml, to_yaml

__all__ = ["AUDIO_SUFFIXES", "BUILTIN_NAMES", "Config", "DATASET_NAMES", "DEFAULT_TEST_SPLIT", "DatasetConfig",
           "Describe", "FORMATS", "IMAGE_SUFFIXES", "LoadedConfig", "MlflowConfig", "ModelConfig", "Path_",
           "RecordFeature", "SOURCE_KEYS", "Section", "SourceConfig", "SourceMap", "Spec", "SweepConfig",
           "SweepParameter", "TrackingConfig", "TrainingConfig", "absolute_path", "apply_override", "check_graph",
           "data_errors_located", "did_you_mean", "dotted", "get_path", "infer_format", "layer_refs", "origins",
           "parse_key_path", "parse_ref", "parse_yaml", "read_config", "read_yaml", "split_output", "split_spec",
           "to_yaml", "validate"]
