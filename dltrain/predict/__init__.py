"""Raw inputs -> model inputs -> answers: what `dltrain predict`, the export checks and a server share.

  inputs   image files, CSV rows (a series' windows), .npz / .npy arrays, text files, read as the model takes them
  feed     arrays <-> the model's own inputs (names, dtypes) and outputs (its order)
  answers  outputs -> class probabilities, top-k, CSV rows
  bodies   request bodies in TensorFlow Serving's REST format -> the same arrays; outputs -> its answers
  run      a run's saved model on raw input files (and what its inputs are, for request bodies)
"""

from dltrain.predict.answers import Predictions, class_probabilities, format_top, predictions
from dltrain.predict.bodies import MAX_REQUEST_PIXELS, Input, Request, answer_body, parse_body, read_request
from dltrain.predict.feed import input_arrays, input_specs, model_feed, output_list, output_names
from dltrain.predict.inputs import (IMAGE_SUFFIXES, read_arrays, read_csv, read_image, read_inputs, read_named,
                                    read_series, read_texts)
from dltrain.predict.run import LoadedRun, RunInputs, load_run, predict, read_run_inputs

__all__ = ["IMAGE_SUFFIXES", "Input", "LoadedRun", "MAX_REQUEST_PIXELS", "Predictions", "Request", "RunInputs",
           "answer_body", "load_run", "parse_body", "read_request", "class_probabilities", "format_top", "input_arrays",
           "input_specs", "model_feed", "output_list", "output_names", "predict", "predictions", "read_arrays",
           "read_csv", "read_image", "read_inputs", "read_named", "read_run_inputs", "read_series",
           "read_texts"]
