"""A saved model scored on the test split of its config's dataset, outside any training run."""

from __future__ import annotations

from pathlib import Path

from dltrain import data, runs
from dltrain.data import evaluation_dataset
from dltrain.errors import DltrainError
from dltrain.load import load_config
from dltrain.model import load_model
import dltrain.training.threads as threads
from dltrain.training.result import TrainingError
from dltrain.trust import require_trust


def evaluate(run_dir: Path | None = None, *, model_path: Path | None = None,
             config_path: Path | None = None, trust_code: bool = False) -> dict[str, float]:
    """Score a saved model on the test split of its config's dataset (`trust_code`: dltrain.trust)."""
    if run_dir is not None:
        config_path = runs.run_file(run_dir, runs.CONFIG_FILE)
        model_path = runs.run_file(run_dir, runs.MODEL_FILE)
    if model_path is None or config_path is None:
        raise DltrainError("give a run folder, or both --model and --config")
    loaded = load_config(config_path, trust_code=trust_code)
    require_trust(loaded)  # before the data is read: the model could not be loaded anyway
    with loaded.located():
        shape = data.describe(loaded.config.dataset).input_shape
        splits = data.load(loaded.config.dataset, loaded.config.seed)
        if loaded.config.model.task is not None:  # raw strings and images, as the task trained on them
            splits = data.raw_splits(splits)
    threads.apply(loaded, shape, TrainingError)
    model = load_model(model_path, loaded)
    test_ds = evaluation_dataset(splits.test, loaded.config.training.batch_size, list(model.output_names),
                                 splits.info.labelled)
    try:
        return {k: float(v) for k, v in model.evaluate(test_ds, return_dict=True, verbose=0).items()}
    except Exception as error:
        # A damaged file or record among streamed test examples: TensorFlow's error does not say which.
        found = data.damaged(splits.test) if data.is_data_error(error) else None
        if found is None:
            raise
        raise found from None
