"""Sweeps: a study of many runs from one config (`sweep:` section, `dltrain sweep`), each an ordinary run.

space.py     the parameters as Optuna distributions, every value checked against the config (no TensorFlow)
checks.py    the checks that need Keras: each value builds, the metric is one the model logs
study.py     storage (journal file or database), the study's trial slots, claiming a trial, trial locks
trial.py     one trial: a run folder trained (or resumed) with a pruning reporter, told to the study
worker.py    a worker process: claims trials until none are left (`python -m dltrain.sweep.worker`)
driver.py    `dltrain sweep`: the sweep folder, the workers, the live view, the leaderboard and plots
board.py     leaderboard.csv and Optuna's plots
live.py      the Rich live display
"""

from dltrain import lazy_face

__getattr__ = lazy_face(__name__, {
    "open_sweep": "driver", "run_sweep": "driver:run", "Sweep": "driver", "SweepResult": "driver",
    "check_space": "space", "Space": "space", "check_builds": "checks", "check_sweep": "checks",
})

__all__ = ["Space", "Sweep", "SweepResult", "check_builds", "check_space", "check_sweep", "open_sweep", "run_sweep"]
