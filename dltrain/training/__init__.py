"""Training, read as its story: prepare -> fit -> finish (train.py), with resume and evaluate beside it.

  prepare   seed, data, model, compile, a dry run of the loss: every mistake before a run folder exists
  fit       model.fit with the run's recording callbacks; how an unfinished fit ends (endings)
  finish    test, save, metrics.json, report
  resume    continue from the last checkpoint
  evaluate  score a saved model outside training
"""

from dltrain.training.evaluate import evaluate
from dltrain.training.result import TrainingError, TrainResult
from dltrain.training.resume import resume
from dltrain.training.train import train

__all__ = ["TrainResult", "TrainingError", "evaluate", "resume", "train"]
