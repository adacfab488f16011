"""A Keras model that wraps a classifier and trains it with its own ``train_step``.

Shared by LIMIT, the gradient-noise baselines and soft regularization:
``call``/``predict``/``evaluate`` use the classifier only; ``test_step``
reports cross-entropy and accuracy against the labels it is given; labels may
be integer class ids or one-hot / soft rows.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def one_hot_labels(y, num_classes: int) -> tf.Tensor:
    """Integer labels (B,) or (B, 1) -> one-hot (B, K); float (B, K) rows pass through."""
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


def known_input_shape(model: keras.Model):
    """The input shape of a built functional/sequential model, else None."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if inputs and len(inputs) == 1:
        return tuple(inputs[0].shape)
    return None


class ClassifierWrapper(keras.Model):
    """Base class: a classifier plus trackers for ``loss`` and ``accuracy``.

    Subclasses build their extra networks, then call :meth:`_build_networks`,
    and implement ``train_step``. ``_network_keys`` names the constructor's
    positional network arguments, in order, for ``from_config``.
    """

    _network_keys = ("classifier",)

    def __init__(self, classifier: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self._input_shape = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    def _networks(self) -> list[keras.Model]:
        return [self.classifier]

    def _build_networks(self, input_shape=None) -> None:
        """Builds the networks now (from ``input_shape`` or the classifier's inputs)."""
        shape = (None, *tuple(input_shape)) if input_shape is not None else known_input_shape(self.classifier)
        if shape is not None:
            self.build(shape)

    def build(self, input_shape):
        self._input_shape = tuple(input_shape)
        for net in self._networks():
            if not net.built or not net.weights:
                # A real call creates a subclassed model's variables; build() may not.
                net(tf.zeros((1, *tuple(input_shape)[1:])), training=False)
        self.built = True

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f"{type(self).__name__}.{what}: the networks are not built yet; pass input_shape= "
                "(or call the networks on a batch) first."
            )

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def _track_classifier(self, logits, y_one_hot) -> None:
        labels = tf.argmax(y_one_hot, axis=-1)
        self.loss_tracker.update_state(tf.nn.softmax_cross_entropy_with_logits(labels=y_one_hot, logits=logits))
        self.accuracy_tracker.update_state(tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32))

    def test_step(self, data):
        """Cross-entropy and accuracy of the classifier against the labels given."""
        x, y = data[0], data[1]
        logits = self.classifier(x, training=False)
        self._track_classifier(logits, one_hot_labels(y, logits.shape[-1]))
        return {m.name: m.result() for m in (self.loss_tracker, self.accuracy_tracker)}

    def predict_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        return self.classifier(x, training=False)

    def get_config(self):
        config = super().get_config()
        config["classifier"] = keras.saving.serialize_keras_object(self.classifier)
        config["input_shape"] = None if self._input_shape is None else list(self._input_shape[1:])
        return config

    def get_compile_config(self):
        if self.optimizer is None:
            return None
        return {"optimizer": keras.saving.serialize_keras_object(self.optimizer)}

    def compile_from_config(self, config):
        self.compile(keras.saving.deserialize_keras_object(config["optimizer"]))

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        networks = [
            keras.saving.deserialize_keras_object(config.pop(k), custom_objects=custom_objects)
            for k in cls._network_keys
        ]
        return cls(*networks, **config)
