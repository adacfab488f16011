"""LIMIT: training a classifier with gradients predicted without labels.

Harutyunyan, Reing, Ver Steeg, Galstyan, "Improving Generalization by
Controlling Label-Noise Information in Neural Network Weights", ICML 2020.
Sections 3.3-3.4 of the paper; ``../shared/DESIGN.md`` section 1 states the
method exactly.

Per batch, with ``a`` the classifier's logits, ``p = stop_gradient(s(a))``,
``r = s(q(x))`` the q-network's prediction and ``y`` the one-hot observed
(possibly noisy) label:

- the predicted gradient w.r.t. the logits (the mean ``mu`` of q's Gaussian or
  Laplace distribution, Sec. 3.3) is ``g_pred = p - r``; no label is used;
- the cross-entropy gradient w.r.t. the logits is ``g_ce = p - y``;
- q is fitted by ``E||g_pred - g_ce||_2^2`` (LIMIT_G, Gaussian q) or
  ``E||g_pred - g_ce||_1`` (LIMIT_L, Laplace q), the cross-entropy bound
  ``H_{p,q}`` of eq. (12), plus ``beta E||g_pred||_2^2`` (Sec. 3.4);
- the classifier is updated by back-propagating ``g_pred`` (or a sample
  around it, "+S") from the logits: it never sees ``y``.

Deviations from the authors' PyTorch code, on purpose (DESIGN.md): the
injected gradient is scaled by ``1 / global_batch`` like a batch-mean loss;
the two networks are identical in structure; "+init" copies all weights.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from limit_tf.wrapper import ClassifierWrapper, global_batch_size, one_hot_labels

PREDICTORS = ("gaussian", "laplace", "ce")


def predicted_gradient(probs: tf.Tensor, predictor_probs: tf.Tensor) -> tf.Tensor:
    """``g_pred = s(a) - s(q(x))``: the mean of q's gradient distribution (Sec. 3.3).

    Args:
      probs: the classifier's softmax ``s(a)``, already stopped (B, K).
      predictor_probs: the q-network's softmax ``s(q(x))`` (B, K).
    """
    return probs - predictor_probs


def cross_entropy_gradient(probs: tf.Tensor, labels_one_hot: tf.Tensor) -> tf.Tensor:
    """``g_ce = s(a) - y``: the gradient of cross-entropy w.r.t. the logits (Sec. 3.2)."""
    return probs - labels_one_hot


def predictor_fit_loss(predictor: str, g_pred, g_ce, labels_one_hot, predictor_logits) -> tf.Tensor:
    """Per-example cross-entropy bound ``H_{p,q}`` of eq. (12), up to constants.

    - ``gaussian``: ``||g_pred - g_ce||_2^2`` (MSE; LIMIT_G);
    - ``laplace``: ``||g_pred - g_ce||_1`` (MAE; LIMIT_L);
    - ``ce``: cross-entropy of q on the observed labels (the authors' later code).

    Note ``g_pred - g_ce = y - s(q(x))``: only q's weights receive its gradient.

    Returns:
      Shape (B,).
    """
    if predictor == "gaussian":
        return tf.reduce_sum(tf.square(g_pred - g_ce), axis=-1)
    if predictor == "laplace":
        return tf.reduce_sum(tf.abs(g_pred - g_ce), axis=-1)
    return tf.nn.softmax_cross_entropy_with_logits(labels=labels_one_hot, logits=predictor_logits)


def gradient_norm_penalty(g_pred: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """``beta ||mu||_2^2``, the norm penalty of Sec. 3.4 (per example, shape (B,))."""
    return beta * tf.reduce_sum(tf.square(g_pred), axis=-1)


def sample_gradient(g_pred: tf.Tensor, predictor: str, sigma_q: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Draws ``g ~ q(. | x)`` around ``mu = g_pred`` (the "+S" variants, Sec. 3.3).

    Gaussian: ``N(mu, sigma_q^2 I)``. Laplace: a product of ``Lap(mu_j,
    sigma_q / sqrt(2))``, whose standard deviation is ``sigma_q``. Fresh noise
    per example, per logit and per step (the seed changes every step).

    Args:
      g_pred: the mean, (B, K).
      predictor: ``gaussian`` or ``laplace`` (``ce`` samples like ``gaussian``).
      sigma_q: the standard deviation.
      seed: a stateless seed, shape (2,).
    """
    shape = tf.shape(g_pred)
    if predictor == "laplace":
        # Inverse CDF: u ~ U(-1/2, 1/2), x = -b sign(u) log(1 - 2|u|).
        u = tf.random.stateless_uniform(shape, seed, minval=-0.5, maxval=0.5, dtype=g_pred.dtype)
        scale = sigma_q / math.sqrt(2.0)
        noise = -scale * tf.sign(u) * tf.math.log1p(-2.0 * tf.minimum(tf.abs(u), 0.5 - 1e-7))
    else:
        noise = sigma_q * tf.random.stateless_normal(shape, seed, dtype=g_pred.dtype)
    return g_pred + noise


def step_seed(seed: int, iterations) -> tf.Tensor:
    """A stateless seed that changes every step and differs across replicas.

    Derived from the optimizer's step counter, so noise is reproducible and a
    resumed run draws what an uninterrupted one would.
    """
    replica = tf.distribute.get_replica_context()
    replica_id = 0 if replica is None else replica.replica_id_in_sync_group
    step = tf.cast(iterations, tf.int32)
    return tf.stack([tf.constant(seed, tf.int32), step * 1024 + tf.cast(replica_id, tf.int32)])


@keras.saving.register_keras_serializable(package="limit_tf")
class LimitModel(ClassifierWrapper):
    """A classifier trained by LIMIT, with its gradient-predictor network q.

    ``predict``, ``evaluate`` and ``__call__`` use the classifier only; q is
    used in training (and for detecting mislabeled examples). Train it like
    any Keras model::

        clf = limit_tf.models.build_model("mnist_cnn", 10, (28, 28, 1))
        q = limit_tf.models.build_model("mnist_cnn", 10, (28, 28, 1))
        model = limit_tf.LimitModel(clf, q, predictor="laplace", beta=10.0)
        model.compile(keras.optimizers.Adam(1e-3))
        model.fit(train_ds, validation_data=val_ds, epochs=30)

    Args:
      classifier: any Keras model mapping inputs to logits (functional,
        sequential or subclassed).
      predictor_network: the q-network, mapping the same inputs to K logits
        (usually the same architecture as the classifier).
      predictor: ``"gaussian"`` (LIMIT_G, MSE fit), ``"laplace"`` (LIMIT_L,
        MAE fit) or ``"ce"`` (q fitted with cross-entropy).
      beta: weight of the norm penalty ``beta ||g_pred||^2`` (>= 0).
      sample: the "+S" variants: the classifier receives a sample around
        ``g_pred`` instead of ``g_pred`` itself.
      sigma_q: the sample's standard deviation (> 0 when ``sample``).
      warmup_epochs: epochs at the start during which only q trains (the
        classifier, including its batch-norm statistics, stays frozen).
      init_predictor_from: a trained classifier (a ``keras.Model`` or the
        path of a ``.keras`` / ``.weights.h5`` file of the same architecture)
        whose weights q starts from: the paper's "+init".
      seed: seed of the sampling noise.
      input_shape: the input shape without the batch dimension; needed only
        when the networks are not built yet (subclassed models), so that
        both networks and their optimizers can be built before training.

    Keras cannot tell whether ``accuracy`` should go up for a model with its
    own ``train_step``: give callbacks that monitor it ``mode="max"``.
    """

    _network_keys = ("classifier", "predictor_network")

    def __init__(
        self,
        classifier: keras.Model,
        predictor_network: keras.Model,
        *,
        predictor: str = "gaussian",
        beta: float = 0.0,
        sample: bool = False,
        sigma_q: float = 0.0,
        warmup_epochs: int = 0,
        init_predictor_from=None,
        seed: int = 0,
        input_shape=None,
        **kwargs,
    ):
        _validate_options(predictor, beta, sample, sigma_q, warmup_epochs)
        if classifier is predictor_network:
            raise ValueError("classifier and predictor_network are the same object: LIMIT needs two networks.")
        super().__init__(classifier, **kwargs)
        self.predictor_network = predictor_network
        self.predictor = predictor
        self.sample = bool(sample)
        self.warmup_epochs = int(warmup_epochs)
        self.seed = int(seed)
        # Variables, not Python floats: a traced step would freeze a float.
        self._beta = keras.Variable(float(beta), trainable=False, dtype="float32", name="beta")
        self._sigma_q = keras.Variable(float(sigma_q), trainable=False, dtype="float32", name="sigma_q")
        self._classifier_frozen = False
        self.predictor_optimizer = None
        self._shared_optimizer = False
        self.q_loss_tracker = keras.metrics.Mean(name="q_loss")
        self.q_fit_tracker = keras.metrics.Mean(name="q_fit")
        self.q_penalty_tracker = keras.metrics.Mean(name="q_penalty")
        self.q_accuracy_tracker = keras.metrics.Mean(name="q_accuracy")
        self._build_networks(input_shape)
        if init_predictor_from is not None:
            self.initialize_predictor(init_predictor_from)

    # ------------------------------------------------------------------
    # Keras plumbing.

    def _networks(self):
        return [self.classifier, self.predictor_network]

    def build(self, input_shape):
        super().build(input_shape)
        self._check_output_shapes(input_shape)

    def _check_output_shapes(self, input_shape):
        spec = keras.KerasTensor(tuple(input_shape))
        shapes = [tuple(net.compute_output_spec(spec).shape[1:]) for net in (self.classifier, self.predictor_network)]
        if shapes[0] != shapes[1] or len(shapes[0]) != 1:
            raise ValueError(
                f"classifier outputs {shapes[0]} and predictor_network outputs {shapes[1]} per example: "
                "both must output the same number of logits (K,)."
            )

    @property
    def beta(self) -> float:
        return float(self._beta.numpy())

    @beta.setter
    def beta(self, value: float):
        _validate_options(self.predictor, value, self.sample, self.sigma_q, self.warmup_epochs)
        self._beta.assign(float(value))

    @property
    def sigma_q(self) -> float:
        return float(self._sigma_q.numpy())

    @sigma_q.setter
    def sigma_q(self, value: float):
        _validate_options(self.predictor, self.beta, self.sample, value, self.warmup_epochs)
        self._sigma_q.assign(float(value))

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.accuracy_tracker,
            self.q_loss_tracker,
            self.q_fit_tracker,
            self.q_penalty_tracker,
            self.q_accuracy_tracker,
        ]

    def compile(self, optimizer="adam", predictor_optimizer=None, **kwargs):
        """Configures training.

        Args:
          optimizer: the classifier's optimizer (anything
            ``keras.optimizers.get`` accepts). It is also ``model.optimizer``,
            which LR schedulers and TensorBoard read.
          predictor_optimizer: q's optimizer. ``None``: a separate copy of
            ``optimizer`` with the same settings (equivalent to one Adam over
            both networks, since Adam is per-parameter); ``"shared"`` or the
            same object as ``optimizer``: one optimizer over both networks.
          **kwargs: passed to ``keras.Model.compile`` (``jit_compile``,
            ``steps_per_execution``, ``run_eagerly``, ...). ``loss`` and
            ``metrics`` are not accepted: LIMIT defines its own.
        """
        for key in ("loss", "metrics", "weighted_metrics", "loss_weights"):
            if kwargs.get(key) is not None:
                raise ValueError(f"LimitModel.compile does not take {key}=: LIMIT defines its own losses and metrics.")
        self._require_built("compile")
        optimizer = keras.optimizers.get(optimizer)
        self._shared_optimizer = predictor_optimizer == "shared" or predictor_optimizer is optimizer
        if self._shared_optimizer:
            predictor_optimizer = optimizer
        elif predictor_optimizer is None:
            predictor_optimizer = optimizer.__class__.from_config(optimizer.get_config())
        else:
            predictor_optimizer = keras.optimizers.get(predictor_optimizer)
        super().compile(optimizer=optimizer, **kwargs)
        self.predictor_optimizer = predictor_optimizer
        # Build the optimizers now: lazy building in the first step fails
        # under MirroredStrategy.
        clf_vars = self.classifier.trainable_variables
        q_vars = self.predictor_network.trainable_variables
        if self._shared_optimizer:
            self.optimizer.build(clf_vars + q_vars)
        else:
            self.optimizer.build(clf_vars)
            self.predictor_optimizer.build(q_vars)

    def fit(self, *args, callbacks=None, **kwargs):
        """``keras.Model.fit``, plus the warm-up switch when ``warmup_epochs > 0``."""
        callbacks = list(callbacks or [])
        if self.warmup_epochs > 0:
            callbacks.append(_WarmupSwitch(self.warmup_epochs))
        return super().fit(*args, callbacks=callbacks, **kwargs)

    # ------------------------------------------------------------------
    # Training.

    def train_step(self, data):
        x, y = data[0], data[1]
        global_batch = global_batch_size(x)
        frozen = self._classifier_frozen
        with tf.GradientTape() as classifier_tape:
            logits = self.classifier(x, training=not frozen)
        with tf.GradientTape() as predictor_tape:
            predictor_logits = self.predictor_network(x, training=True)
            probs = tf.stop_gradient(tf.nn.softmax(logits))
            y_one_hot = one_hot_labels(y, logits.shape[-1])
            g_pred = predicted_gradient(probs, tf.nn.softmax(predictor_logits))
            g_ce = cross_entropy_gradient(probs, y_one_hot)
            fit = predictor_fit_loss(self.predictor, g_pred, g_ce, y_one_hot, predictor_logits)
            penalty = gradient_norm_penalty(g_pred, self._beta)
            q_loss = tf.reduce_sum(fit + penalty) / global_batch
        q_grads = predictor_tape.gradient(q_loss, self.predictor_network.trainable_variables)
        clf_grads = [] if frozen else self._classifier_gradients(classifier_tape, logits, g_pred, global_batch)
        self._apply(clf_grads, q_grads)
        self._track(logits, predictor_logits, y_one_hot, fit, penalty)
        return {m.name: m.result() for m in self.metrics}

    def _classifier_gradients(self, tape, logits, g_pred, global_batch):
        """Back-propagates the predicted gradient from the logits (Sec. 3.3).

        ``g`` is ``g_pred`` or, with sampling, a draw around it; it is divided
        by the global batch as a batch-mean loss would be. No label enters.
        """
        g = (
            sample_gradient(
                g_pred, self.predictor, self._sigma_q, step_seed(self.seed, self.predictor_optimizer.iterations)
            )
            if self.sample
            else g_pred
        )
        grads = tape.gradient(
            logits, self.classifier.trainable_variables, output_gradients=tf.stop_gradient(g) / global_batch
        )
        if self.classifier.losses:  # weight regularizers of the user's classifier
            with tf.GradientTape() as reg_tape:
                reg = tf.add_n(self.classifier.losses)
            reg_grads = reg_tape.gradient(reg, self.classifier.trainable_variables)
            grads = [g if r is None else g + r for g, r in zip(grads, reg_grads, strict=True)]
        return grads

    def _apply(self, clf_grads, q_grads):
        clf_vars = self.classifier.trainable_variables if clf_grads else []
        q_vars = self.predictor_network.trainable_variables
        if self._shared_optimizer:
            self.optimizer.apply(list(clf_grads) + list(q_grads), clf_vars + q_vars)
            return
        if clf_grads:
            self.optimizer.apply(clf_grads, clf_vars)
        self.predictor_optimizer.apply(q_grads, q_vars)

    def _track(self, logits, predictor_logits, y_one_hot, fit, penalty):
        labels = tf.argmax(y_one_hot, axis=-1)
        self._track_classifier(logits, y_one_hot)
        self.q_loss_tracker.update_state(fit + penalty)
        self.q_fit_tracker.update_state(fit)
        self.q_penalty_tracker.update_state(penalty)
        self.q_accuracy_tracker.update_state(
            tf.cast(tf.equal(tf.argmax(predictor_logits, axis=-1), labels), tf.float32)
        )

    # ------------------------------------------------------------------
    # "+init", serialization.

    def initialize_predictor(self, source) -> None:
        """Copies all weights (batch-norm statistics included) of a trained
        classifier into q: the paper's "+init".

        Args:
          source: a ``keras.Model`` of the same architecture, or the path of a
            ``.keras`` model or ``.weights.h5`` weights file of one.
        """
        if isinstance(source, keras.Model):
            weights = source.get_weights()
        else:
            path = str(source)
            if path.endswith(".weights.h5"):
                clone = keras.models.clone_model(self.predictor_network)
                clone.load_weights(path)
                weights = clone.get_weights()
            elif path.endswith(".keras"):
                loaded = keras.models.load_model(path, compile=False)
                loaded = loaded.classifier if isinstance(loaded, LimitModel) else loaded
                weights = loaded.get_weights()
            else:
                raise ValueError(
                    f"init_predictor_from={path!r}: a keras.Model, a .keras file or a .weights.h5 file is required."
                )
        target = self.predictor_network.get_weights()
        if [w.shape for w in weights] != [w.shape for w in target]:
            raise ValueError(
                "init_predictor_from: the source model's weights do not match the predictor network's "
                f"({len(weights)} vs {len(target)} arrays); the architectures must be identical."
            )
        self.predictor_network.set_weights(weights)
        logging.info("q-network initialized from a trained classifier (%d weight arrays).", len(weights))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "predictor_network": keras.saving.serialize_keras_object(self.predictor_network),
                "predictor": self.predictor,
                "beta": self.beta,
                "sample": self.sample,
                "sigma_q": self.sigma_q,
                "warmup_epochs": self.warmup_epochs,
                "seed": self.seed,
            }
        )
        return config

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None:
            shared = self._shared_optimizer
            config["predictor_optimizer"] = (
                "shared" if shared else keras.saving.serialize_keras_object(self.predictor_optimizer)
            )
        return config

    def compile_from_config(self, config):
        optimizer = keras.saving.deserialize_keras_object(config["optimizer"])
        predictor_optimizer = config["predictor_optimizer"]
        if predictor_optimizer != "shared":
            predictor_optimizer = keras.saving.deserialize_keras_object(predictor_optimizer)
        self.compile(optimizer, predictor_optimizer)


class _WarmupSwitch(keras.callbacks.Callback):
    """Freezes the classifier for the first ``warmup_epochs`` epochs.

    The frozen and the training steps are traced separately; the switch
    re-traces the train function once, at the warm-up boundary (also when a
    run resumes past it).
    """

    def __init__(self, warmup_epochs: int):
        super().__init__()
        self.warmup_epochs = warmup_epochs

    def on_epoch_begin(self, epoch, logs=None):
        frozen = epoch < self.warmup_epochs
        if frozen != self.model._classifier_frozen:
            self.model._classifier_frozen = frozen
            self.model.make_train_function(force=True)
            logging.info("epoch %d: classifier %s", epoch, "frozen (warm-up)" if frozen else "training")

    def on_train_end(self, logs=None):
        if self.model._classifier_frozen:
            self.model._classifier_frozen = False
            self.model.make_train_function(force=True)


def _validate_options(predictor, beta, sample, sigma_q, warmup_epochs):
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor={predictor!r} is not allowed; allowed: {', '.join(PREDICTORS)}.")
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta={beta!r} is not allowed: it must be a finite number >= 0.")
    if not np.isfinite(sigma_q) or sigma_q < 0:
        raise ValueError(f"sigma_q={sigma_q!r} is not allowed: it must be a finite number >= 0.")
    if sample and sigma_q <= 0:
        raise ValueError(f"sigma_q={sigma_q!r} is not allowed with sample=True: it must be > 0.")
    if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs={warmup_epochs!r} is not allowed: it must be an integer >= 0.")
