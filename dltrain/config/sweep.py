"""The `sweep:` section (DESIGN.md 2.3): a study of many runs of one config. dltrain/sweep/ runs it;
`dltrain train` ignores it. Its keys follow the W&B sweep format."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from dltrain.config.fields import Section
from dltrain.config.hints import did_you_mean, short

# What Optuna can sample of W&B's distributions (no normal or beta distributions).
DISTRIBUTIONS = ("categorical", "int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values")
SWEEP_METHODS = ("tpe", "random", "grid", "cmaes", "gp")


class SweepMetric(Section):
    """What the study optimizes: a metric the compiled model logs, per epoch."""

    name: str
    goal: Literal["minimize", "maximize"] = "minimize"


def _check_number(value: Any) -> Any:
    """An int stays an int (int min/max sample integers), a float a float; anything else is an error."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise PydanticCustomError("number", "expected a number, got {got}", {"got": short(value)})


Number = Annotated[int | float | None, BeforeValidator(_check_number)]


class SweepParameter(Section):
    """One dotted config key's search range: `values: [...]`, or `min`/`max` (with `distribution`, `q`)."""

    values: list[Any] | None = Field(None, min_length=1)
    min: Number = None
    max: Number = None
    distribution: str | None = None
    q: Number = Field(None, gt=0)

    @field_validator("distribution")
    @classmethod
    def _known_distribution(cls, name: str | None) -> str | None:
        if name is not None and name not in DISTRIBUTIONS:
            raise PydanticCustomError("unknown_distribution", "unknown distribution '{name}'", {
                "name": name, "hint": did_you_mean(name, DISTRIBUTIONS)
                or f"Optuna samples these: {', '.join(DISTRIBUTIONS)}"})
        return name

    @model_validator(mode="after")
    def _one_range(self) -> SweepParameter:
        ranged = self.min is not None or self.max is not None
        if (self.values is None) == (not ranged) or (ranged and (self.min is None or self.max is None)):
            raise PydanticCustomError("sweep_range", "give either 'values: [...]' or both 'min' and 'max'",
                                      {"hint": "for example {values: [32, 64]} or {min: 0.0, max: 0.5}"})
        kind = self.kind
        if (kind == "categorical") != (self.values is not None):
            raise PydanticCustomError("sweep_distribution", "distribution '{kind}' takes {takes}",
                                      {"key": "distribution", "kind": kind,
                                       "takes": "'values'" if kind == "categorical" else "'min' and 'max'"})
        if ranged and self.min > self.max:
            raise PydanticCustomError("sweep_min_max", "min ({low}) is above max ({high})",
                                      {"key": "min", "low": self.min, "high": self.max, "hint": "swap them"})
        if kind in ("int_uniform",) and not (type(self.min) is int and type(self.max) is int):
            raise PydanticCustomError("sweep_int", "int_uniform takes integer min and max",
                                      {"key": "min", "hint": "write them without a decimal point"})
        if kind == "log_uniform_values" and self.min <= 0:
            raise PydanticCustomError("sweep_log", "log_uniform_values takes min above 0, got {low}",
                                      {"key": "min", "low": self.min,
                                       "hint": "log_uniform (W&B's) takes exponents: min: -9.2 is 1e-4"})
        if (self.q is not None) != (kind == "q_uniform") and not (kind == "int_uniform" and type(self.q) is int):
            raise PydanticCustomError("sweep_q", "'q' (the step) applies to q_uniform, and as an integer to int_uniform",
                                      {"key": "q" if self.q is not None else "distribution",
                                       "hint": "Optuna has no step on a log scale" if self.q is not None
                                       else "add q: the step between values"})
        return self

    @property
    def kind(self) -> str:
        """The distribution, as written or implied (values: categorical; int min/max: int_uniform; else uniform)."""
        if self.distribution is not None:
            return self.distribution
        if self.values is not None:
            return "categorical"
        if type(self.min) is int and type(self.max) is int:
            return "int_uniform"
        return "q_uniform" if self.q is not None else "uniform"


class EarlyTerminate(Section):
    """Pruning on the per-epoch metric: W&B's `type` and `min_iter`, `max_iter` and `eta` for hyperband."""

    type: Literal["median", "hyperband"]
    # The first epoch at which a trial may be pruned.
    min_iter: int = Field(1, ge=1)
    # hyperband: the most epochs a trial trains (default: training.epochs) and the reduction factor.
    max_iter: int | None = Field(None, ge=1)
    eta: int = Field(3, ge=2)
    # median: Optuna's MedianPruner name and default; no trial is pruned until this many have finished.
    n_startup_trials: int = Field(5, ge=0)


class SweepConfig(Section):
    """A study of many runs of this config (DESIGN.md §2.3); `dltrain sweep` runs it."""

    metric: SweepMetric
    method: str = "tpe"
    # The study's total, not "this many more" on every start. A grid defaults to its number of points.
    trials: int | None = Field(None, ge=1)
    parameters: dict[str, SweepParameter] = Field(min_length=1)
    early_terminate: EarlyTerminate | None = None
    # None: a journal file in the sweep folder; a database URL lets several machines share one study.
    storage: str | None = None

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        if name not in SWEEP_METHODS:
            raise PydanticCustomError("unknown_method", "unknown method '{name}'", {
                "name": name, "hint": did_you_mean(name, SWEEP_METHODS) or f"expected one of: {', '.join(SWEEP_METHODS)}"})
        return name

    @field_validator("parameters")
    @classmethod
    def _grid_points(cls, parameters: dict[str, SweepParameter], info: ValidationInfo) -> dict[str, SweepParameter]:
        if info.data.get("method") == "grid":
            for key, parameter in parameters.items():
                if parameter.values is None:
                    raise PydanticCustomError("grid_range", "method grid needs a list of values; min/max is a "
                                              "continuous range", {"key": key, "hint": "write values: [...], or use "
                                                                   "method: tpe or random for a range"})
        return parameters

    @model_validator(mode="after")
    def _trials(self) -> SweepConfig:
        if self.method == "grid":
            points = math.prod(len(p.values or ()) for p in self.parameters.values())
            if self.trials is not None and self.trials > points:
                raise PydanticCustomError("grid_trials", "trials is {trials} but the grid has {points} points",
                                          {"key": "trials", "trials": self.trials, "points": points,
                                           "hint": "a grid tries each point once: lower trials or remove it"})
        elif self.trials is None:
            raise PydanticCustomError("sweep_trials", "method {method} needs 'trials' (the study's total)",
                                      {"key": "trials", "method": self.method, "hint": "add e.g. 'trials: 20' under sweep"})
        return self
