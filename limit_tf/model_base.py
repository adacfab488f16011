"""The base of the models that train a classifier with their own ``train_step``.

LIMIT, the gradient-noise baselines and soft regularization share it. It
owns the plumbing they have in common:

- ``call`` / ``predict`` / ``evaluate`` use the classifier only; ``test_step``
  reports cross-entropy and accuracy against the labels it is given
  (integer class ids or one-hot / soft rows);
- ``compile`` builds every optimizer up front (lazy building fails under
  ``MirroredStrategy``): the classifier's, and for models with a q-network a
  second one (a copy with the same settings, or ``"shared"``);
- mixed precision: under ``mixed_float16`` both optimizers are
  ``LossScaleOptimizer``s, and every gradient, injected ones included, goes
  through :meth:`ClassifierWrapper.backprop` or :meth:`ClassifierWrapper.loss_gradients`,
  which scale it (``mixed_bfloat16`` needs no scaling); logits are cast to
  float32 before any softmax;
- the networks' own regularization losses (weight regularizers, ``add_loss``)
  join every update, divided by the number of replicas because the
  optimizer sums the replicas' gradients;
- serialization (``.keras`` files open with ``keras.models.load_model``
  after ``import limit_tf``).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from limit_tf.gradients import one_hot_labels


def known_input_shape(model: keras.Model):
    """The input shape of a built functional/sequential model, else None."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if inputs and len(inputs) == 1:
        return tuple(inputs[0].shape)
    return None


def _copy_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    return optimizer.__class__.from_config(optimizer.get_config())


class ClassifierWrapper(keras.Model):
    """Base class: a classifier (and optionally a q-network) with a custom ``train_step``.

    Subclasses set ``_network_keys`` (the constructor's positional network
    arguments, in order, for ``from_config``), build their extra networks,
    call :meth:`_build_networks`, and implement ``train_step`` with
    :meth:`backprop` / :meth:`loss_gradients` and :meth:`apply_gradients`.
    """

    _network_keys = ("classifier",)

    def __init__(self, classifier: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.predictor_network = None
        self.predictor_optimizer = None
        self._shared_optimizer = False
        self._input_shape = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    # ------------------------------------------------------------------
    # Building.

    def _networks(self) -> list[keras.Model]:
        return [n for n in (self.classifier, self.predictor_network) if n is not None]

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
        self._check_output_shapes(input_shape)
        self.built = True

    def _check_output_shapes(self, input_shape):
        if self.predictor_network is None:
            return
        spec = keras.KerasTensor(tuple(input_shape))
        shapes = [tuple(net.compute_output_spec(spec).shape[1:]) for net in self._networks()]
        if shapes[0] != shapes[1] or len(shapes[0]) != 1:
            raise ValueError(
                f"classifier outputs {shapes[0]} and predictor_network outputs {shapes[1]} per example: "
                "both must output the same number of logits (K,)."
            )

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f"{type(self).__name__}.{what}: the networks are not built yet; pass input_shape= "
                "(or call the networks on a batch) first."
            )

    # ------------------------------------------------------------------
    # Optimizers.

    def compile(self, optimizer="adam", predictor_optimizer=None, **kwargs):
        """Configures training and builds the optimizers.

        Args:
          optimizer: the classifier's optimizer (anything
            ``keras.optimizers.get`` accepts). It is also ``model.optimizer``,
            which LR schedulers and TensorBoard read.
          predictor_optimizer: for models with a q-network, q's optimizer.
            ``None``: a separate copy of ``optimizer`` with the same settings
            (equivalent to one Adam over both networks, since Adam is
            per-parameter); ``"shared"`` or the same object as ``optimizer``:
            one optimizer over both networks.
          **kwargs: passed to ``keras.Model.compile`` (``jit_compile``,
            ``steps_per_execution``, ``run_eagerly``, ...). ``loss`` and
            ``metrics`` are not accepted: the model defines its own.
        """
        for key in ("loss", "metrics", "weighted_metrics", "loss_weights"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"{type(self).__name__}.compile does not take {key}=: the model defines its own losses and metrics."
                )
        self._require_built("compile")
        optimizer = keras.optimizers.get(optimizer)
        self._shared_optimizer = predictor_optimizer == "shared" or predictor_optimizer is optimizer
        if not self._shared_optimizer and self.predictor_network is not None:
            predictor_optimizer = (
                _copy_optimizer(optimizer) if predictor_optimizer is None else keras.optimizers.get(predictor_optimizer)
            )
        super().compile(optimizer=optimizer, **kwargs)  # wraps it in a LossScaleOptimizer under mixed_float16
        clf_vars = self.classifier.trainable_variables
        if self.predictor_network is None:
            self.optimizer.build(clf_vars)
            return
        q_vars = self.predictor_network.trainable_variables
        if self._shared_optimizer:
            self.predictor_optimizer = self.optimizer
            self.optimizer.build(clf_vars + q_vars)
            return
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) and not isinstance(
            predictor_optimizer, keras.optimizers.LossScaleOptimizer
        ):
            predictor_optimizer = keras.optimizers.LossScaleOptimizer(predictor_optimizer)
        self.predictor_optimizer = predictor_optimizer
        self.optimizer.build(clf_vars)
        self.predictor_optimizer.build(q_vars)

    # ------------------------------------------------------------------
    # Gradients: every update goes through these, for loss scaling and regularizers.

    def regularization(self, network: keras.Model) -> tf.Tensor | None:
        """The network's own losses (weight regularizers, ``add_loss``), per replica; call inside its tape."""
        if not network.losses:
            return None
        total = tf.add_n([tf.cast(loss, tf.float32) for loss in network.losses])
        return total / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)

    def backprop(self, tape, network, outputs, output_gradients, optimizer, regularization=None) -> list:
        """Back-propagates ``output_gradients`` (d loss / d ``outputs``, already divided by the
        global batch) from ``outputs`` into the network's weights, plus its regularization,
        scaled as ``optimizer`` expects (loss scaling)."""
        targets = [outputs]
        upstream = [tf.cast(optimizer.scale_loss(output_gradients), outputs.dtype)]
        if regularization is not None:
            targets.append(regularization)
            upstream.append(optimizer.scale_loss(tf.ones_like(regularization)))
        return tape.gradient(targets, network.trainable_variables, output_gradients=upstream)

    def loss_gradients(self, tape, loss, variables, optimizer) -> list:
        """The gradient of a scalar loss, scaled as ``optimizer`` expects.

        The scale enters as the upstream gradient of the loss, which is what
        scaling the loss inside the tape does: every gradient of the backward
        pass is scaled, so none underflows in float16.
        """
        return tape.gradient(loss, variables, output_gradients=optimizer.scale_loss(tf.ones_like(loss)))

    def apply_gradients(self, clf_grads, q_grads=None, *, classifier_on=None) -> None:
        """Applies the classifier's and q's gradients with their optimizers.

        ``classifier_on``: None (always), or a boolean tensor (LIMIT's
        warm-up) that, when false, zeroes the classifier's gradients and
        takes the step back from its optimizer's count. With Adam's state
        still zero, the classifier's weights stay exactly as they are and
        its first real step is Adam's first step; an optimizer that moves
        weights on a zero gradient (weight decay) would move them. Zeroing
        rather than branching keeps every optimizer update out of a
        ``tf.cond``, which distribution strategies do not allow around
        their cross-replica updates.
        """
        clf_vars = self.classifier.trainable_variables
        if classifier_on is not None:
            clf_grads = [None if g is None else g * tf.cast(classifier_on, g.dtype) for g in clf_grads]
        if q_grads is None:
            self.optimizer.apply(list(clf_grads), clf_vars)
            self._uncount_skipped(classifier_on)
            return
        q_vars = self.predictor_network.trainable_variables
        if self._shared_optimizer:
            # One counter for both networks: q's steps count.
            self.optimizer.apply(list(clf_grads) + list(q_grads), clf_vars + q_vars)
            return
        self.optimizer.apply(list(clf_grads), clf_vars)
        self._uncount_skipped(classifier_on)
        self.predictor_optimizer.apply(list(q_grads), q_vars)

    def _uncount_skipped(self, classifier_on) -> None:
        if classifier_on is not None:
            self.optimizer.iterations.assign_sub(
                tf.cast(tf.logical_not(classifier_on), self.optimizer.iterations.dtype)
            )

    # ------------------------------------------------------------------
    # Inference and metrics.

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    @staticmethod
    def float32(logits) -> tf.Tensor:
        return tf.cast(logits, tf.float32)

    def _track_classifier(self, logits, y_one_hot) -> None:
        logits = self.float32(logits)
        labels = tf.argmax(y_one_hot, axis=-1)
        self.loss_tracker.update_state(tf.nn.softmax_cross_entropy_with_logits(labels=y_one_hot, logits=logits))
        self.accuracy_tracker.update_state(tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32))

    def results(self) -> dict:
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """Cross-entropy and accuracy of the classifier against the labels given."""
        x, y = data[0], data[1]
        logits = self.classifier(x, training=False)
        self._track_classifier(logits, one_hot_labels(y, logits.shape[-1]))
        return {m.name: m.result() for m in (self.loss_tracker, self.accuracy_tracker)}

    def predict_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        return self.classifier(x, training=False)

    # ------------------------------------------------------------------
    # Serialization.

    def get_config(self):
        config = super().get_config()
        for key in self._network_keys:
            config[key] = keras.saving.serialize_keras_object(getattr(self, key))
        config["input_shape"] = None if self._input_shape is None else list(self._input_shape[1:])
        return config

    def get_compile_config(self):
        if self.optimizer is None:
            return None
        config = {"optimizer": keras.saving.serialize_keras_object(self.optimizer)}
        if self.predictor_network is not None:
            config["predictor_optimizer"] = (
                "shared" if self._shared_optimizer else keras.saving.serialize_keras_object(self.predictor_optimizer)
            )
        return config

    def compile_from_config(self, config):
        optimizer = keras.saving.deserialize_keras_object(config["optimizer"])
        predictor_optimizer = config.get("predictor_optimizer")
        if predictor_optimizer not in (None, "shared"):
            predictor_optimizer = keras.saving.deserialize_keras_object(predictor_optimizer)
        self.compile(optimizer, predictor_optimizer)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        networks = [
            keras.saving.deserialize_keras_object(config.pop(k), custom_objects=custom_objects)
            for k in cls._network_keys
        ]
        return cls(*networks, **config)
