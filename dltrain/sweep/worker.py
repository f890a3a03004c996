"""A sweep worker: a process that claims trials of one sweep folder and runs them until none is left.

`dltrain sweep` starts K of them: `python -m dltrain.sweep.worker SWEEP_DIR --parent PID [--trust-code]`
(`--trust-code`: the user's word, given to `dltrain sweep`, that every trial may run the config's code).
Each writes its log to SWEEP_DIR/logs/. A worker whose parent (the `dltrain sweep` process) dies stops its trial at the
next batch boundary, as on SIGTERM, so the trial can be resumed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from dltrain.errors import DltrainError, RunInterrupted


def _watch_parent(parent: int) -> None:
    """SIGTERM to this process once its parent is gone (Linux has no portable parent-death signal)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def work(sweep_dir: Path, *, trust_code: bool = False) -> int:
    """Claim and run trials of the sweep in `sweep_dir` until none is left; return how many ran.

    `trust_code` goes to every trial's config, train and resume (dltrain.trust)."""
    from dltrain.load import load_config
    from dltrain.sweep import board, study as studies
    from dltrain.sweep.space import check_space
    from dltrain.sweep.trial import SNAPSHOT_FILE, TrialContext, run_trial

    base = load_config(sweep_dir / SNAPSHOT_FILE, trust_code=trust_code)
    sweep = base.config.sweep
    space = check_space(base)
    optuna = studies.quiet_optuna()
    storage = studies.open_storage(sweep.storage, sweep_dir)
    study = optuna.load_study(study_name=base.config.name, storage=storage, sampler=studies.sampler(sweep),
                              pruner=studies.pruner(sweep, base.config.training.epochs))
    ctx = TrialContext(sweep_dir, base, space, study, storage)
    ran = 0
    while (claim := studies.claim(study, storage, sweep_dir, shared=sweep.storage is not None)) is not None:
        try:
            state = run_trial(claim, ctx)
        finally:
            claim.release()
        ran += 1
        print(f"trial {claim.number}: {state}", flush=True)
        board.refresh(study, space, sweep.metric.goal, sweep_dir)
    return ran


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the worker; exit 130/143 when a signal stopped it, 1 on an error."""
    parser = argparse.ArgumentParser(prog="python -m dltrain.sweep.worker", description=__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--parent", type=int, help="stop when this process (dltrain sweep) ends")
    parser.add_argument("--trust-code", action="store_true", help="let the trials run the code the config names")
    args = parser.parse_args(argv)
    if args.parent:
        _watch_parent(args.parent)
    try:
        ran = work(args.sweep_dir, trust_code=args.trust_code)
    except RunInterrupted as stop:
        print(f"interrupted: {stop}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except DltrainError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:  # SIGINT outside training (loading data): the trial stays resumable
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    print(f"no trial left; this worker ran {ran}", flush=True)


if __name__ == "__main__":
    main()
