"""A sweep worker: a process that claims trials of one sweep folder and runs them until none is left.

`dltrain sweep` starts K of them: `python -m dltrain.sweep.worker SWEEP_DIR --parent PID [--trust-code]`
(`--trust-code`: the user's word, given to `dltrain sweep`, that every trial may run the config's code).
Each writes its log to SWEEP_DIR/logs/. A worker whose parent (the `dltrain sweep` process) dies stops its trial at the
next batch boundary, as on SIGTERM, so the trial can be resumed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dltrain.runs import worker_main


def work(sweep_dir: Path, *, trust_code: bool = False) -> int:
    """Claim and run trials of the sweep in `sweep_dir` until none is left; return how many ran.

    `trust_code` goes to every trial's config, train and resume (dltrain.trust)."""
    from dltrain.load import load_config
    import dltrain.sweep.board as board
    import dltrain.sweep.study as studies
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
    def run(args: argparse.Namespace) -> str:
        return f"no trial left; this worker ran {work(args.folder, trust_code=args.trust_code)}"

    worker_main("python -m dltrain.sweep.worker", __doc__, run, argv)


if __name__ == "__main__":
    main()
