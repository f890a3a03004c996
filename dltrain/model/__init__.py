"""The model: config names -> Keras objects, layers called as the config says, a keras.Model built and compiled.

  registry   Keras names -> objects through Keras's own modules; argument checks; did-you-mean
  calls      how each layer is called: `inputs:` as its `call` signature takes them, `call:`, `name.N`
  backbones  keras.applications models as layers; their weights from Keras's cache, a file, or none
  builder    the layer list or graph -> keras.Model; `check` (build and compile, train nothing)
  compiling  optimizer, losses, metrics, callbacks, augmentation, dtype policy from the config
  hub        a KerasHub task from a preset (model.task), LoRA, KerasHub layers by name; presets: where a
             preset comes from, offline errors, and whether its configs are data
  saved      model.keras read back with Keras's safe_mode (evaluate, predict, plot, save)
  schema     the JSON Schema for editors, with Keras's names and arguments

Importing this face imports Keras: the CLI imports it inside the commands that build a model.
"""

from dltrain.model.builder import build_model, check, input_shapes, layer_rows, trainable_count
from dltrain.model.hub import is_task, takes_text
from dltrain.model.compiling import build_augmentation, build_callbacks, compile_model, dtype_policy
from dltrain.model.registry import (accepted_arguments, build as build_object, catalog, check_arguments,
                                    custom_folders, custom_objects, import_folders, list_names, lookup)
from dltrain.model.saved import load_model, load_run_model
from dltrain.model.schema import config_schema

__all__ = ["accepted_arguments", "build_augmentation", "build_callbacks", "build_model", "build_object", "catalog",
           "check", "check_arguments", "compile_model", "config_schema", "custom_folders", "custom_objects",
           "dtype_policy", "import_folders", "input_shapes", "is_task", "layer_rows", "list_names", "load_model",
           "load_run_model", "lookup", "takes_text", "trainable_count"]
