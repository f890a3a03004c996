"""dltrain against the tutorial-style peer (benchmarks/peer.py): same data, model, epochs and batch size.

Each repetition runs the peer and dltrain in fresh subprocesses, alternating which goes first, so load
from other processes hits both alike. Nothing is cached between runs; every run reads the IDX files and
trains from scratch. The table is markdown, ready to paste into benchmarks/README.md.

    python benchmarks/run.py            # full: both workloads, full data, the configs' epochs, 3 reps
    python benchmarks/run.py --quick    # < 3 minutes on 2 quiet cores: fewer epochs, a CNN subset, 2 reps
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))


@dataclass
class Workload:
    """One row pair of the table: a dltrain config and the peer's matching model."""

    name: str
    config: Path
    epochs: int
    batch_size: int
    patience: int | None = None  # the config's EarlyStopping patience, given to the peer too
    steps_per_execution: int = 1  # dltrain's, to know how many steps its first callback covers
    train_size: int | None = None  # None: the whole 60,000-image training split
    test_size: int | None = None


@dataclass
class Run:
    """What one subprocess measured."""

    epoch_seconds: list[float]
    train_examples: int
    test_accuracy: float
    start_to_first_step: float
    max_rss_mb: float
    evaluate_seconds: float
    test_examples: int
    epoch_cpu_seconds: list[float] = field(default_factory=list)
    # The whole process as the user waits for it (spawn to exit), and the part after the last epoch ends.
    wall_seconds: float = 0.0
    after_last_epoch: float = 0.0


def first_step(record: dict, epoch_seconds: list[float], steps_per_epoch: int) -> float:
    """Seconds from process start to the end of the first training step.

    A callback sees the end of the first *execution*; with steps_per_execution = k that is k steps in,
    so the k - 1 extra steps are taken off at the median step time. Epoch seconds / (training + validation
    steps) underrates a training step, so dltrain (k > 1) is, if anything, charged too much.
    """
    step = statistics.median(epoch_seconds) / steps_per_epoch
    return record["first_batch_end"] - record["first_batch_index"] * step


@dataclass
class Rows:
    """All runs of one tool on one workload."""

    runs: list[Run] = field(default_factory=list)

    def epochs(self) -> list[float]:
        return [s for run in self.runs for s in run.epoch_seconds]

    def examples_per_second(self) -> float:
        return self.runs[0].train_examples / statistics.median(self.epochs())

    def cpu_per_epoch(self) -> float:
        return statistics.median(s for run in self.runs for s in run.epoch_cpu_seconds)

    def accuracy(self) -> float:
        return statistics.mean(run.test_accuracy for run in self.runs)

    def wall(self) -> float:
        return statistics.median(run.wall_seconds for run in self.runs)

    def after_last_epoch(self) -> float:
        return statistics.median(run.after_last_epoch for run in self.runs)


def workload(name: str, config: Path, *, epochs: int | None, train_size: int | None,
             test_size: int | None, sets: list[str] = ()) -> Workload:
    """Read epochs, batch size and EarlyStopping patience from a dltrain config (no TensorFlow)."""
    from dltrain.config import split_spec
    from dltrain.load import load_config

    training = load_config(config, list(sets)).config.training
    patience = None
    for spec in training.callbacks:
        callback, kwargs = split_spec(spec)
        if callback == "EarlyStopping":
            patience = kwargs.get("patience", 0)
    return Workload(name, config, epochs or training.epochs, training.batch_size, patience,
                    training.steps_per_execution, train_size, test_size)


def _spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a command to completion; return its peak RSS in MB (from wait4, the same for every tool) and its
    wall seconds from spawn to exit."""
    began = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - began


def run_peer(w: Workload, work: Path, tag: str) -> Run:
    """Train and evaluate the peer once."""
    result = work / f"peer-{tag}.json"
    command = [sys.executable, str(HERE / "peer.py"), w.name, "--epochs", str(w.epochs),
               "--batch-size", str(w.batch_size), "--result", str(result)]
    if w.patience is not None:
        command += ["--early-stopping", str(w.patience)]
    if w.train_size:
        command += ["--train-size", str(w.train_size)]
    if w.test_size:
        command += ["--test-size", str(w.test_size)]
    rss, wall = _spawn(command, work / f"peer-{tag}.log")
    data = json.loads(result.read_text())
    val = len_val(w, data["train_examples"])
    steps = -(-data["train_examples"] // w.batch_size) + -(-val // w.batch_size)
    return Run(data["epoch_seconds"], data["train_examples"], data["test_accuracy"],
               first_step(data, data["epoch_seconds"], steps), rss, data["evaluate_seconds"], data["test_examples"],
               data["epoch_cpu_seconds"], wall, data["end"] - data["train_end"])


def len_val(w: Workload, train_examples: int) -> int:
    """The peer's validation examples: validation_split=0.1 of what it read."""
    total = w.train_size or 60000
    return total - train_examples


def _dltrain(args: list[str], work: Path, tag: str, *, progress: bool = True) -> tuple[dict, tuple[float, float]]:
    result = work / f"dltrain-{tag}.json"
    # Progress renders as on a terminal (a forced Rich terminal writing to the log), as users see it.
    env = {"PYTHONPATH": str(ROOT), "TTY_COMPATIBLE": "1", "FORCE_COLOR": "1", "COLUMNS": "120"}
    spent = _spawn([sys.executable, str(HERE / "dltrain_child.py"), str(result), *args],
                   work / f"dltrain-{tag}.log", env if progress else {"PYTHONPATH": str(ROOT)})
    return json.loads(result.read_text()), spent


def run_dltrain(w: Workload, work: Path, tag: str, *, progress: bool = True,
                sets: list[str] = ()) -> tuple[Run, Path]:
    """Train and evaluate with `dltrain train` once; also return the run folder."""
    out = work / f"outputs-{tag}"
    shutil.rmtree(out, ignore_errors=True)  # a reused --work-dir must not hold an older run
    args = ["train", str(w.config), "--output-dir", str(out), "--set", f"training.epochs={w.epochs}"]
    for key, value in (("train_size", w.train_size), ("test_size", w.test_size)):
        if value:
            args += ["--set", f"dataset.{key}={value}"]
    for item in sets:
        args += ["--set", item]
    if not progress:
        args.append("--no-progress")
    record, (rss, wall) = _dltrain(args, work, tag, progress=progress)
    (run_dir,) = out.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    sizes = json.loads((run_dir / "dataset.json").read_text())["sizes"]
    with (run_dir / "history.csv").open() as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    steps = -(-sizes["train"] // w.batch_size) + -(-sizes["validation"] // w.batch_size)
    return Run(seconds, sizes["train"], metrics["test"]["accuracy"], first_step(record, seconds, steps), rss,
               record["evaluate_seconds"], sizes["test"], record["epoch_cpu_seconds"], wall,
               record["end"] - record["train_end"]), run_dir


def time_help(reps: int) -> list[float]:
    """Wall seconds of `python -m dltrain --help`, a fresh process each time."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dltrain", "--help"], check=True, capture_output=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        times.append(time.perf_counter() - start)
    return times


def time_evaluate(run_dir: Path, work: Path, tag: str) -> tuple[float, dict]:
    """Wall seconds of `dltrain evaluate RUN`, and what the child recorded inside it."""
    start = time.perf_counter()
    record, _ = _dltrain(["evaluate", str(run_dir), "--json"], work, tag, progress=False)
    return time.perf_counter() - start, record


def progress_cost(epochs: int, epoch_seconds: float, updates: int) -> float:
    """CPU seconds the Rich progress callback costs per second of training, drawing to a forced terminal.

    The callback gets `updates` batch-end calls an epoch, spread over `epoch_seconds`, for `epochs` epochs,
    as in the real run, while its refresh thread redraws; the process's CPU time is the bar's whole cost.
    """
    import io

    from rich.console import Console

    from dltrain.training.progress import RichProgress

    bar = RichProgress(epochs, updates, console=Console(file=io.StringIO(), force_terminal=True, width=120))
    logs = {"loss": 0.4123, "accuracy": 0.8511}
    cpu, wall = time.process_time(), time.perf_counter()
    bar.on_train_begin()
    for epoch in range(epochs):
        bar.on_epoch_begin(epoch)
        for step in range(updates):
            bar.on_train_batch_end(step, logs)
            time.sleep(epoch_seconds / updates)
        bar.on_epoch_end(epoch, logs)
    bar.on_train_end()
    bar.close("finished")  # on_train_end starts the after-training spinner, which close ends
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


def isolated_progress_cost(epochs: int, epoch_seconds: float, updates: int) -> float:
    """`progress_cost` in a fresh process: the harness's own threads (TensorFlow's, once imported) must
    not count against the bar."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from run import progress_cost; "
            f"print(progress_cost({epochs}, {epoch_seconds}, {updates}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _fmt_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(results: dict[str, dict[str, Rows]], workloads: dict[str, Workload]) -> str:
    """The markdown results table."""
    head = ["workload", "tool", "runs", "s/epoch min", "s/epoch median", "examples/s", "× peer",
            "CPU s/epoch", "× peer (CPU)", "test acc (mean)", "Δ acc (points)", "peak RSS MB",
            "start→first step s", "evaluate examples/s", "whole process s", "× peer (whole)",
            "after last epoch s"]
    lines = [_fmt_row(head), _fmt_row(["---"] * len(head))]
    for name, tools in results.items():
        w = workloads[name]
        peer = tools["peer"]
        for tool, rows in tools.items():
            epochs = rows.epochs()
            ratio = rows.examples_per_second() / peer.examples_per_second()
            delta = 100 * (rows.accuracy() - peer.accuracy())
            ev = statistics.median(r.test_examples / r.evaluate_seconds for r in rows.runs)
            label = f"{name} ({w.epochs} ep, batch {w.batch_size}" + (
                f", {w.train_size} train)" if w.train_size else ")")
            lines.append(_fmt_row([
                label, tool, str(len(rows.runs)), f"{min(epochs):.2f}", f"{statistics.median(epochs):.2f}",
                f"{rows.examples_per_second():,.0f}", f"{ratio:.2f}", f"{rows.cpu_per_epoch():.2f}",
                f"{peer.cpu_per_epoch() / rows.cpu_per_epoch():.2f}", f"{rows.accuracy():.4f}",
                f"{delta:+.2f}", f"{max(r.max_rss_mb for r in rows.runs):,.0f}",
                f"{statistics.median(r.start_to_first_step for r in rows.runs):.2f}", f"{ev:,.0f}",
                f"{rows.wall():.1f}", f"{peer.wall() / rows.wall():.2f}", f"{rows.after_last_epoch():.2f}",
            ]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="MLP 2 epochs; CNN 2 epochs on 10,000 training / 2,000 test images; 2 reps")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per workload (default 3, quick 2)")
    parser.add_argument("--workloads", default="mlp,cnn", help="comma-separated: mlp, cnn")
    parser.add_argument("--epochs", type=int, default=None, help="override every workload's epochs")
    parser.add_argument("--train-size", type=int, default=None, help="use N training images (every workload)")
    parser.add_argument("--test-size", type=int, default=None, help="use N test images (every workload)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="extra dltrain --set for every dltrain run (to measure one default's effect)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep logs and run folders here")
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 3)

    configs = {"mlp": ROOT / "configs" / "fashion_mnist.yaml", "cnn": ROOT / "configs" / "fashion_mnist_cnn.yaml"}
    # Quick CNN: 2 epochs, not 1, so BatchNormalization's moving statistics mean something at test time.
    quick = {"mlp": (2, None, None), "cnn": (2, 8000, 2000)}
    workloads: dict[str, Workload] = {}
    for name in args.workloads.split(","):
        epochs, train_size, test_size = quick[name] if args.quick else (None, None, None)
        workloads[name] = workload(name, configs[name], epochs=args.epochs or epochs,
                                   train_size=args.train_size or train_size, test_size=args.test_size or test_size,
                                   sets=args.sets)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="dltrain-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    results: dict[str, dict[str, Rows]] = {}
    no_progress: dict[str, Rows] = {}
    last_run: dict[str, Path] = {}
    for name, w in workloads.items():
        results[name] = {"peer": Rows(), "dltrain": Rows()}
        no_progress[name] = Rows()
        for rep in range(reps):
            order = ["peer", "dltrain"] if rep % 2 == 0 else ["dltrain", "peer"]
            for tool in order:
                tag = f"{name}-{rep}"
                print(f"[{time.perf_counter() - began:6.1f}s] {name} rep {rep + 1}/{reps}: {tool}",
                      file=sys.stderr, flush=True)
                if tool == "peer":
                    results[name]["peer"].runs.append(run_peer(w, work, tag))
                else:
                    run, last_run[name] = run_dltrain(w, work, tag, sets=args.sets)
                    results[name]["dltrain"].runs.append(run)
            # progress on vs off: the bar's overhead, on the workload with most steps (once in --quick)
            if name == "mlp" and not (args.quick and rep > 0):
                run, _ = run_dltrain(w, work, f"{tag}-noprogress", progress=False, sets=args.sets)
                no_progress[name].runs.append(run)

    print(f"[{time.perf_counter() - began:6.1f}s] dltrain --help and dltrain evaluate", file=sys.stderr, flush=True)
    helps = time_help(5)
    evaluations = {name: time_evaluate(run_dir, work, f"evaluate-{name}") for name, run_dir in last_run.items()}

    print(f"## dltrain vs tutorial-style Keras ({'quick' if args.quick else 'full'}, {reps} reps)\n")
    print(f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
          f"Python {platform.python_version()}, {_versions()}\n")
    print(table(results, workloads))
    print()
    print("| measure | value |")
    print("| --- | --- |")
    print(f"| `dltrain --help` wall s (min / median of {len(helps)}) | "
          f"{min(helps):.2f} / {statistics.median(helps):.2f} |")
    for name in results:
        gap = (statistics.median(r.start_to_first_step for r in results[name]["dltrain"].runs)
               - statistics.median(r.start_to_first_step for r in results[name]["peer"].runs))
        print(f"| {name}: start→first step, dltrain − peer (s) | {gap:+.2f} |")
    for name, (wall, record) in evaluations.items():
        n = results[name]["dltrain"].runs[-1].test_examples
        print(f"| {name}: `dltrain evaluate` wall s / model.evaluate examples/s | "
              f"{wall:.2f} / {n / record['evaluate_seconds']:,.0f} |")
    bar_cost = None
    for name, rows in no_progress.items():
        if rows.runs:
            on = statistics.median(results[name]["dltrain"].epochs())
            off = statistics.median(rows.epochs())
            print(f"| {name}: s/epoch progress on / off (median) | {on:.2f} / {off:.2f} ({100 * (on / off - 1):+.1f}%) |")
            w = workloads[name]
            steps = -(-results[name]["dltrain"].runs[0].train_examples // w.batch_size)
            bar_cost = isolated_progress_cost(w.epochs, off, max(1, steps // w.steps_per_execution))
            print(f"| {name}: progress bar CPU per second of training (isolated) | {100 * bar_cost:.2f}% |")
    print()
    print(targets(results, helps, bar_cost))
    print(f"\n(total {time.perf_counter() - began:.0f} s; logs in {work})")
    return 0


def targets(results: dict[str, dict[str, Rows]], helps: list[float], bar_cost: float | None) -> str:
    """The issue's targets, each with the measured value and whether it was met."""
    rows = ["| target | measured | met |", "| --- | --- | --- |"]

    def add(what: str, value: str, met: bool) -> None:
        rows.append(f"| {what} | {value} | {'yes' if met else '**no**'} |")

    # (examples/s, whole process) against the peer: the MLP is judged as the user waits, the CNN on both.
    for name, (goal, whole_goal) in (("mlp", (3.0, 2.5)), ("cnn", (1.5, 1.5))):
        if name in results:
            peer, ours = results[name]["peer"], results[name]["dltrain"]
            ratio = ours.examples_per_second() / peer.examples_per_second()
            delta = 100 * (ours.accuracy() - peer.accuracy())
            add(f"{name}: examples/s ≥ {goal}× peer, accuracy ≥ peer − 0.5 points",
                f"{ratio:.2f}×, {delta:+.2f} points", ratio >= goal and delta >= -0.5)
            whole = peer.wall() / ours.wall()
            add(f"{name}: whole process ≥ {whole_goal}× faster than peer", f"{whole:.2f}× ({ours.wall():.1f} s vs "
                f"{peer.wall():.1f} s)", whole >= whole_goal)
            if name == "mlp":
                after = ours.after_last_epoch()
                add("mlp: after the last epoch (test, save, report) < 2 s", f"{after:.2f} s", after < 2.0)
            gap = (statistics.median(r.start_to_first_step for r in ours.runs)
                   - statistics.median(r.start_to_first_step for r in peer.runs))
            add(f"{name}: start→first step ≤ peer + 1 s", f"{gap:+.2f} s", gap <= 1.0)
    add("`dltrain --help` < 0.3 s (median)", f"{statistics.median(helps):.2f} s", statistics.median(helps) < 0.3)
    if bar_cost is not None:
        add("progress bar < 2% of epoch time (isolated)", f"{100 * bar_cost:.2f}%", bar_cost < 0.02)
    return "\n".join(rows)


def _versions() -> str:
    out = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; "
                          "print(f\"TF {m.version('tensorflow')}, Keras {m.version('keras')}\")"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
