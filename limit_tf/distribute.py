"""Choosing a ``tf.distribute`` strategy by name."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import tensorflow as tf

STRATEGIES = ("default", "mirrored")


def get_strategy(name: str = "default", devices: Sequence[str] = ()) -> tf.distribute.Strategy:
    """Returns the strategy to build and train models under.

    Strategies are created once per process and reused: MirroredStrategy
    objects created one after another in one process (a sweep, a test
    session) collide on collective keys and abort.

    Args:
      name: ``default`` (one device) or ``mirrored`` (all local GPUs, or the
        ``devices`` named, one replica each; ``batch_size`` stays the global
        batch and is split across replicas).
      devices: device names for ``mirrored``, e.g. ``("/gpu:0", "/gpu:1")``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored(tuple(devices))
    raise ValueError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}.")


@functools.cache
def _mirrored(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    return tf.distribute.MirroredStrategy(list(devices) or None)
