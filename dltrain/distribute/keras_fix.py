"""Two fixes to Keras 3's TensorFlow trainer that distributed `fit` needs, for the Keras versions they were tested with.

keras#20585 (open): `fit` fails under MultiWorkerMirroredStrategy. Two functions of
keras/src/backend/tensorflow/trainer.py are why:
  `_maybe_symbolic_build` reduces a distributed batch eagerly ("Attempt to convert a value (PerReplica...)
  with an unsupported type"): the first local replica's batch is what the symbolic build needs;
  `reduce_per_replica` reduces scalar metrics across workers along axis 0 ("Invalid reduction dimension 0"):
  scalars are reduced with `axis=None`.
steps_per_execution > 1 with several replicas (any strategy): `_make_function` runs each step inside a
`tf.cond` of its while loop, and a step traced there fails ("You must feed a value for placeholder tensor
...while/cond/Placeholder"). The replacement runs the same steps, in the same order, in the loop's body.

Only Keras versions listed in TESTED are patched; dltrain refuses multi-worker training on others (and
trains several replicas with steps_per_execution 1 there), so an upstream change is never patched blindly.
tests/test_distribute_keras.py shows the unpatched failures, so an upstream fix is noticed.
"""

from __future__ import annotations

from typing import Any

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer as tf_trainer

from dltrain.distribute.cluster import DistributeError

ISSUE = "keras#20585"
# Keras versions (prefixes) these fixes were tested with: fit, evaluate, predict and save on 2 logical CPU
# devices (mirrored) and on 2 localhost workers, with and without a chief task.
TESTED = ("3.15.",)

_ORIGINAL = {
    "_maybe_symbolic_build": tf_trainer.TensorFlowTrainer._maybe_symbolic_build,
    "_make_function": tf_trainer.TensorFlowTrainer._make_function,
    "reduce_per_replica": tf_trainer.reduce_per_replica,
}


def tested(version: str = keras.__version__) -> bool:
    """Whether this Keras version is one the fixes were tested with."""
    return version.startswith(TESTED)


def require_tested(version: str = keras.__version__) -> None:
    """A DistributeError unless the fixes were tested with this Keras version (multi-worker needs them)."""
    if not tested(version):
        raise DistributeError(
            f"multi-worker training needs dltrain's fix for {ISSUE}, which was tested with Keras "
            f"{', '.join(v + 'x' for v in TESTED)}, not Keras {version}",
            key="distribute.strategy",
            hint="install a tested Keras (pip install 'keras>=3.15,<3.16'), or train on one machine "
                 "(strategy: mirrored or none); if Keras fixed the issue, add its version to "
                 "dltrain.distribute.keras_fix.TESTED once tests/test_distribute_keras.py passes")


def applied() -> bool:
    """Whether the fixes are in place in this process."""
    return tf_trainer.TensorFlowTrainer._make_function is _make_function


def apply() -> None:
    """Put the fixes in place (idempotent); only for a tested Keras version."""
    if not tested():
        raise DistributeError(f"dltrain's Keras fixes were not tested with Keras {keras.__version__}")
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.TensorFlowTrainer._make_function = _make_function
    tf_trainer.reduce_per_replica = reduce_per_replica


def undo() -> None:
    """Keras as it came (for the test that shows the unpatched failures)."""
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _ORIGINAL["_maybe_symbolic_build"]
    tf_trainer.TensorFlowTrainer._make_function = _ORIGINAL["_make_function"]
    tf_trainer.reduce_per_replica = _ORIGINAL["reduce_per_replica"]


def _first_local(value: Any, strategy: Any) -> Any:
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
    """Keras's own, except that a distributed batch gives its first local replica's part to the build."""
    if self._distribute_strategy is None:
        return
    strategy = self.distribute_strategy
    if iterator is not None:
        for _, _, it in iterator:
            data_batch = tree.map_structure(lambda v: _first_local(v, strategy), next(it))
            break
    with strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
    """Keras's own, except that scalars are reduced across workers with axis=None (axis 0 does not exist)."""
    if tf_trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):
        return tree.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None if v.shape.rank == 0 else 0), values)
    return _ORIGINAL["reduce_per_replica"](values, strategy, reduction)


def _make_function(self: Any, step_function: Any) -> Any:
    """Keras's own train/test function; with several replicas and steps_per_execution > 1, a loop whose
    steps run in its body rather than inside a `tf.cond`."""
    strategy = self.distribute_strategy
    if self.steps_per_execution == 1 or strategy.num_replicas_in_sync == 1:
        return _ORIGINAL["_make_function"](self, step_function)

    @tf.autograph.experimental.do_not_convert
    def one_step_on_data(data: Any) -> Any:
        outputs = strategy.run(step_function, args=(data,))
        return reduce_per_replica(outputs, strategy, reduction="auto")

    if not self.run_eagerly:
        one_step_on_data = tf.function(one_step_on_data, reduce_retracing=True, jit_compile=self.jit_compile)
    one_step_on_data = self._autoconvert_optionals(one_step_on_data)
    steps = self.steps_per_execution

    @tf.autograph.experimental.do_not_convert
    def multi_step_on_iterator(iterator: Any) -> Any:
        # A group of steps always starts with a batch: Keras calls this once per group of a known epoch
        # length, and turns the OutOfRangeError of an exhausted iterator into the epoch's end.
        outputs = one_step_on_data(iterator.get_next())

        def more(step: Any, outputs: Any, next_inputs: Any) -> Any:
            return tf.logical_and(step < steps, next_inputs.has_value())

        def body(step: Any, outputs: Any, next_inputs: Any) -> Any:
            outputs = one_step_on_data(next_inputs.get_value())
            # Never take a batch beyond the group: the next group starts with it.
            next_inputs = tf.cond(step + 1 < steps, iterator.get_next_as_optional, lambda: next_inputs)
            return step + 1, outputs, next_inputs

        _, outputs, _ = tf.while_loop(more, body, [tf.constant(1), outputs, iterator.get_next_as_optional()])
        return outputs

    if not self.run_eagerly:
        multi_step_on_iterator = tf.function(multi_step_on_iterator, reduce_retracing=True)

    def function(iterator: Any) -> Any:
        if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
            return multi_step_on_iterator(iterator)
        for _, data in zip(range(steps), iterator):
            outputs = one_step_on_data(data)
        return outputs

    return function
