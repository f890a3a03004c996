"""The run folder: every file a run keeps, written atomically, and everything read back from it.

  folders     the folder, its files' names, status.json, atomic writes, list_runs
  checkpoint  epoch-end checkpoints (weights, optimizer, history) with fallback to the previous one
  history     history.csv / metrics.json read back; which metric is better higher
  best        best.keras by the monitored metric, across resumes
  envinfo     env.json: versions, device, git commit, config hash
  plots       PNG curves, confusion matrix, misclassified examples, run comparisons (matplotlib, Agg)
  mask_plots  a segmentation's test masks over the images, per-class IoU
  overview    `dltrain runs`: summaries, sort, filter (no TensorFlow)
  comparison  `dltrain compare`: config differences and metrics side by side (no TensorFlow)
  tracking    optional MLflow tracking

The names below are the stage's public face; those whose modules import Keras load on first use.
"""

from dltrain import lazy_face
from dltrain.runs.comparison import Comparison, compare, plot as plot_comparison
from dltrain.runs.envinfo import ENV_FILE, config_hash, git_commit, record as record_env
from dltrain.runs.folders import (CONFIG_FILE, DATASET_FILE, ENDED_STATES, HISTORY_FILE, METRICS_FILE, MODEL_FILE,
                                  PYTHONPATH_FILE, STATES, STATUS_FILE, RunInfo, atomic_path, atomic_write_bytes,
                                  atomic_write_json, atomic_write_text, atomic_write_yaml, changed_keys, create_run,
                                  list_runs, read_status, resume_command, run_file, run_info, save_model, write_status)
from dltrain.runs.history import (best_epoch, higher_is_better, metric_names, primary_metric, read_history,
                                  read_metrics)
from dltrain.runs.overview import SORT_KEYS, RunSummary, duration, run_summaries
from dltrain.runs.mask_plots import draw_iou, draw_masks
from dltrain.runs.plots import draw_comparison, draw_curves, draw_test_plots, pyplot, save_figure, warm_up

__getattr__ = lazy_face(__name__, {
    "BEST_FILE": "best", "BestModel": "best", "monitored": "best",
    "CHECKPOINT_FILE": "checkpoint", "Checkpoint": "checkpoint", "EpochRecorder": "checkpoint",
    "NonFiniteWeights": "checkpoint", "load_checkpoint": "checkpoint:load", "restore_checkpoint": "checkpoint:restore",
    "write_history": "checkpoint",
    "MlflowTracker": "tracking", "tracking_settings": "tracking:settings",
    "check_tracking_installed": "tracking:check_installed",
})

__all__ = ["draw_iou", "draw_masks", "BEST_FILE", "CHECKPOINT_FILE", "CONFIG_FILE", "DATASET_FILE", "ENDED_STATES", "ENV_FILE", "HISTORY_FILE",
           "METRICS_FILE", "MODEL_FILE", "PYTHONPATH_FILE", "SORT_KEYS", "STATES", "STATUS_FILE", "BestModel",
           "Checkpoint", "Comparison", "EpochRecorder", "MlflowTracker", "NonFiniteWeights", "RunInfo", "RunSummary",
           "atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "atomic_write_yaml",
           "best_epoch", "changed_keys", "check_tracking_installed", "compare", "config_hash", "create_run",
           "draw_comparison", "draw_curves", "draw_test_plots", "duration", "git_commit", "higher_is_better",
           "list_runs", "load_checkpoint", "metric_names", "monitored", "plot_comparison", "primary_metric",
           "pyplot", "read_history", "read_metrics", "read_status", "record_env", "restore_checkpoint",
           "resume_command", "run_file", "run_info", "run_summaries", "save_figure", "save_model",
           "tracking_settings", "warm_up", "write_history", "write_status"]
