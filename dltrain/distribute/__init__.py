"""Data-parallel training on tf.distribute: one config on one device, on N GPUs, on N machines.

  cluster    TF_CONFIG read and checked, without TensorFlow
  plan       which strategy a run uses (`distribute:`, TF_CONFIG, the GPUs); starts no server
  strategy   the strategy, and the one place training meets it: scope, datasets, the workers' folders
  keras_fix  the Keras 3 fixes distributed fit needs (keras#20585; steps_per_execution), version-gated
  launch     `dltrain train CONFIG --workers N`: N local worker processes with a TF_CONFIG each

Nothing is imported here, so the CLI reaches `launch` without TensorFlow.
"""
