"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's `lr_find`): from the config's
initial weights, one step per learning rate, the rate rising exponentially from `min_lr` to `max_lr`, until the
smoothed loss passes 4x its minimum. The rate where the smoothed loss falls fastest is the suggestion."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dltrain import runs
from dltrain.config import LoadedConfig
from dltrain.data import fit_datasets
from dltrain.errors import DltrainError
from dltrain.training.prepare import Prepared, prepare

# fastai's smoothing of the per-step loss: an exponential moving average with bias correction.
BETA = 0.98
# fastai's stop rule: the smoothed loss at 4x its minimum has diverged.
STOP_FACTOR = 4.0
# fastai's and Lightning's default number of steps.
DEFAULT_STEPS = 100
DEFAULT_MIN_LR = 1e-7
DEFAULT_MAX_LR = 10.0
# The first steps' average is mostly bias correction: the search for the steepest descent skips this share.
SKIP_START = 0.1
# The share of the steps the slope of the smoothed loss is measured over.
SLOPE_WINDOW = 0.05
CSV_FILE = "lr_find.csv"
PNG_FILE = "lr_find.png"
JSON_FILE = "lr_find.json"


class LrFindError(DltrainError):
    """The range test cannot run as asked, or its loss never fell."""


@dataclass
class LrFindResult:
    """What a range test measured and suggests."""

    folder: Path
    rows: list[dict[str, float]]
    stop: str  # why it ended
    suggestion: float | None
    set_key: str  # the --set key that sets the config's learning rate
    notes: list[str] = field(default_factory=list)

    @property
    def shown_suggestion(self) -> str | None:
        """The suggested rate to two digits."""
        return None if self.suggestion is None else shown_rate(self.suggestion)

    @property
    def png(self) -> Path:
        """The plot: loss against learning rate, the suggestion marked."""
        return self.folder / PNG_FILE

    @property
    def csv(self) -> Path:
        """step, lr, loss, smoothed of every step."""
        return self.folder / CSV_FILE

    @property
    def set_line(self) -> str | None:
        """`--set optimizer.Adam.learning_rate=3.2e-03`: the suggestion as `dltrain train` takes it."""
        return None if self.suggestion is None else f"--set {self.set_key}={shown_rate(self.suggestion)}"


def shown_rate(value: float) -> str:
    """A rate to two digits, written so YAML reads it as a number (`3.2e-3`, never `3e-3`, a string in YAML 1.1)."""
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def rates(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    """The learning rate of each step: exponentially from `min_lr` (step 1) to `max_lr` (step `steps`)."""
    return min_lr * (max_lr / min_lr) ** (np.arange(steps) / (steps - 1))


def smoothed(losses: list[float], beta: float = BETA) -> list[float]:
    """fastai's smoothed loss: the exponential moving average, divided by 1 - beta^n (bias correction)."""
    average, out = 0.0, []
    for n, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** n))
    return out


def steepest(lrs: list[float], smooth: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest against log(lr), before its minimum; None when it never fell.

    The slope is taken over a window of 1/20 of the steps (step to step it is mostly noise); the rate is the
    window's middle."""
    if not np.isfinite(smooth).any():
        return None
    end = int(np.nanargmin(smooth)) + 1
    window = max(1, round(len(smooth) * SLOPE_WINDOW))
    start = min(int(len(smooth) * SKIP_START), max(0, end - window - 1))
    s, x = np.asarray(smooth[start:end]), np.log(np.asarray(lrs[start:end]))
    if len(s) <= window:
        return None
    slope = (s[window:] - s[:-window]) / (x[window:] - x[:-window])
    best = int(np.argmin(slope))
    return float(lrs[start + best + window // 2]) if slope[best] < 0 else None


def rate_setting(loaded: LoadedConfig, min_lr: float) -> tuple[str, list[str]]:
    """The --set key of the config's learning rate, as the config wrote its optimizer; the optimizer's rate (a
    schedule included: the notes say so) becomes `min_lr`, which the test then raises step by step."""
    spec = loaded.config.optimizer
    notes: list[str] = []
    if isinstance(spec, str):  # `adam`: --set turns the bare name into {adam: {learning_rate: ...}}
        return f"optimizer.{spec}.learning_rate", notes
    (name, kwargs), = spec.items()
    kwargs = dict(kwargs or {})
    rate = kwargs.get("learning_rate", kwargs.get("lr"))
    if isinstance(rate, (dict, str)):
        schedule = next(iter(rate)) if isinstance(rate, dict) else rate
        notes.append(f"the config's learning-rate schedule ({schedule}) is replaced for the test: the rate rises "
                     "exponentially instead; the --set line below replaces it with a constant rate")
    kwargs.pop("lr", None)
    kwargs["learning_rate"] = min_lr
    loaded.config.optimizer = {name: kwargs}
    return f"optimizer.{name}.learning_rate", notes


def _batches(prepared: Prepared, loaded: LoadedConfig) -> Any:
    """Training batches without end, epoch after epoch in the run's (seed, epoch) order."""
    config = loaded.config
    datasets = fit_datasets(prepared.splits, config.training, config.seed, list(prepared.model.output_names),
                            prepared.augmentation)
    datasets.randomness.set_model(prepared.model)
    epoch = 0
    while True:
        datasets.randomness.on_epoch_begin(epoch)
        yield from datasets.train
        epoch += 1


def run_test(loaded: LoadedConfig, *, min_lr: float, max_lr: float, steps: int,
             step_done: Callable[[int, int], None] = lambda step, steps: None) -> tuple[list[dict[str, float]], str]:
    """Train one step per rate of `rates(min_lr, max_lr, steps)` from the initial weights; the rows and why it stopped."""
    prepared = prepare(loaded)
    model = prepared.model
    rows: list[dict[str, float]] = []
    average, best = 0.0, math.inf
    stop = f"reached --max-lr {max_lr:g} after {steps} steps"
    for step, (lr, (x, y)) in enumerate(zip(rates(min_lr, max_lr, steps), _batches(prepared, loaded)), start=1):
        model.optimizer.learning_rate = float(lr)
        loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
        average = BETA * average + (1 - BETA) * loss  # as smoothed(), one step at a time
        smooth = average / (1 - BETA ** step)
        rows.append({"step": step, "lr": float(lr), "loss": loss, "smoothed": smooth})
        step_done(step, steps)
        if not math.isfinite(smooth):
            stop = f"the loss became {loss} at lr {shown_rate(lr)} (step {step})"
            break
        if step > 1 and smooth > STOP_FACTOR * best:
            stop = (f"the smoothed loss passed {STOP_FACTOR:g}x its minimum ({best:.4g}) at lr {shown_rate(lr)} "
                    f"(step {step})")
            break
        best = min(best, smooth)
    return rows, stop


def _draw(rows: list[dict[str, float]], suggestion: float | None, path: Path) -> None:
    plt = runs.pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    lrs = [r["lr"] for r in rows]
    axes.plot(lrs, [r["loss"] for r in rows], color="0.75", linewidth=1, label="loss per step")
    axes.plot(lrs, [r["smoothed"] for r in rows], color="C0", linewidth=2, label=f"smoothed (EMA, beta {BETA})")
    if suggestion is not None:
        at = min(rows, key=lambda r: abs(math.log(r["lr"] / suggestion)))
        axes.axvline(suggestion, color="C3", linestyle="--", linewidth=1)
        axes.plot([suggestion], [at["smoothed"]], "o", color="C3", label=f"suggested {shown_rate(suggestion)}")
    finite = [r["smoothed"] for r in rows if math.isfinite(r["smoothed"])]
    if finite:  # the divergence at the end would squash the useful part of the curve
        low, high = min(finite), min(max(finite), STOP_FACTOR * min(finite))
        axes.set_ylim(low - 0.05 * (high - low), high + 0.1 * (high - low))
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel("training loss")
    axes.set_title("learning-rate range test")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    runs.save_figure(figure, path)


def find_learning_rate(loaded: LoadedConfig, output_dir: Path = Path("outputs"), *, min_lr: float = DEFAULT_MIN_LR,
                       max_lr: float = DEFAULT_MAX_LR, steps: int = DEFAULT_STEPS, step_done: Callable[[int, int], None] = lambda step, steps: None
                       ) -> LrFindResult:
    """Run the range test on the config's model and data; write lr_find.csv, .png and .json to a new folder."""
    if not 0 < min_lr < max_lr:
        raise LrFindError(f"the rates must rise: --min-lr {min_lr:g} and --max-lr {max_lr:g}",
                          hint="give 0 < --min-lr < --max-lr, e.g. --min-lr 1e-7 --max-lr 10")
    if steps < 5:
        raise LrFindError(f"--steps {steps} is too few to see the loss fall", hint="give at least 5 (default 100)")
    loaded.config.sweep = None
    set_key, notes = rate_setting(loaded, min_lr)
    if loaded.config.training.callbacks:
        notes.append("the config's callbacks are not used by the test")
    rows, stop = run_test(loaded, min_lr=min_lr, max_lr=max_lr, steps=steps, step_done=step_done)
    suggestion = steepest([r["lr"] for r in rows], [r["smoothed"] for r in rows])
    if suggestion is None:
        notes.append("the smoothed loss never fell: no rate to suggest (raise --max-lr or --steps)")
    folder = runs.create_run(output_dir, f"{loaded.config.name}-lr-find")
    lines = ["step,lr,loss,smoothed"] + [f"{r['step']},{r['lr']!r},{r['loss']!r},{r['smoothed']!r}" for r in rows]
    runs.atomic_write_text(folder / CSV_FILE, "\n".join(lines) + "\n")
    result = LrFindResult(folder, rows, stop, suggestion, set_key, notes)
    runs.atomic_write_json(folder / JSON_FILE, {
        "min_lr": min_lr, "max_lr": max_lr, "steps": steps, "steps_run": len(rows), "stop": stop,
        "suggested_lr": suggestion, "set": result.set_line, "notes": notes})
    _draw(rows, suggestion, folder / PNG_FILE)
    return result
