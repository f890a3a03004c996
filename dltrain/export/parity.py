"""An export against the Keras model it came from: output differences, top-1 agreement, accuracy on the
samples, and batch-1 latency of both, with the thresholds each precision must meet."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dltrain.errors import DltrainError
from dltrain.export.samples import Samples
from dltrain.predict import model_feed, output_list

# Float exports compute what the model computes: only float rounding may differ. 1e-4 is absolute for
# probabilities; outputs larger than 1 (regression in dollars) get the same bound relative to their size.
FLOAT_MAX_DIFF = 1e-4
# Top-1 agreement each precision must keep with the Keras model (classifiers).
AGREEMENT = {"float": 1.0, "dynamic": 0.99, "int8": 0.95}
# Non-classifiers have no top-1: a quantized one is held to its mean difference, relative to the spread (std)
# of the Keras model's outputs; the two numbers mirror the 1% and 5% of disagreement allowed above.
RELATIVE_MEAN_DIFF = {"dynamic": 0.01, "int8": 0.05}
# Batch-1 latency: calls timed after the warm-up, stopped early once the time budget is spent.
LATENCY_WARMUP = 3
LATENCY_RUNS = 50
LATENCY_BUDGET_S = 1.0
BATCH = 64


@dataclass
class Figures:
    """What the check measured, the limits it applied, and which of them the export missed."""

    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float | None
    accuracy: dict[str, float] | None
    latency_ms: dict[str, dict[str, float]]
    thresholds: dict[str, float]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether the export met every threshold."""
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        """The figures as the JSON report holds them."""
        return {"samples": self.samples, "max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff,
                "top1_agreement": self.agreement, "accuracy": self.accuracy, "latency_ms": self.latency_ms,
                "thresholds": self.thresholds, "passed": self.passed,
                "failures": self.failures}


def latency(call: Callable[[], Any], *, runs: int = LATENCY_RUNS, budget_s: float = LATENCY_BUDGET_S) -> dict[str, float]:
    """p50 and p95 of `call()` in milliseconds, and how many calls were timed."""
    for _ in range(LATENCY_WARMUP):
        call()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < runs and (len(times) < 10 or time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "runs": len(times)}


def run_batches(runtime: Callable[[list[np.ndarray]], list[np.ndarray]], samples: Samples) -> list[np.ndarray]:
    """The runtime's outputs for every sample, computed in batches."""
    parts = [runtime(samples.rows(i, i + BATCH)) for i in range(0, len(samples), BATCH)]
    return [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]


def top1(outputs: list[np.ndarray], num_classes: int | None) -> np.ndarray | None:
    """Each sample's predicted class, from the first output that holds class probabilities (or logits)."""
    from dltrain.predict import class_probabilities

    probabilities, _ = class_probabilities(outputs, num_classes)
    return None if probabilities is None else probabilities.argmax(axis=1)


def _difference(reference: list[np.ndarray], exported: list[np.ndarray]) -> tuple[float, float]:
    if len(reference) != len(exported):
        raise DltrainError(f"the export has {len(exported)} outputs, the Keras model {len(reference)}")
    diffs = []
    for want, got in zip(reference, exported):
        if want.shape != got.shape:
            raise DltrainError(f"the export's output has shape {got.shape}, the Keras model's {want.shape}")
        diffs.append(np.abs(want.astype(np.float64) - got.astype(np.float64)).ravel())
    every = np.concatenate(diffs)
    return float(every.max()), float(every.mean())


def compare(reference: list[np.ndarray], exported: list[np.ndarray], labels: np.ndarray, num_classes: int | None,
            precision: str) -> tuple[dict[str, Any], dict[str, float], list[str]]:
    """Differences, agreement and accuracy of two sets of outputs; the thresholds of `precision`, and misses."""
    max_diff, mean_diff = _difference(reference, exported)
    figures: dict[str, Any] = {"max_abs_diff": max_diff, "mean_abs_diff": mean_diff, "agreement": None,
                               "accuracy": None}
    thresholds: dict[str, float] = {}
    failures: list[str] = []
    if precision == "float":
        scale = max(1.0, max(float(np.abs(out).max()) for out in reference))
        thresholds["max_abs_diff"] = FLOAT_MAX_DIFF * scale
        if not max_diff <= thresholds["max_abs_diff"]:
            failures.append(f"max |diff| {max_diff:.3g} > {thresholds['max_abs_diff']:.3g}")
    want, got = top1(reference, num_classes), top1(exported, num_classes)
    if want is not None and got is not None:
        agreement = float(np.mean(want == got))
        figures["agreement"] = agreement
        figures["accuracy"] = {"keras": float(np.mean(want == labels)), "export": float(np.mean(got == labels))}
        thresholds["top1_agreement"] = AGREEMENT[precision]
        if not agreement >= AGREEMENT[precision]:
            failures.append(f"top-1 agreement {agreement:.4f} < {AGREEMENT[precision]:.2f}")
    elif precision != "float":
        spread = float(np.concatenate([out.astype(np.float64).ravel() for out in reference]).std()) or 1.0
        thresholds["mean_abs_diff"] = RELATIVE_MEAN_DIFF[precision] * spread
        if not mean_diff <= thresholds["mean_abs_diff"]:
            failures.append(f"mean |diff| {mean_diff:.3g} > {thresholds['mean_abs_diff']:.3g}")
    return figures, thresholds, failures


def check(model: Any, runtime: Callable[[list[np.ndarray]], list[np.ndarray]], samples: Samples,
          num_classes: int | None, precision: str) -> Figures:
    """Run the samples through the Keras model (`predict`, inference mode) and the export; measure both."""
    reference = output_list(model, model.predict(model_feed(model, samples.arrays), batch_size=BATCH, verbose=0))
    exported = run_batches(runtime, samples)
    figures, thresholds, failures = compare(reference, exported, samples.y, num_classes, precision)
    one = samples.rows(0, 1)
    feed = model_feed(model, one)
    timed = {"keras": latency(lambda: model.predict_on_batch(feed)), "export": latency(lambda: runtime(one))}
    return Figures(len(samples), figures["max_abs_diff"], figures["mean_abs_diff"], figures["agreement"],
                   figures["accuracy"], timed, thresholds, failures)
