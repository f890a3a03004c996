"""Keras's own failures that dltrain.distribute.keras_fix works around, shown on unpatched Keras, so that an
upstream fix is noticed (then add its version to keras_fix.TESTED). Real processes: 2 localhost workers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import ROOT
from dltrain.distribute import keras_fix
from dltrain.distribute.launch import run_workers


def test_unpatched_keras_fails_multi_worker_fit_and_the_fix_trains(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    status = run_workers(["keras-multi-worker", str(tmp_path)], 2,
                         program=[sys.executable, str(ROOT / "tests" / "distribute_check.py")])
    assert status == 0
    found = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in (0, 1)]
    assert found[0] == found[1] == {
        # keras#20585: _maybe_symbolic_build reduces a distributed batch eagerly ...
        "unpatched": "Attempt to convert a value (PerReplica",
        # ... and reduce_per_replica reduces scalar metrics along axis 0.
        "first_fix_only": "Invalid reduction dimension",
        "both_fixes": "ok",
        "both_fixes_steps_per_execution_3": "ok",
    }


def test_only_tested_keras_versions_are_patched():
    assert keras_fix.tested("3.15.1") and keras_fix.tested("3.15.0")
    assert not keras_fix.tested("3.16.0") and not keras_fix.tested("3.1.5")
    try:
        keras_fix.require_tested("3.16.0")
    except keras_fix.DistributeError as error:
        assert str(error) == (
            "distribute.strategy: multi-worker training needs dltrain's fix for keras#20585, which was tested "
            "with Keras 3.15.x, not Keras 3.16.0 (install a tested Keras (pip install 'keras>=3.15,<3.16'), or "
            "train on one machine (strategy: mirrored or none); if Keras fixed the issue, add its version to "
            "dltrain.distribute.keras_fix.TESTED once tests/test_distribute_keras.py passes)")
    else:
        raise AssertionError("an untested Keras version was accepted")
