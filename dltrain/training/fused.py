"""TensorFlow's fused batch-norm kernel for the training step of Keras's own BatchNormalization layers.

Keras 3 runs BatchNormalization on TensorFlow as separate moment and normalization ops, whose backward
pass was half the CNN's training step on 2 CPU cores; `FusedBatchNormV3` computes the same thing in one
kernel each way. The layers stay Keras's own (the saved model is plain Keras): only the training
computation of a qualifying instance is switched, by an instance-level `call` that hands everything the
kernel does not compute identically (inference, masks, other ranks, axes and dtypes) back to Keras's.
"""

from __future__ import annotations

from typing import Any, Callable

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
import tensorflow as tf

# cuDNN refuses a smaller epsilon and TensorFlow's own wrapper raises it to this; below it, Keras's layer runs.
MIN_EPSILON = 1.001e-5
_NHWC_AXES = (-1, 3)


def fuse_batch_norm(model: keras.Model) -> list[str]:
    """Train every qualifying BatchNormalization in `model` (nested models too) with the fused kernel;
    return their names."""
    fused = []
    # _flatten_layers also reaches layers inside nested models and backbones, as Keras's own saving does.
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if qualifies(layer) and not getattr(layer, "_dltrain_fused", False):
            layer.call = _fused_call(layer, layer.call)
            layer._dltrain_fused = True
            fused.append(layer.name)
    return fused


def qualifies(layer: keras.layers.Layer) -> bool:
    """Whether the fused kernel computes what this built layer computes in training (the input and the mask
    are checked again on each call)."""
    return (type(layer) is keras.layers.BatchNormalization  # a subclass may compute something else
            and layer.built and layer.input_spec.ndim == 4
            and layer.axis in _NHWC_AXES  # the CPU kernel has no NCHW
            and not layer.renorm and not layer.synchronized
            and layer.compute_dtype == "float32" and layer.variable_dtype == "float32"
            and layer.epsilon >= MIN_EPSILON)


def _fused_call(layer: keras.layers.BatchNormalization, keras_call: Callable[..., Any]) -> Callable[..., Any]:
    def call(inputs: Any, training: Any = None, mask: Any = None) -> Any:
        if (training and layer.trainable and mask is None and inputs.shape.rank == 4
                and inputs.dtype == tf.float32):
            return _train(layer, inputs)
        return keras_call(inputs, training=training, mask=mask)
    return call


def _train(layer: keras.layers.BatchNormalization, inputs: tf.Tensor) -> tf.Tensor:
    """Keras's training branch (normalize with the batch moments, update the moving ones) in one kernel."""
    channels = inputs.shape[-1]
    gamma = keras.ops.cast(layer.gamma, "float32") if layer.scale else tf.ones([channels])
    beta = keras.ops.cast(layer.beta, "float32") if layer.center else tf.zeros([channels])
    none = tf.constant([], tf.float32)
    out = tf.raw_ops.FusedBatchNormV3(x=inputs, scale=gamma, offset=beta, mean=none, variance=none,
                                      epsilon=layer.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
                                      is_training=True)
    # The kernel returns the Bessel-corrected batch variance; Keras's moving variance averages the biased one,
    # which is also what the kernel normalized with.
    count = tf.cast(tf.size(inputs) // channels, tf.float32)
    variance = out.batch_variance * ((count - 1.0) / count)
    moving_mean = keras.ops.cast(layer.moving_mean, "float32")
    moving_variance = keras.ops.cast(layer.moving_variance, "float32")
    layer.moving_mean.assign(moving_mean * layer.momentum + out.batch_mean * (1.0 - layer.momentum))
    layer.moving_variance.assign(moving_variance * layer.momentum + variance * (1.0 - layer.momentum))
    return out.y
