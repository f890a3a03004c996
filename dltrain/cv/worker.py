"""A cv worker: a process that claims folds of one cv folder and runs them until none is left.

`dltrain cv --workers K` starts K of them: `python -m dltrain.cv.worker CV_DIR --parent PID --session S
[--trust-code]`, each writing its log to CV_DIR/logs/. A worker whose parent is gone stops its fold at the next
batch boundary, as on SIGTERM, so the fold can be resumed.
"""

from __future__ import annotations

import argparse

from dltrain.runs import worker_main


def _work(args: argparse.Namespace) -> str:
    from dltrain.cv.driver import reopen

    cv = reopen(args.folder, trust_code=args.trust_code)
    from dltrain.cv.fold import run_folds

    ran = run_folds(cv, args.session, progress=False, tell=lambda text: print(text, flush=True))
    return f"no fold left; this worker ran {ran}"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the worker; exit 130/143 when a signal stopped it, 1 on an error."""
    worker_main("python -m dltrain.cv.worker", __doc__, _work, argv,
                options=lambda parser: parser.add_argument("--session", required=True,
                                                           help="the `dltrain cv` call: each fold is tried once in it"))


if __name__ == "__main__":
    main()
