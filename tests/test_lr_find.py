"""`dltrain lr-find`: the learning-rate range test on a tiny model; its csv, stop rule, suggestion, plot, and the
--set line it prints, pasted into `dltrain train`."""

from __future__ import annotations

import csv
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import SYNTHETIC, cli
from dltrain.training.lr_find import BETA, smoothed, steepest

# SGD with a schedule: the test replaces the schedule, and a rate of 1e3 makes the loss diverge before the end.
SCHEDULED = SYNTHETIC.replace("  Adam: {learning_rate: 0.01}\n", "  SGD:\n    learning_rate:\n      ExponentialDecay: "
                              "{initial_learning_rate: 0.1, decay_steps: 10, decay_rate: 0.9}\n")


def rows_of(folder: Path) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader((folder / "lr_find.csv").open())]


def shown(output: str, label: str) -> str:
    return re.search(rf"^{label}: (.+)$", output, re.M).group(1)


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One range test of the scheduled SGD config: (config, its folder, the output)."""
    root = tmp_path_factory.mktemp("lr")
    config = root / "sgd.yaml"
    config.write_text(SCHEDULED)
    result = cli("lr-find", config, "--min-lr", 1e-4, "--max-lr", 1e3, "--steps", 80, "--output-dir", root / "out",
                 "--no-progress")
    assert result.exit_code == 0, result.output
    return config, Path(shown(result.stdout, "lr-find folder")), result.output


def test_the_rate_rises_exponentially_and_the_loss_is_smoothed_as_fastai_does(found):
    rows = rows_of(found[1])
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0]["lr"] == pytest.approx(1e-4)
    ratios = [b["lr"] / a["lr"] for a, b in zip(rows, rows[1:])]
    assert ratios == pytest.approx([1e7 ** (1 / 79)] * len(ratios), rel=1e-9)  # (max/min)^(1/(steps-1)) per step
    losses = [r["loss"] for r in rows]
    assert [r["smoothed"] for r in rows] == pytest.approx(smoothed(losses), rel=1e-9)
    ema = 0.0
    for n, loss in enumerate(losses[:3], start=1):  # beta 0.98 with bias correction, written out
        ema = BETA * ema + (1 - BETA) * loss
        assert rows[n - 1]["smoothed"] == pytest.approx(ema / (1 - BETA ** n), rel=1e-9)


def test_it_stops_when_the_smoothed_loss_passes_four_times_its_minimum(found):
    rows = rows_of(found[1])
    assert len(rows) < 80  # stopped before --max-lr
    smooth = [r["smoothed"] for r in rows]
    last = smooth[-1]
    assert not math.isfinite(last) or last > 4 * min(smooth[:-1])
    assert all(s <= 4 * min(smooth[: i + 1]) for i, s in enumerate(smooth[:-1]))  # not earlier
    assert "stopped: the smoothed loss passed 4x its minimum" in found[2] or "stopped: the loss became" in found[2]


def test_the_suggestion_is_the_steepest_descent_within_the_range(found):
    config, folder, output = found
    rows = rows_of(folder)
    suggested = float(shown(output, "suggested learning rate").split()[0])
    exact = steepest([r["lr"] for r in rows], [r["smoothed"] for r in rows])
    assert 1e-4 <= exact <= 1e3 and suggested == pytest.approx(exact, rel=0.05)  # printed to two digits
    lowest = min(rows, key=lambda r: r["smoothed"])
    assert exact <= lowest["lr"]  # on the way down, not past the minimum
    assert "note: the config's learning-rate schedule (ExponentialDecay) is replaced for the test" in output
    png = (folder / "lr_find.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert sorted(p.name for p in folder.iterdir()) == ["lr_find.csv", "lr_find.json", "lr_find.png"]  # no weights


def test_the_set_line_works_in_train(found, tmp_path: Path):
    config, _, output = found
    command = shlex.split(shown(output, "use it"))
    assert command[:3] == ["dltrain", "train", str(config)] and command[3] == "--set"
    key, value = command[4].split("=")
    assert key == "optimizer.SGD.learning_rate" and re.fullmatch(r"\d\.\de-?\d+", value)
    result = cli(*command[1:], "--set", "training.epochs=1", "--output-dir", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    run = Path(shown(result.stdout, "run folder"))
    written = yaml.safe_load((run / "config.yaml").read_text())["optimizer"]
    assert written == {"SGD": {"learning_rate": float(value)}}  # the schedule gave way to the suggested rate


@pytest.mark.parametrize("written, key", [("adam", "optimizer.adam.learning_rate"),
                                          ("{RMSprop: {rho: 0.8}}", "optimizer.RMSprop.learning_rate")])
def test_the_set_key_follows_how_the_config_wrote_its_optimizer(write_config, written: str, key: str):
    from dltrain.load import load_config
    from dltrain.model import build_object
    from dltrain.training.lr_find import LrFindResult, rate_setting

    config = write_config(SYNTHETIC.replace("optimizer:\n  Adam: {learning_rate: 0.01}\n", f"optimizer: {written}\n"))
    found_key, notes = rate_setting(load_config(config), 1e-7)
    line = LrFindResult(Path("."), [], "", 0.0123, found_key).set_line
    assert (found_key, notes, line) == (key, [], f"--set {key}=1.2e-2")
    loaded = load_config(config, [line.removeprefix("--set ")])  # a bare `adam` becomes {adam: {learning_rate: ...}}
    optimizer = build_object("optimizer", loaded.config.optimizer, loaded, ("optimizer",))
    assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(0.012)
    assert getattr(optimizer, "rho", 0.8) == pytest.approx(0.8)  # its other arguments stay


def test_rates_that_do_not_rise_are_refused(write_config):
    result = cli("lr-find", write_config(SYNTHETIC), "--min-lr", 1, "--max-lr", 0.1)
    assert result.exit_code == 1
    assert result.stderr == "error: the rates must rise: --min-lr 1 and --max-lr 0.1 " \
                            "(give 0 < --min-lr < --max-lr, e.g. --min-lr 1e-7 --max-lr 10)\n"
