"""Soft regularization of gradient information, the paper's eq. (11).

The classifier is trained with real cross-entropy gradients plus a penalty
computed from its last layer. With ``z`` the input of the last (bias-free)
dense layer, ``r = s(q(x))`` an auxiliary network's prediction and ``y`` the
one-hot observed label (``../shared/DESIGN.md`` section 2)::

    loss = CE(a, y) + lambda * mean_i ||z_i||^2 ||y_i - r_i||^2
                    + beta   * mean_i ||z_i||^2 ||s(a_i) - r_i||^2

Nothing is stopped: the classifier and q both follow this loss. The paper
found it much weaker than LIMIT (Table 1, "Soft reg. (11)").
"""

from __future__ import annotations

import keras
import tensorflow as tf

from limit_tf.gradients import global_batch_size, one_hot_labels
from limit_tf.model_base import ClassifierWrapper


def soft_penalty(z, probs, predictor_probs, y_one_hot, lam, beta) -> tf.Tensor:
    """Per-example penalty of eq. (11): ``||z||^2 (lam ||y - r||^2 + beta ||s(a) - r||^2)``."""
    z_sq = tf.reduce_sum(tf.square(tf.reshape(z, [tf.shape(z)[0], -1])), axis=-1)
    label_term = tf.reduce_sum(tf.square(y_one_hot - predictor_probs), axis=-1)
    pred_term = tf.reduce_sum(tf.square(probs - predictor_probs), axis=-1)
    return z_sq * (lam * label_term + beta * pred_term)


@keras.saving.register_keras_serializable(package="limit_tf")
class SoftRegularizationModel(ClassifierWrapper):
    """Cross-entropy plus the soft penalty of eq. (11).

    Args:
      classifier: a functional Keras model whose last layer is a bias-free
        ``Dense`` producing the logits (its input is ``z``).
      predictor_network: the auxiliary network ``r`` (same outputs).
      soft_lambda: ``lambda`` (>= 0).
      beta: ``beta`` (>= 0).
      input_shape: needed only for unbuilt networks.
    """

    _network_keys = ("classifier", "predictor_network")

    def __init__(self, classifier, predictor_network, *, soft_lambda=0.01, beta=0.0, input_shape=None, **kwargs):
        for name, value in (("soft_lambda", soft_lambda), ("beta", beta)):
            if not value >= 0:
                raise ValueError(f"{name}={value!r} is not allowed: it must be a finite number >= 0.")
        last = classifier.layers[-1] if getattr(classifier, "layers", None) else None
        if not isinstance(last, keras.layers.Dense) or last.use_bias:
            raise ValueError(
                "soft regularization needs a classifier whose last layer is a bias-free Dense layer "
                "(build it with last_bias=False)."
            )
        super().__init__(classifier, **kwargs)
        self.predictor_network = predictor_network
        self._lambda = keras.Variable(float(soft_lambda), trainable=False, dtype="float32", name="soft_lambda")
        self._beta = keras.Variable(float(beta), trainable=False, dtype="float32", name="beta")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        # Logits and z in one forward pass (same layers and weights as the classifier).
        self._with_features = keras.Model(classifier.inputs, [last.input, classifier.outputs[0]])
        self._build_networks(input_shape)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker, self.penalty_tracker]

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape(persistent=True) as tape:
            z, logits = self._with_features(x, training=True)
            z, logits = self.float32(z), self.float32(logits)
            predictor_probs = tf.nn.softmax(self.float32(self.predictor_network(x, training=True)))
            y_one_hot = one_hot_labels(y, logits.shape[-1])
            ce = tf.nn.softmax_cross_entropy_with_logits(labels=y_one_hot, logits=logits)
            penalty = soft_penalty(z, tf.nn.softmax(logits), predictor_probs, y_one_hot, self._lambda, self._beta)
            loss = tf.reduce_sum(ce + penalty) / global_batch_size(x)
            for network in self._networks():
                regularization = self.regularization(network)
                if regularization is not None:
                    loss += regularization
        # One loss for both networks; each optimizer scales it its own way (mixed precision).
        clf_grads = self.loss_gradients(tape, loss, self.classifier.trainable_variables, self.optimizer)
        q_grads = self.loss_gradients(tape, loss, self.predictor_network.trainable_variables, self.predictor_optimizer)
        del tape
        self.apply_gradients(clf_grads, q_grads)
        self._track_classifier(logits, y_one_hot)
        self.penalty_tracker.update_state(penalty)
        return self.results()

    def get_config(self):
        return {
            **super().get_config(),
            "soft_lambda": float(self._lambda.numpy()),
            "beta": float(self._beta.numpy()),
        }
