"""Choosing a ``tf.distribute`` strategy by name."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

STRATEGIES = ("default", "mirrored")


def get_strategy(name: str = "default", devices: Sequence[str] = ()) -> tf.distribute.Strategy:
    """Returns the strategy to build and train models under.

    Args:
      name: ``default`` (one device) or ``mirrored`` (all local GPUs, or the
        ``devices`` named, one replica each; ``batch_size`` stays the global
        batch and is split across replicas).
      devices: device names for ``mirrored``, e.g. ``("/gpu:0", "/gpu:1")``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(list(devices) or None)
    raise ValueError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}.")
