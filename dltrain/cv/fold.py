"""One fold: its run folder trained from the cv config with the fold's overrides, or resumed from its checkpoint
as `dltrain resume` does; folds are claimed through a lock file each, so that K worker processes share them."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Callable

from dltrain.cv.folder import CLAIMS_DIR, DONE_STATES, SNAPSHOT_FILE, CvFolder, fold_name, fold_overrides, fold_state
from dltrain.errors import DltrainError, RunInterrupted
from dltrain.runs import try_lock


def run_fold(cv_dir: Path, index: int, folds: int, base_name: str, *, trust_code: bool, progress: bool) -> int | None:
    """Train fold `index` into its run folder, or continue it from its last checkpoint; the signal (SIGINT,
    SIGTERM) that arrived while it was finishing, if one did: no fold should start after it."""
    from dltrain.load import load_config
    from dltrain.training import resume, train

    run_dir = cv_dir / fold_name(index)
    if fold_state(run_dir) != "missing":
        return resume(run_dir, progress=progress, trust_code=trust_code).late_signal
    shutil.rmtree(run_dir, ignore_errors=True)  # made by a process killed before it wrote the fold's config
    loaded = load_config(cv_dir / SNAPSHOT_FILE, fold_overrides(base_name, index, folds), trust_code=trust_code)
    return train(loaded, cv_dir, progress=progress, folder_name=run_dir.name).late_signal


def run_folds(cv: CvFolder, session: str, *, progress: bool, tell: Callable[[str], None] = lambda text: None,
              ended: Callable[[int], None] = lambda index: None) -> int:
    """Claim and run, once each in this `session`, the folds not done (`ended` is told each one that ended);
    return how many ran.

    A fold that fails is told and left (the others go on; --resume tries it again); a signal stops at once."""
    claims = cv.path / CLAIMS_DIR
    claims.mkdir(exist_ok=True)
    ran = 0
    for index in range(1, cv.folds + 1):
        if cv.state(index) in DONE_STATES:
            continue
        fd = try_lock(claims / f"fold-{index}")
        if fd is None:  # another worker runs it
            continue
        try:
            if os.pread(fd, 256, 0).decode(errors="replace") == session or cv.state(index) in DONE_STATES:
                continue  # tried in this session already, or done meanwhile
            os.ftruncate(fd, 0)
            os.pwrite(fd, session.encode(), 0)
            tell(f"fold {index} of {cv.folds}: {'resuming' if cv.state(index) != 'missing' else 'training'} "
                 f"({cv.fold_dir(index)})")
            ran += 1
            try:
                late = run_fold(cv.path, index, cv.folds, cv.loaded.config.name, trust_code=cv.trust_code,
                                progress=progress)
                ended(index)
            except RunInterrupted:
                raise
            except DltrainError as error:
                if fold_state(cv.fold_dir(index)) == "missing":
                    raise  # nothing trained: every fold would fail alike (the data, the model)
                tell(f"fold {index} of {cv.folds}: {error}")
                continue
            if late is not None:
                raise RunInterrupted(f"stopped by {signal.Signals(late).name} while fold {index} was finishing "
                                     "(it finished)", signal_number=late)
        finally:
            os.close(fd)
    return ran
