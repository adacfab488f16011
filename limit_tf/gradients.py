"""Gradients with respect to the logits, shared by LIMIT and the gradient-noise baselines.

The paper works with the gradient of the loss w.r.t. a classifier's logits
``a``: cross-entropy's is ``g_ce = s(a) - y`` (Sec. 3.2); LIMIT replaces it by
a prediction, CE + GN / LN add noise to it. This module holds that shared
math: one-hot labels, the global batch size, ``g_ce``, and noise drawn around
a mean gradient with a stateless, per-step seed.
"""

from __future__ import annotations

import math

import tensorflow as tf

NOISE_DISTRIBUTIONS = ("gaussian", "laplace")


def one_hot_labels(y, num_classes: int) -> tf.Tensor:
    """Integer labels (B,) or (B, 1) -> one-hot float32 (B, K); float (B, K) rows pass through."""
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] == num_classes and y.dtype.is_floating:
        return tf.cast(y, tf.float32)
    return tf.one_hot(tf.reshape(tf.cast(y, tf.int32), [-1]), num_classes, dtype=tf.float32)


def global_batch_size(x) -> tf.Tensor:
    """Examples in the global batch: the per-replica batch sizes summed over replicas.

    Exact also when a partial last batch is split unevenly (e.g. 7 examples
    as 4 + 3), where "per-replica batch times replicas" would be off.
    """
    local = tf.cast(tf.shape(x)[0], tf.float32)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local
    return context.all_reduce("SUM", local)


def cross_entropy_gradient(probs: tf.Tensor, labels_one_hot: tf.Tensor) -> tf.Tensor:
    """``g_ce = s(a) - y``: the gradient of cross-entropy w.r.t. the logits (Sec. 3.2)."""
    return probs - labels_one_hot


def sample_around(mean: tf.Tensor, distribution: str, std: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """``mean`` plus noise of standard deviation ``std``, per element.

    Gaussian: ``N(mean, std^2)``. Laplace: ``Lap(mean, std / sqrt(2))``, whose
    standard deviation is ``std``. Used by LIMIT's "+S" (a sample around the
    predicted gradient, Sec. 3.3) and CE + GN / LN (around ``g_ce``).

    Args:
      mean: (B, K).
      distribution: ``gaussian`` or ``laplace``.
      std: the standard deviation (a scalar tensor).
      seed: a stateless seed, shape (2,) (:func:`step_seed`).
    """
    shape = tf.shape(mean)
    if distribution == "laplace":
        # Inverse CDF: u ~ U(-1/2, 1/2), x = -b sign(u) log(1 - 2|u|).
        u = tf.random.stateless_uniform(shape, seed, minval=-0.5, maxval=0.5, dtype=mean.dtype)
        scale = std / math.sqrt(2.0)
        noise = -scale * tf.sign(u) * tf.math.log1p(-2.0 * tf.minimum(tf.abs(u), 0.5 - 1e-7))
    else:
        noise = std * tf.random.stateless_normal(shape, seed, dtype=mean.dtype)
    return mean + noise


def step_seed(seed: int, iterations) -> tf.Tensor:
    """A stateless seed that changes every step and differs across replicas.

    Derived from an optimizer's step counter, so noise is reproducible and a
    resumed run draws what an uninterrupted one would.
    """
    replica = tf.distribute.get_replica_context()
    replica_id = 0 if replica is None else replica.replica_id_in_sync_group
    step = tf.cast(iterations, tf.int32)
    return tf.stack([tf.constant(seed, tf.int32), step * 1024 + tf.cast(replica_id, tf.int32)])
