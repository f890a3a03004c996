"""The benchmark harness itself (benchmarks/run.py) on a tiny slice of the real Fashion-MNIST files."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [pytest.mark.realdata, pytest.mark.benchmark]

if not (DEBIAN / "train-images-idx3-ubyte.gz").is_file():
    pytest.skip("apt-get install -y dataset-fashion-mnist to run these", allow_module_level=True)


def load_harness():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_harness_prints_a_sane_markdown_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bench = load_harness()
    status = bench.main(["--workloads", "mlp", "--reps", "1", "--epochs", "1", "--train-size", "2000",
                         "--test-size", "500", "--work-dir", str(tmp_path)])
    assert status == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("|")]
    head = cells(lines[0])
    assert head == ["workload", "tool", "runs", "s/epoch min", "s/epoch median", "examples/s", "× peer",
                    "CPU s/epoch", "× peer (CPU)", "test acc (mean)", "Δ acc (points)", "peak RSS MB",
                    "start→first step s", "evaluate examples/s", "whole process s", "× peer (whole)",
                    "after last epoch s"]
    rows = {cells(line)[1]: dict(zip(head, cells(line))) for line in lines[2:4]}
    assert set(rows) == {"peer", "dltrain"}
    for row in rows.values():
        assert row["workload"] == "mlp (1 ep, batch 32, 2000 train)" and row["runs"] == "1"
        assert 0 < float(row["s/epoch min"]) <= float(row["s/epoch median"]) < 120
        # 1,800 training images (10% validation): examples/s is that over the median epoch.
        assert float(row["examples/s"].replace(",", "")) == pytest.approx(
            1800 / float(row["s/epoch median"]), rel=0.02)
        assert 0.3 < float(row["test acc (mean)"]) <= 1.0  # 10 classes: chance is 0.1
        assert 0 < float(row["CPU s/epoch"]) < 240  # 2 cores: at most twice the wall time, and then some
        assert 100 < float(row["peak RSS MB"].replace(",", "")) < 20000
        assert 1 < float(row["start→first step s"]) < 120
        # The whole process holds the imports, the data, every epoch and the end; the end is part of it.
        whole = float(row["whole process s"])
        assert float(row["start→first step s"]) + float(row["s/epoch min"]) < whole < 600
        assert 0 < float(row["after last epoch s"]) < whole
    ratio = float(rows["dltrain"]["examples/s"].replace(",", "")) / float(rows["peer"]["examples/s"].replace(",", ""))
    assert float(rows["dltrain"]["× peer"]) == pytest.approx(ratio, abs=0.02)
    assert rows["peer"]["× peer"] == "1.00" and rows["peer"]["× peer (whole)"] == "1.00"
    whole = float(rows["peer"]["whole process s"]) / float(rows["dltrain"]["whole process s"])
    assert float(rows["dltrain"]["× peer (whole)"]) == pytest.approx(whole, abs=0.02)
    help_line = next(line for line in lines if "`dltrain --help`" in line)
    fastest, median = (float(v) for v in re.findall(r"\d+\.\d+", cells(help_line)[1]))
    assert 0 < fastest <= median < 10
    assert any(line.startswith("| mlp: `dltrain evaluate` wall s") for line in lines)
    assert re.search(r"\| mlp: progress bar CPU per second of training \(isolated\) \| \d+\.\d\d% \|", out)
    assert re.search(r"\| mlp: whole process ≥ 2.5× faster than peer \| \d+\.\d\d× \(\d+\.\d s vs \d+\.\d s\) "
                     r"\| (yes|\*\*no\*\*) \|", out)
    assert re.search(r"\| mlp: after the last epoch \(test, save, report\) < 2 s \| \d+\.\d\d s \| (yes|\*\*no\*\*) \|", out)
    assert re.search(r"\| mlp: examples/s ≥ 3.0× peer, accuracy ≥ peer − 0.5 points \| \d+\.\d\d×, [+-]\d+\.\d\d points "
                     r"\| (yes|\*\*no\*\*) \|", out)
    # Every run left its own run folder: nothing was reused between runs.
    assert len(list((tmp_path / "outputs-mlp-0").iterdir())) == 1


def test_compute_limit_counts_the_mlp_work_and_measures_a_matmul():
    spec = importlib.util.spec_from_file_location("bench_limit", ROOT / "benchmarks" / "compute_limit.py")
    limit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(limit)
    # Forward 2·(784·128 + 128·10), the weight gradients as much, the second layer's input gradient 2·128·10.
    assert limit.training_flops([(784, 128), (128, 10)]) == 2 * 203_264 + 2_560
    assert 0.1 < limit.matmul_gflops(64, 64, 64, seconds=0.2) < 10_000
