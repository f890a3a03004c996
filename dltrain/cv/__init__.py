"""Cross-validation: many runs from one config (`dltrain cv`), one per fold of the training split, each an
ordinary run folder (fold-1, fold-2, ...) inside one cv folder; the test split stays held out.

folder.py   the cv folder: cv.yaml (the config every fold starts from), folds.json, each fold's state, the lock
fold.py     one fold: trained into its run folder, or resumed from its checkpoint
worker.py   a worker process: claims folds until none is left (`python -m dltrain.cv.worker`)
summary.py  cv.json and cv.csv: each fold's metrics, their mean and standard deviation
driver.py   `dltrain cv`: start or resume, the folds in this process or in K workers, the summary

The data layer cuts the folds (`dataset.fold`, dltrain/data/folds.py); no data file is written.
"""

from dltrain.cv.driver import CvResult, open_cv, run_cv
from dltrain.cv.folder import CvError, CvFolder

__all__ = ["CvError", "CvFolder", "CvResult", "open_cv", "run_cv"]
