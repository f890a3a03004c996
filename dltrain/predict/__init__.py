"""Raw inputs -> model inputs -> answers: what `dltrain predict`, the export checks and a server share.

  inputs   image files, CSV rows (a series' windows), .npz / .npy arrays, text files, read as the model takes them
  feed     arrays <-> the model's own inputs (names, dtypes) and outputs (its order)
  answers  outputs -> class probabilities, top-k, CSV rows
  bodies   request bodies in TensorFlow Serving's REST format -> the same arrays; outputs -> its answers
  masks    a segmentation run's answers: a mask PNG per input image
  run      a run's saved model on raw input files (and what its inputs are, for request bodies)
  generate a causal LM run continues prompts (`dltrain generate`)
"""

from dltrain.predict.answers import Predictions, class_probabilities, format_top, predictions
from dltrain.predict.bodies import MAX_REQUEST_PIXELS, Input, Request, answer_body, parse_body, read_request
from dltrain.predict.feed import input_arrays, input_specs, model_feed, output_list, output_names
from dltrain.predict.inputs import (IMAGE_SUFFIXES, read_arrays, read_csv, read_image, read_inputs, read_named,
                                    read_series, read_texts)
from dltrain.predict.generate import continue_prompts, generate, generates
from dltrain.predict.masks import MASK_SUFFIX, class_indices, write_masks
from dltrain.predict.run import PREDICTIONS_DIR, LoadedRun, RunInputs, load_run, predict, read_run_inputs

__all__ = ["IMAGE_SUFFIXES", "Input", "LoadedRun", "MASK_SUFFIX", "MAX_REQUEST_PIXELS", "PREDICTIONS_DIR",
           "Predictions", "Request", "RunInputs", "answer_body", "class_indices", "class_probabilities",
           "continue_prompts", "format_top", "generate", "generates", "input_arrays", "input_specs", "load_run",
           "model_feed", "output_list", "output_names", "parse_body", "predict", "predictions", "read_arrays",
           "read_csv", "read_image", "read_inputs", "read_named", "read_request", "read_run_inputs", "read_series",
           "read_texts", "write_masks"]
