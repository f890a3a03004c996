"""The model a server answers with: a run's Keras model or an export of it, its inputs as request bodies give
them (read as `dltrain predict` reads files), and its answers in TF Serving's format plus top-k classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dltrain.errors import DataError
from dltrain.predict import (Input, LoadedRun, Request, answer_body, continue_prompts, generates, load_run,
                             parse_body, predictions, read_request)

TOP_K = 5  # classes listed per example, unless the request says ?top_k=K

_DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF", "bfloat16": "DT_BFLOAT16",
           "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64", "uint8": "DT_UINT8",
           "string": "DT_STRING", "bool": "DT_BOOL"}


class Served:
    """One loaded model under one name (version 1), as the routes use it."""

    version = "1"

    def __init__(self, run: LoadedRun, runtime: Any, name: str, source: str) -> None:
        self.run = run
        self.runtime = runtime
        self.name = name
        self.source = source
        self.inputs: list[Input] = run.inputs()
        self.aliases = run.aliases()
        # Named as Keras's SavedModel export names them, so that TF Serving on the export answers alike.
        self.outputs = [f"output_{i}" for i in range(len(run.model.outputs))]

    def read(self, body: bytes) -> Request:
        """A predict request's body as arrays (a DataError says what the model cannot take)."""
        return read_request(parse_body(body), self.inputs, names=self.aliases)

    def call(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The model's outputs for a batch (one array per input); runs in the batcher's worker thread."""
        return self.runtime(arrays)

    @property
    def generates(self) -> bool:
        """Whether `:generate` is served: the run is a KerasHub causal LM, served as its Keras model."""
        return self.source == str(self.run.model_file) and generates(self.run.model)

    def read_prompts(self, body: bytes) -> tuple[list[str], int | None]:
        """A `:generate` body, `{"instances": ["prompt", ...], "max_length": N}` (or `inputs`), as (prompts,
        max_length); a DataError says what was expected."""
        found = parse_body(body)
        if not isinstance(found, dict):
            found = {"": found}
        extra = sorted(set(found) - {"instances", "inputs", "max_length"})
        prompts = found.get("instances", found.get("inputs"))
        if extra or isinstance(prompts, str):
            prompts = [prompts] if isinstance(prompts, str) and not extra else None
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise DataError('a :generate body is {"instances": ["prompt", ...]} (or "inputs"), with an optional '
                            '"max_length" (tokens in all, the prompt\'s included)' +
                            (f"; it has {', '.join(repr(k) for k in extra)}" if extra else ""))
        max_length = found.get("max_length")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 1):
            raise DataError(f'"max_length" must be a whole number of tokens, at least 1; got {max_length!r}')
        return prompts, max_length

    def generate(self, prompts: list[str], max_length: int | None) -> dict[str, Any]:
        """`:generate`'s answer: each prompt continued, in `predictions`; runs in the model's worker thread."""
        return {"predictions": continue_prompts(self.run.model, prompts, max_length=max_length)}

    def answer(self, outputs: list[np.ndarray], request: Request, *, top_k: int | None = None) -> dict[str, Any]:
        """TF Serving's answer, with `top_k` (class names and probabilities, most probable first) for a classifier."""
        body = answer_body(outputs, self.outputs, request.columns)
        found = predictions([""] * request.rows, outputs, self.run.dataset, [])
        if found.probabilities is not None:
            k = min(top_k or TOP_K, found.probabilities.shape[1])
            body["top_k"] = [[{"class": name, "probability": p} for name, p in top] for top in found.top(k)]
        return body

    def status(self) -> dict[str, Any]:
        """GET /v1/models/NAME: TF Serving's GetModelStatusResponse."""
        return {"model_version_status": [{"version": self.version, "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self) -> dict[str, Any]:
        """GET /v1/models/NAME/metadata: TF Serving's GetModelMetadataResponse (its serving_default signature),
        and what dltrain knows beside it (task, class names, the model file)."""
        signature = {"inputs": {i.name: _tensor(i.name, i.dtype, (None, *i.shape)) for i in self.inputs},
                     "outputs": {name: _tensor(name, str(t.dtype), tuple(t.shape))
                                 for name, t in zip(self.outputs, self.run.model.outputs)},
                     "method_name": "tensorflow/serving/predict"}
        dataset = self.run.dataset
        return {"model_spec": {"name": self.name, "signature_name": "", "version": self.version},
                "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
                "dltrain": {"task": dataset.get("task"), "num_classes": dataset.get("num_classes"),
                            "class_names": dataset.get("class_names"), "model": self.source,
                            "images": [i.name for i in self.inputs if i.image]}}

    def page_model(self) -> dict[str, Any]:
        """What the page's script needs: the inputs and whether answers have classes."""
        return {"inputs": [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape), "image": i.image}
                           for i in self.inputs], "classifier": bool(self.run.dataset.get("num_classes")),
                "generates": self.generates}


def _tensor(name: str, dtype: str, shape: tuple[int | None, ...]) -> dict[str, Any]:
    """A TensorInfo as TF Serving writes it in JSON."""
    return {"dtype": _DTYPES.get(dtype, f"DT_{dtype.upper()}"), "name": name,
            "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in shape],
                             "unknown_rank": False}}


def load_served(run_dir: Path, *, best: bool = False, model_path: Path | None = None, name: str | None = None,
                trust_code: bool = False) -> Served:
    """A run's model (model.keras, best.keras with `best`) or its export at `model_path`, ready to serve."""
    from dltrain.export import KerasRuntime, load_export

    run = load_run(run_dir, best=best, trust_code=trust_code)
    if model_path is None:
        runtime, source = KerasRuntime(run.model, run.model_file.name), str(run.model_file)
    else:
        runtime, source = load_export(model_path, run.model), str(model_path)
    return Served(run, runtime, name or run.name, source)
