"""Choosing a ``tf.distribute`` strategy by name.

- ``default``: one device.
- ``mirrored``: ``MirroredStrategy`` over all local GPUs (or the devices
  named); training goes through Keras' ``fit``.
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the cluster in
  ``TF_CONFIG`` (every local GPU of every worker); training goes through
  :class:`limit_tf.loop.DistributedTrainer`, since Keras' ``fit`` fails under
  it (keras-team/keras#20585). It must be created before any other
  TensorFlow operation runs in the process: call
  ``get_strategy("multi_worker")`` first thing (the runner does).

``batch_size`` is always the global batch, split across all replicas.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import tensorflow as tf

from limit_tf.config import STRATEGY_NAMES, ConfigError, check_tf_config

STRATEGIES = STRATEGY_NAMES


def get_strategy(name: str = "default", devices: Sequence[str] = ()) -> tf.distribute.Strategy:
    """Returns the strategy to build and train models under.

    Strategies are created once per process and reused: MirroredStrategy
    objects created one after another in one process (a sweep, a test
    session) collide on collective keys and abort.

    Args:
      name: ``default``, ``mirrored`` or ``multi_worker`` (see the module doc).
      devices: device names for ``mirrored``, e.g. ``("/gpu:0", "/gpu:1")``.

    Raises:
      ConfigError: an unknown name, a missing or malformed ``TF_CONFIG`` for
        ``multi_worker``, or TensorFlow already initialized.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored(tuple(devices))
    if name == "multi_worker":
        check_tf_config()
        return _multi_worker()
    raise ConfigError(f"--strategy={name!r} is not allowed; allowed: {', '.join(STRATEGIES)}.")


@functools.cache
def _mirrored(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    return tf.distribute.MirroredStrategy(list(devices) or None)


@functools.cache
def _multi_worker() -> tf.distribute.MultiWorkerMirroredStrategy:
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:
        if "program startup" not in str(e):
            raise
        raise ConfigError(
            "--strategy=multi_worker: TensorFlow already ran operations in this process; create the strategy "
            "first (limit_tf.distribute.get_strategy('multi_worker') before anything else)."
        ) from None
