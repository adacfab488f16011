"""CE + GN / CE + LN: cross-entropy with noise added to the gradient w.r.t. the logits.

The paper's baselines "CE + GN" and "CE + LN" (Sec. 4.1): the classifier
back-propagates ``s(a) - y + eps`` from its logits, where ``eps`` is Gaussian
(std ``noise_std``) or Laplace (std ``noise_std``, scale ``noise_std /
sqrt(2)``), fresh per example, per logit and per step. The std is stated per
example: the injected term is divided by the global batch like the mean
cross-entropy gradient it is added to. They show that LIMIT does more than
add noise to the gradient.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from limit_tf.gradients import (
    NOISE_DISTRIBUTIONS,
    cross_entropy_gradient,
    global_batch_size,
    one_hot_labels,
    sample_around,
    step_seed,
)
from limit_tf.model_base import ClassifierWrapper


@keras.saving.register_keras_serializable(package="limit_tf")
class GradientNoiseModel(ClassifierWrapper):
    """Cross-entropy training with noisy gradients w.r.t. the logits.

    Args:
      classifier: a Keras model returning logits.
      distribution: ``"gaussian"`` (CE + GN) or ``"laplace"`` (CE + LN).
      noise_std: the per-example standard deviation of the added noise (> 0).
      seed: seed of the noise.
      input_shape: needed only for unbuilt (subclassed) classifiers.
    """

    def __init__(self, classifier, *, distribution="gaussian", noise_std=0.1, seed=0, input_shape=None, **kwargs):
        if distribution not in NOISE_DISTRIBUTIONS:
            raise ValueError(
                f"distribution={distribution!r} is not allowed; allowed: {', '.join(NOISE_DISTRIBUTIONS)}."
            )
        if not noise_std > 0:
            raise ValueError(f"noise_std={noise_std!r} is not allowed: it must be > 0.")
        super().__init__(classifier, **kwargs)
        self.distribution = distribution
        self.seed = int(seed)
        self._noise_std = keras.Variable(float(noise_std), trainable=False, dtype="float32", name="noise_std")
        self._build_networks(input_shape)

    @property
    def noise_std(self) -> float:
        return float(self._noise_std.numpy())

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            logits = self.classifier(x, training=True)
            regularization = self.regularization(self.classifier)
        y_one_hot = one_hot_labels(y, logits.shape[-1])
        g_ce = cross_entropy_gradient(tf.nn.softmax(self.float32(logits)), y_one_hot)
        g = sample_around(g_ce, self.distribution, self._noise_std, step_seed(self.seed, self.optimizer.iterations))
        grads = self.backprop(
            tape, self.classifier, logits, tf.stop_gradient(g) / global_batch_size(x), self.optimizer, regularization
        )
        self.apply_gradients(grads)
        self._track_classifier(logits, y_one_hot)
        return self.results()

    def get_config(self):
        return {
            **super().get_config(),
            "distribution": self.distribution,
            "noise_std": self.noise_std,
            "seed": self.seed,
        }
