"""The paper's baseline losses (Sec. 4; ``../shared/DESIGN.md`` section 3).

All take integer labels ``y`` (shape (B,) or (B, 1)) and **logits** ``a``
(B, K). They are ``keras.losses.Loss`` subclasses with Keras' default
``sum_over_batch_size`` reduction, so Keras divides by the batch and, under a
distribution strategy, by the replica count: batch-mean losses that are
correct under ``MirroredStrategy``. Each is finite (value and gradient) when
a predicted probability is exactly 0 or 1.

- CE: ``-log s_y(a)`` (Keras' ``SparseCategoricalCrossentropy(from_logits=True)``).
- :class:`MeanAbsoluteError`: ``sum_c |y_c - s_c(a)|``.
- :class:`MeanSquaredError`: ``sum_c (y_c - s_c(a))^2``.
- :class:`GeneralizedCrossEntropy`: ``(1 - s_y(a)^q) / q`` (Zhang & Sabuncu, 2018).
- :class:`SymmetricCrossEntropy`: ``alpha * CE + beta * RCE`` (Wang et al., 2019).
- :class:`ForwardCorrectedCrossentropy`: ``-sum_c y_c log((s(a) T)_c)`` (Patrini et al., 2017),
  with :func:`estimate_transition_matrix` for ``T``.
- :class:`DMILoss`: ``-log(|det(Y^T P)| + 1e-3)`` over the batch (Xu et al., 2019).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from limit_tf import noise as noise_lib
from limit_tf.gradients import one_hot_labels

_LOG_EPS = 1e-12


class _LogitsLoss(keras.losses.Loss):
    """A loss on integer labels and logits; subclasses define ``per_example(y_one_hot, logits)``."""

    def call(self, y_true, y_pred):
        y_pred = tf.cast(y_pred, tf.float32)
        return self.per_example(one_hot_labels(y_true, y_pred.shape[-1]), y_pred)


@keras.saving.register_keras_serializable(package="limit_tf")
class MeanAbsoluteError(_LogitsLoss):
    """MAE between the one-hot label and the softmax: ``sum_c |y_c - s_c(a)|``."""

    def __init__(self, name="mean_absolute_error_of_softmax", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_example(self, y_one_hot, logits):
        return tf.reduce_sum(tf.abs(y_one_hot - tf.nn.softmax(logits)), axis=-1)


@keras.saving.register_keras_serializable(package="limit_tf")
class MeanSquaredError(_LogitsLoss):
    """Squared error between the one-hot label and the softmax: ``sum_c (y_c - s_c(a))^2``."""

    def __init__(self, name="squared_error_of_softmax", **kwargs):
        super().__init__(name=name, **kwargs)

    def per_example(self, y_one_hot, logits):
        return tf.reduce_sum(tf.square(y_one_hot - tf.nn.softmax(logits)), axis=-1)


@keras.saving.register_keras_serializable(package="limit_tf")
class GeneralizedCrossEntropy(_LogitsLoss):
    """GCE, ``(1 - s_y(a)^q) / q`` with ``q`` in (0, 1].

    Computed as ``exp(q log_softmax)``, so the gradient stays finite where
    ``s_y`` is exactly 0 (``x^q`` has an infinite slope there).
    """

    def __init__(self, q: float = 0.7, name="generalized_cross_entropy", **kwargs):
        if not 0.0 < q <= 1.0:
            raise ValueError(f"GCE q={q!r} is not allowed: it must be in (0, 1].")
        super().__init__(name=name, **kwargs)
        self.q = float(q)

    def per_example(self, y_one_hot, logits):
        log_p_y = tf.reduce_sum(y_one_hot * tf.nn.log_softmax(logits), axis=-1)
        return (1.0 - tf.exp(self.q * log_p_y)) / self.q

    def get_config(self):
        return {**super().get_config(), "q": self.q}


@keras.saving.register_keras_serializable(package="limit_tf")
class SymmetricCrossEntropy(_LogitsLoss):
    """SCE (Wang et al., ICCV 2019): ``alpha * CE + beta * RCE``.

    The reverse cross-entropy ``RCE = -sum_c s_c(a) log y_c`` swaps the roles
    of prediction and label; with the one-hot label's ``log 0`` clipped to
    ``A = -4`` as in the paper, it is ``-A (1 - s_y(a))``: MAE up to a factor,
    robust to noise, while the CE term keeps the fit of hard classes.
    """

    LOG_ZERO = -4.0

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, name="symmetric_cross_entropy", **kwargs):
        for label, value in (("alpha", alpha), ("beta", beta)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"SCE {label}={value!r} is not allowed: it must be a finite number >= 0.")
        super().__init__(name=name, **kwargs)
        self.alpha, self.beta = float(alpha), float(beta)

    def per_example(self, y_one_hot, logits):
        log_p = tf.nn.log_softmax(logits)
        ce = -tf.reduce_sum(y_one_hot * log_p, axis=-1)
        rce = -self.LOG_ZERO * (1.0 - tf.reduce_sum(y_one_hot * tf.exp(log_p), axis=-1))
        return self.alpha * ce + self.beta * rce

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="limit_tf")
class ForwardCorrectedCrossentropy(_LogitsLoss):
    """Forward correction: ``-sum_c y_c log((s(a) @ T)_c)`` with ``T[i, j] = P(noisy=j | clean=i)``.

    The classifier's softmax estimates the *clean* posterior; ``s(a) @ T`` is
    the implied distribution of the noisy label, fitted by cross-entropy.
    """

    def __init__(self, transition_matrix, name="forward_corrected_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.transition_matrix = noise_lib.validate_transition_matrix(transition_matrix)

    def per_example(self, y_one_hot, logits):
        k = self.transition_matrix.shape[0]
        if logits.shape[-1] != k:
            raise ValueError(f"FW transition matrix is {k}x{k} but the model outputs {logits.shape[-1]} logits.")
        noisy_probs = tf.matmul(tf.nn.softmax(logits), tf.constant(self.transition_matrix, tf.float32))
        return -tf.reduce_sum(y_one_hot * tf.math.log(tf.maximum(noisy_probs, _LOG_EPS)), axis=-1)

    def get_config(self):
        return {**super().get_config(), "transition_matrix": self.transition_matrix.tolist()}


@tf.custom_gradient
def abs_det(matrix):
    """``|det(M)|`` = product of singular values, with a gradient that is finite
    for singular ``M`` (a batch with a missing class makes ``Y^T P`` singular).

    Gradient: ``U diag(prod_{j != i} s_j) V^T`` (``sign(det) adj(M)^T``),
    computed from the SVD without dividing by a singular value.
    """
    s, u, v = tf.linalg.svd(matrix)
    value = tf.reduce_prod(s, axis=-1)

    def grad(upstream):
        ones = tf.ones_like(s[..., :1])
        left = tf.math.cumprod(tf.concat([ones, s[..., :-1]], axis=-1), axis=-1)
        right = tf.math.cumprod(tf.concat([ones, s[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
        cofactors = left * right  # prod_{j != i} s_j
        g = tf.matmul(u * cofactors[..., None, :], v, adjoint_b=True)
        return upstream[..., None, None] * g

    return value, grad


@keras.saving.register_keras_serializable(package="limit_tf")
class DMILoss(keras.losses.Loss):
    """Determinant-based mutual information loss, ``-log(|det(Y^T P)| + 1e-3)``.

    ``Y`` is the (B, K) one-hot label matrix and ``P`` the (B, K) softmax of
    the batch. The loss is defined on a whole batch (under a distribution
    strategy: on each replica's part, averaged over replicas).
    """

    def __init__(self, name="determinant_mutual_information", **kwargs):
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        probs = tf.nn.softmax(tf.cast(y_pred, tf.float32))
        y = one_hot_labels(y_true, probs.shape[-1])
        joint = tf.matmul(y, probs, transpose_a=True)
        return -tf.math.log(abs_det(joint) + 1e-3)


def estimate_transition_matrix(probs, percentile: float = 97.0) -> np.ndarray:
    """Patrini et al.'s estimate of ``T`` from a trained model's probabilities.

    For each class ``i``: among the examples, take the one whose ``p(i | x)``
    is the largest at or below the ``percentile``-th percentile of ``p(i | .)``
    (the top values are outliers), and use its ``p(. | x)`` as row ``i``.

    Args:
      probs: (N, K) predicted probabilities of a model trained on the noisy
        labels (e.g. by cross-entropy).
      percentile: the filtering percentile (Patrini et al.: 97).

    Returns:
      A (K, K) row-stochastic matrix.
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or p.shape[0] < 1:
        raise ValueError(f"probs have shape {p.shape}: an (N, K) array with K >= 2 is required.")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile={percentile!r} is not allowed: it must be in (0, 100].")
    k = p.shape[1]
    t = np.empty((k, k))
    for i in range(k):
        column = p[:, i]
        threshold = np.percentile(column, percentile, method="higher")
        candidates = np.where(column <= threshold, column, -np.inf)
        t[i] = p[int(np.argmax(candidates))]
    return t / t.sum(axis=1, keepdims=True)
