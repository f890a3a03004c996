"""Worker processes that run the runs of one folder (a sweep's trials, a cross-validation's folds): the folder's
lock, the processes and their logs, Ctrl-C and SIGTERM forwarded to them once, and a worker's own end when the
process that started it is gone. No TensorFlow: the workers import it themselves."""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from dltrain.errors import DltrainError, RunInterrupted

LOGS_DIR = "logs"


def try_lock(path: Path) -> int | None:
    """An exclusive lock on the file `path` (created), held until its descriptor is closed; None if another process
    holds it."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def hold_lock(path: Path, busy: Callable[[], DltrainError]) -> int:
    """The lock of a folder whose runs this process starts: `busy()` is raised while another process holds it."""
    fd = try_lock(path)
    if fd is None:
        raise busy()
    return fd


def spawn_worker(module: str, folder: Path, index: int, *, trust_code: bool, extra: tuple[str, ...] | list[str] = ()) -> subprocess.Popen:
    """Start worker `index` (`python -m module folder --parent PID`), its output in folder/logs/worker-<index>.log."""
    (folder / LOGS_DIR).mkdir(exist_ok=True)
    command = [sys.executable, "-m", module, str(folder), "--parent", str(os.getpid()), *extra]
    with open(folder / LOGS_DIR / f"worker-{index}.log", "ab") as log:
        # A session of its own: Ctrl-C reaches the workers once, forwarded by this process.
        return subprocess.Popen(command + (["--trust-code"] if trust_code else []), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def worker_log_tail(folder: Path, index: int) -> str:
    """Worker `index`'s log: its path and last line (what a failed worker said last)."""
    path = folder / LOGS_DIR / f"worker-{index}.log"
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return f"{path}: {lines[-1].strip() if lines else ''}"


def wait_workers(procs: list[subprocess.Popen], *, tick: Callable[[], None] = lambda: None, poll_s: float = 0.5) -> list[int]:
    """Wait for the workers, calling `tick` every `poll_s` seconds and once after they ended; SIGINT and SIGTERM
    are forwarded to them (a second one too: they then end at once). Returns the signals that arrived."""
    stopped: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        stopped.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            alive = any(proc.poll() is None for proc in procs)
            tick()
            if not alive:
                return stopped
            time.sleep(poll_s)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _watch_parent(parent: int) -> None:
    """SIGTERM to this process once its parent is gone (Linux has no portable parent-death signal)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_main(prog: str, description: str | None, work: Callable[[argparse.Namespace], str],
                argv: list[str] | None = None, options: Callable[[argparse.ArgumentParser], None] = lambda p: None
                ) -> None:
    """A worker's entry point: `prog FOLDER --parent PID [--trust-code]`; `work(args)` returns its last line.
    Exits 130/143 when a signal stopped it, 1 (or the error's status) on an error."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--parent", type=int, help="stop when this process ends")
    parser.add_argument("--trust-code", action="store_true", help="let the runs run the code the config names")
    options(parser)
    args = parser.parse_args(argv)
    if args.parent:
        _watch_parent(args.parent)
    try:
        said = work(args)
    except RunInterrupted as stop:
        print(f"interrupted: {stop}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except DltrainError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:  # SIGINT outside training (loading data): the run stays resumable
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    print(said, flush=True)
