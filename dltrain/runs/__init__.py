"""The run folder: every file a run keeps, written atomically, and everything read back from it.

  folders     the folder, its files' names, status.json, atomic writes, list_runs
  checkpoint  epoch-end checkpoints (weights, optimizer, history) with fallback to the previous one
  history     history.csv / metrics.json read back; which metric is better higher
  best        best.keras by the monitored metric, across resumes
  envinfo     env.json: versions, device, git commit, config hash
  plots       PNG curves, confusion matrix, misclassified examples, run comparisons (matplotlib, Agg)
  taskplots   forecasts against the truth (time series); per-class precision, recall, F1 (multi-label)
  mask_plots  a segmentation's test masks over the images, per-class IoU
  overview    `dltrain runs`: summaries, sort, filter (no TensorFlow)
  comparison  `dltrain compare`: config differences and metrics side by side (no TensorFlow)
  tracking    optional MLflow tracking
  workers     worker processes that run the runs of one folder (a sweep's trials, a cv's folds): locks, logs, signals

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
from dltrain.runs.plots import (draw_comparison, draw_curves, draw_test_plots, phase_starts, pyplot, save_figure,
                                warm_up)
from dltrain.runs.taskplots import PER_CLASS_FILE, draw_forecast, draw_per_class, per_class, write_per_class
from dltrain.runs.workers import (LOGS_DIR, hold_lock, spawn_worker, try_lock, wait_workers, worker_log_tail,
                                  worker_main)
from dltrain.runs.mask_plots import draw_iou, draw_masks

__getattr__ = lazy_face(__name__, {
    "BEST_FILE": "best", "BestModel": "best", "monitored": "best",
    "CHECKPOINT_FILE": "checkpoint", "Checkpoint": "checkpoint", "EpochRecorder": "checkpoint",
    "NonFiniteWeights": "checkpoint", "load_checkpoint": "checkpoint:load", "restore_checkpoint": "checkpoint:restore",
    "write_history": "checkpoint",
    "MlflowTracker": "tracking", "tracking_settings": "tracking:settings",
    "check_tracking_installed": "tracking:check_installed",
})

__all__ = ["BEST_FILE", "BestModel", "CHECKPOINT_FILE", "CONFIG_FILE", "Checkpoint", "Comparison", "DATASET_FILE",
           "ENDED_STATES", "ENV_FILE", "EpochRecorder", "HISTORY_FILE", "LOGS_DIR", "METRICS_FILE", "MODEL_FILE",
           "MlflowTracker", "NonFiniteWeights", "PER_CLASS_FILE", "PYTHONPATH_FILE", "RunInfo", "RunSummary",
           "SORT_KEYS", "STATES", "STATUS_FILE", "atomic_path", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "atomic_write_yaml", "best_epoch", "changed_keys", "check_tracking_installed",
           "compare", "config_hash", "create_run", "draw_comparison", "draw_curves", "draw_forecast", "draw_iou",
           "draw_masks", "draw_per_class", "draw_test_plots", "duration", "git_commit", "higher_is_better",
           "hold_lock", "list_runs", "load_checkpoint", "metric_names", "monitored", "per_class", "phase_starts",
           "plot_comparison", "primary_metric", "pyplot", "read_history", "read_metrics", "read_status",
           "record_env", "restore_checkpoint", "resume_command", "run_file", "run_info", "run_summaries",
           "save_figure", "save_model", "spawn_worker", "tracking_settings", "try_lock", "wait_workers", "warm_up",
           "worker_log_tail", "worker_main", "write_history", "write_per_class", "write_status"]
