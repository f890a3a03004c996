"""The sweep checks that need Keras: every parameter value builds, and the metric is one the model logs."""

from __future__ import annotations

from dltrain.config import LoadedConfig, did_you_mean, get_path
from dltrain.errors import ConfigError, DltrainError
from dltrain.sweep.space import Space, check_space, located, value_text, variant
from dltrain.sweep.study import check_method


def _schema_only(path: tuple) -> bool:
    """Keys the schema checks in full (no Keras name or argument below them): no build needed."""
    return path[0] in ("name", "seed") or (path[0] == "training" and len(path) > 1 and path[1] != "callbacks")


def check_builds(loaded: LoadedConfig, space: Space) -> None:
    """The method's modules are installed, and the model builds (not trains) with each parameter value in
    turn: Keras names and arguments. After the config's own model built: its mistakes are its own."""
    missing = check_method(loaded.config.sweep)
    if missing:
        raise loaded.error(ConfigError, ("sweep", "method"), f"method '{loaded.config.sweep.method}' needs "
                           f"{' and '.join(missing)}, which is not installed",
                           hint=f"pip install {' '.join(missing)}")
    from dltrain.model import check

    base = loaded.resolved()
    for parameter in space.parameters:
        if _schema_only(parameter.path):
            continue
        present, _ = get_path(base, parameter.path)
        for n, (where, value) in enumerate(parameter.candidates()):
            try:
                check(variant(loaded, f"{parameter.key}={value_text(value)}"))
            except DltrainError as error:
                # A key the config does not have that fails on its first value: the key is what is wrong
                # (`optimizer.Adam.learning_rat`), not the value.
                at = parameter.at if not present and n == 0 else parameter.at + where
                raise located(loaded, at, error, parameter.path) from None


def check_sweep(loaded: LoadedConfig) -> Space:
    """Everything `dltrain check` can say of a sweep section without data: keys, values, method, builds."""
    from dltrain.model import check

    space = check_space(loaded)
    check(loaded)
    check_builds(loaded, space)
    return space


def logged_metrics(loaded: LoadedConfig) -> list[str]:
    """The names fit logs each epoch for this config: loss and metrics, and their val_ twins when the data
    has a validation split. Asked of the compiled model on two training examples."""
    from dltrain import data
    from dltrain.data import targets
    from dltrain.training import prepare

    prepared = prepare(loaded)  # what train does first: data, model, loss checked on two examples
    train = prepared.splits.train
    few = data.examples(train, sorted({0, len(train) - 1}))
    logs = prepared.model.evaluate(data.tensors(few.x), targets(list(prepared.model.output_names), few.y),
                                   return_dict=True, verbose=0)
    names = list(logs)
    return names + [f"val_{n}" for n in names] if prepared.splits.val is not None else names


def check_metric(loaded: LoadedConfig) -> None:
    """The sweep's metric must be one the compiled model logs every epoch."""
    name = loaded.config.sweep.metric.name
    names = logged_metrics(loaded)
    if name not in names:
        raise loaded.error(ConfigError, ("sweep", "metric", "name"), f"the model does not log '{name}'",
                           hint=did_you_mean(name, names) or f"it logs: {', '.join(names)}")
