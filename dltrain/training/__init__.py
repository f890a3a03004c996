"""Training, read as its story: prepare -> fit -> finish (train.py), with resume and evaluate beside it.

  prepare   seed, data, model, compile, a dry run of the loss: every mistake before a run folder exists
  fit       model.fit with the run's recording callbacks; how an unfinished fit ends (endings)
  finish    test, save, metrics.json, report
  resume    continue from the last checkpoint
  evaluate  score a saved model outside training
  phases    training.phases: each phase's trainable flags, optimizer and callbacks; where a run stands among them
  class_weight  training.class_weight as Keras's fit takes it (balanced, or by class name or index)
  lr_find   the learning-rate range test (`dltrain lr-find`): rates rising per step, the steepest descent
  report    what a run records besides checkpoints: overrides, env, summary, TensorBoard, best.keras, plots
  segments  a segmentation's per-class IoU and test plots (instead of the confusion matrix)
  what runs inside fit: guard (signals, non-finite loss), progress (Rich bars), threads (TensorFlow's pools),
  fused (the fused batch-norm kernel), scoring (one pass over the test split)

Importing this face imports TensorFlow: the CLI imports it inside the commands that train.
"""

from dltrain.training.evaluate import evaluate
from dltrain.training.fused import fuse_batch_norm
from dltrain.training.lr_find import LrFindError, LrFindResult, find_learning_rate
from dltrain.training.guard import Guard, StopRequested
from dltrain.training.phases import PhaseCount, check as check_phases
from dltrain.training.prepare import Prepared, prepare
from dltrain.training.progress import RichProgress
from dltrain.training.report import OVERRIDES_FILE, Drawing, redraw
from dltrain.training.result import TrainingError, TrainResult
from dltrain.training.resume import resume
from dltrain.training.scoring import score
from dltrain.training.train import train

__all__ = ["Drawing", "Guard", "LrFindError", "LrFindResult", "OVERRIDES_FILE", "PhaseCount", "Prepared",
           "RichProgress", "StopRequested", "TrainResult", "TrainingError", "check_phases", "evaluate",
           "find_learning_rate", "fuse_batch_norm", "prepare", "redraw", "resume", "score", "train"]
