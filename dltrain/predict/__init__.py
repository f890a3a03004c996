"""Raw inputs -> model inputs -> answers: what `dltrain predict`, the export checks and a server share.

  inputs   image files, CSV rows, .npz / .npy arrays, text files, read as the model takes them
  feed     arrays <-> the model's own inputs (names, dtypes) and outputs (its order)
  answers  outputs -> class probabilities, top-k, CSV rows
  run      a run's saved model on raw input files
  generate a causal LM run continues prompts (`dltrain generate`)
"""

from dltrain.predict.answers import Predictions, class_probabilities, format_top, predictions
from dltrain.predict.feed import input_arrays, input_specs, model_feed, output_list, output_names
from dltrain.predict.inputs import (IMAGE_SUFFIXES, read_arrays, read_csv, read_image, read_inputs, read_named,
                                    read_texts)
from dltrain.predict.generate import generate
from dltrain.predict.run import RunInputs, predict, read_run_inputs

__all__ = ["IMAGE_SUFFIXES", "Predictions", "RunInputs", "class_probabilities", "format_top", "generate", "input_arrays",
           "input_specs", "model_feed", "output_list", "output_names", "predict", "predictions", "read_arrays",
           "read_csv", "read_image", "read_inputs", "read_named", "read_run_inputs", "read_texts"]
