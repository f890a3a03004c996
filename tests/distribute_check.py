"""Run in a fresh process by tests/test_distribute_*.py (the CPU can only be split before TensorFlow runs).

  python tests/distribute_check.py mirrored CONFIG OUTPUT_DIR RESULT.json
      Keras itself fails with steps_per_execution > 1 on 2 replicas; then the config is trained on one
      device, mirrored on CPU:0 and CPU:1 (the CPU split in two), and mirrored again as if Keras were a
      version the fix was not tested with; the run folders and notes go in the result.
  python tests/distribute_check.py keras-multi-worker RESULT_FOLDER [--no-progress]   (one of 2 workers)
      Keras's own fit under MultiWorkerMirroredStrategy: unpatched, with only the first of the two fixes,
      then with both; what each did goes in RESULT_FOLDER/<task>.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


def _keras_fit(strategy, steps_per_execution: int = 1) -> str:
    """Keras's own fit of a small model under `strategy`: 'ok', or the first line of its error."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int64")
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                      steps_per_execution=steps_per_execution)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).with_options(options)
    try:
        model.fit(data, epochs=1, verbose=0, shuffle=False)
    except Exception as error:  # what Keras raises is what the test reads
        text = str(error)
        for mark in ("Attempt to convert a value (PerReplica", "Invalid reduction dimension",
                     "You must feed a value for placeholder tensor"):
            if mark in text:
                return mark
        return f"{type(error).__name__}: {text.strip().splitlines()[0][:200]}"
    return "ok"


def mirrored(config: str, output: str, result: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    unpatched = _keras_fit(tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"]), steps_per_execution=3)

    from dltrain import training
    from dltrain.load import load_config

    from dltrain.distribute import keras_fix

    runs, notes = {}, {}
    mirrored = ["distribute.strategy=mirrored", "distribute.devices=[CPU:0, CPU:1]"]
    for name, overrides in (("single", ["distribute.strategy=none"]), ("mirrored", mirrored),
                            ("untested_keras", mirrored)):
        if name == "untested_keras":  # a Keras version the fix was not tested with: Keras's own code, one step
            keras_fix.undo()
            keras_fix.TESTED = ("0.0.",)
        done = training.train(load_config(Path(config), overrides), Path(output), progress=False)
        runs[name], notes[name] = str(done.run_dir), done.notes
    Path(result).write_text(json.dumps({"unpatched": unpatched, **runs, "notes": notes}))


def keras_multi_worker(folder: str, *launcher_flags: str) -> None:
    import tensorflow as tf

    from dltrain.distribute import keras_fix
    from keras.src.backend.tensorflow import trainer as tf_trainer

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    found = {"unpatched": _keras_fit(strategy)}
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = keras_fix._maybe_symbolic_build
    found["first_fix_only"] = _keras_fit(strategy)
    keras_fix.apply()
    found["both_fixes"] = _keras_fit(strategy)
    found["both_fixes_steps_per_execution_3"] = _keras_fit(strategy, steps_per_execution=3)
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    (Path(folder) / f"{task['type']}{task['index']}.json").write_text(json.dumps(found))


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    {"mirrored": mirrored, "keras-multi-worker": keras_multi_worker}[mode](*arguments)
