"""What a run ran on: versions, device, seed, the config's git commit and hash (env.json in the run folder)."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

ENV_FILE = "env.json"


def config_hash(resolved: dict[str, Any]) -> str:
    """A SHA-256 of the resolved config: equal hashes mean equal configs, whatever the key order."""
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode("utf-8")).hexdigest()


def git_commit(folder: Path) -> dict[str, Any] | None:
    """The commit checked out in the git repository holding `folder`, and whether it has local changes."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(changes), "repository": git("rev-parse", "--show-toplevel")}


def device() -> dict[str, Any]:
    """The accelerators TensorFlow sees, or the CPU when there are none."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        return {"type": "GPU", "names": names}
    return {"type": "CPU", "name": _cpu_name(), "cores": _cores()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int | None:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def environment(resolved: dict[str, Any], config_path: Path) -> dict[str, Any]:
    """Versions, device, seed, git commit of the config's repository and the config hash."""
    import keras
    import tensorflow as tf

    from dltrain import __version__

    return {
        "dltrain": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device(),
        "seed": resolved.get("seed"),
        "config_sha256": config_hash(resolved),
        "git": git_commit(config_path.resolve().parent),
        "time": datetime.now().isoformat(timespec="seconds"),
    }


def record(run_dir: Path, resolved: dict[str, Any], config_path: Path, *, resumed: bool = False,
           distribute: dict[str, Any] | None = None) -> None:
    """Write env.json (with the strategy used, when given); a resume adds its own environment under
    `resumes` and keeps the first one."""
    import dltrain.runs.folders as runs

    env = environment(resolved, config_path)
    if distribute is not None:
        env["distribute"] = distribute
    path = run_dir / ENV_FILE
    if resumed and path.is_file():
        try:
            first = json.loads(path.read_text())
        except ValueError:
            first = None
        if isinstance(first, dict):
            first.setdefault("resumes", []).append(env)
            env = first
    runs.atomic_write_json(path, env)
