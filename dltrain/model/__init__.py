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

Every name loads on first use: most modules import Keras, and `presets` must answer before TensorFlow starts
(a preset that cannot be downloaded is reported in the time a user waits for one line).
"""

from dltrain import lazy_face

__getattr__ = lazy_face(__name__, {
    "build_model": "builder", "check": "builder", "input_shapes": "builder", "layer_rows": "builder",
    "trainable_count": "builder", "is_task": "hub", "takes_text": "hub",
    "build_augmentation": "compiling", "build_callbacks": "compiling", "compile_model": "compiling",
    "dtype_policy": "compiling",
    "accepted_arguments": "registry", "build_object": "registry:build", "catalog": "registry",
    "check_arguments": "registry", "custom_folders": "registry", "custom_objects": "registry",
    "import_folders": "registry", "list_names": "registry", "lookup": "registry",
    "load_model": "saved", "load_run_model": "saved", "config_schema": "schema", "preflight": "presets",
})

__all__ = ["accepted_arguments", "build_augmentation", "build_callbacks", "build_model", "build_object", "catalog",
           "check", "check_arguments", "compile_model", "config_schema", "custom_folders", "custom_objects",
           "dtype_policy", "import_folders", "input_shapes", "is_task", "layer_rows", "list_names", "load_model",
           "load_run_model", "lookup", "preflight", "takes_text", "trainable_count"]
