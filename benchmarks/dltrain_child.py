"""Run the dltrain CLI exactly as `python -m dltrain ...` would, recording what run.py needs.

The benchmark needs numbers dltrain does not write: the wall clock at the end of the first training
step and at the end of training, and the seconds `model.evaluate` takes. Both are taken by wrapping Keras's own `fit` and `evaluate`,
so the peer and dltrain are timed by the same kind of callback and dltrain's code is untouched.

    python benchmarks/dltrain_child.py RESULT.json train configs/fashion_mnist.yaml ...
"""

from __future__ import annotations

import json
import resource
import sys
import time

START = time.time()  # before any import: start-to-first-step counts the imports, as for the peer


def _instrument(record: dict) -> None:
    """Wrap keras.Model.fit, .evaluate and dltrain's scoring to record the first step and the evaluation time."""
    import keras

    class FirstStep(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.cpu = time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            # CPU seconds of all threads: a measure that other programs on the machine barely move.
            record.setdefault("epoch_cpu_seconds", []).append(time.process_time() - self.cpu)

        def on_train_end(self, logs=None):
            record["train_end"] = time.time() - START

        def on_train_batch_end(self, batch, logs=None):
            if "first_batch_end" not in record:
                # With steps_per_execution > 1 this is the end of the first *execution*: run.py takes
                # the extra steps' share off (`batch` is the index of its last step).
                record["first_batch_end"] = time.time() - START
                record["first_batch_index"] = batch

    fit, evaluate = keras.Model.fit, keras.Model.evaluate

    def timed_fit(self, *args, **kwargs):
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), FirstStep()]
        return fit(self, *args, **kwargs)

    def timed_evaluate(self, *args, **kwargs):
        begin = time.perf_counter()
        try:
            return evaluate(self, *args, **kwargs)
        finally:
            record["evaluate_seconds"] = time.perf_counter() - begin

    keras.Model.fit, keras.Model.evaluate = timed_fit, timed_evaluate

    # `dltrain train` scores the test split in one pass (metrics and the outputs its plots need) instead
    # of calling evaluate; wrapped before dltrain.training imports it.
    from dltrain.training import scoring

    score = scoring.score

    def timed_score(*args, **kwargs):
        begin = time.perf_counter()
        try:
            return score(*args, **kwargs)
        finally:
            record["evaluate_seconds"] = time.perf_counter() - begin

    scoring.score = timed_score


def main() -> None:
    """Run `dltrain ARGS...` and write the recorded numbers to RESULT.json, whatever the exit status."""
    result_path, args = sys.argv[1], sys.argv[2:]
    record: dict = {}
    sys.argv = ["dltrain", *args]
    status = 0
    try:
        if args and args[0] in ("train", "evaluate"):
            from dltrain import backend  # noqa: F401  (the same quiet TensorFlow import dltrain does)
            _instrument(record)
        from dltrain.cli.app import main as dltrain_main

        dltrain_main()
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else 1
    finally:
        record["end"] = time.time() - START
        record["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with open(result_path, "w") as handle:
            json.dump(record, handle)
    sys.exit(status)


if __name__ == "__main__":
    main()
