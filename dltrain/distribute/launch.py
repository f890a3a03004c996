"""`--workers N`: start N local worker processes of one dltrain command, each with a TF_CONFIG naming the
others on free localhost ports; show the chief's output and end with the first non-zero exit status.

It is for trying multi-worker training on one machine and for tests; on a cluster the platform (Kubeflow's
TFJob, Vertex AI, SageMaker) starts the processes and sets TF_CONFIG.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from dltrain.distribute.cluster import ENV, DistributeError, tf_config

# Lines of a failed worker's output shown with its exit status.
TAIL_LINES = 5


def free_ports(count: int) -> list[int]:
    """`count` TCP ports on localhost that are free now (the OS picks them)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tail(path: Path) -> list[str]:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return []
    errors = [line for line in lines if line.startswith(("error:", "interrupted:"))]
    return errors[-1:] if errors else lines[-TAIL_LINES:]


def run_workers(arguments: list[str], count: int, *, echo: Callable[[str], Any] = print,
                program: list[str] | None = None) -> int:
    """Run `dltrain <arguments>` (or `program`) as `count` workers of one local cluster; the exit status of
    the first worker that fails (the others are stopped), else 0. Worker 0, the chief, writes to this terminal."""
    if count < 1:
        raise DistributeError(f"--workers must be at least 1, got {count}")
    if os.environ.get(ENV, "").strip():
        raise DistributeError(f"--workers starts a cluster of its own, but {ENV} is already set",
                              hint=f"unset {ENV}, or start each worker yourself without --workers")
    tasks = {"worker": [f"localhost:{port}" for port in free_ports(count)]}

    def forward(signal_number: int, frame: Any) -> None:
        # The workers of a terminal's process group get Ctrl-C themselves; SIGTERM is passed on.
        if signal_number == signal.SIGTERM:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="dltrain-workers-") as logs:
        log_files = [Path(logs) / f"worker{i}.log" for i in range(count)]
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for i in range(count):
                env = {**os.environ, ENV: tf_config(tasks, "worker", i)}
                command = [*(program or [sys.executable, "-m", "dltrain"]), *arguments]
                if i == 0:
                    processes.append(subprocess.Popen(command, env=env))
                else:
                    with open(log_files[i], "wb") as log:
                        processes.append(subprocess.Popen([*command, "--no-progress"], env=env, stdout=log,
                                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            failed, status = _wait(processes)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failed:  # the chief's own output is already on the terminal
            for line in _tail(log_files[failed]):
                echo(f"worker:{failed}: {line}")
            echo(f"worker:{failed} exited with status {status}; the other workers were stopped")
    return status


def _status(code: int) -> int:
    """A process's exit status as a shell reports it: 128 + N for a process ended by signal N."""
    return 128 - code if code < 0 else code


def _wait(processes: list[subprocess.Popen]) -> tuple[int | None, int]:
    """Wait for every process; at the first non-zero exit stop the others. (which one failed, its status)."""
    while True:
        codes = [p.poll() for p in processes]
        failed = next((i for i, code in enumerate(codes) if code not in (None, 0)), None)
        if failed is not None:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + 30
            for process in processes:
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            return failed, _status(codes[failed])
        if all(code == 0 for code in codes):
            return None, 0
        time.sleep(0.05)
