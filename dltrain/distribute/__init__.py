"""Data-parallel training on tf.distribute: one config on one device, on N GPUs, on N machines.

  cluster    TF_CONFIG read and checked, without TensorFlow
  plan       which strategy a run uses (`distribute:`, TF_CONFIG, the GPUs); starts no server
  strategy   the strategy, and the one place training meets it: scope, datasets, the workers' folders
  keras_fix  the Keras 3 fixes distributed fit needs (keras#20585; steps_per_execution), version-gated
  launch     `dltrain train CONFIG --workers N`: N local worker processes with a TF_CONFIG each

The strategy's names load on first use, so the CLI reaches `launch` without TensorFlow.
"""

from dltrain import lazy_face
from dltrain.distribute.cluster import DistributeError, parse, tf_config
from dltrain.distribute.launch import free_ports, run_workers
from dltrain.distribute.plan import Plan, check_run_folder, plan

__getattr__ = lazy_face(__name__, {"Distribution": "strategy", "start": "strategy", "lost_worker": "strategy"})

__all__ = ["DistributeError", "Distribution", "Plan", "check_run_folder", "free_ports", "lost_worker", "parse",
           "plan", "run_workers", "start", "tf_config"]
