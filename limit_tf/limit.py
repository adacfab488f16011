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
  around it, "+S") from the logits with ``tf.GradientTape``'s
  ``output_gradients``: it never sees ``y``.

Deviations from the authors' PyTorch code, on purpose (DESIGN.md): the
injected gradient is scaled by ``1 / global_batch`` like a batch-mean loss;
"+init" copies every weight the two networks share, batch-norm statistics
included.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from limit_tf import methods
from limit_tf.gradients import (
    cross_entropy_gradient,
    global_batch_size,
    one_hot_labels,
    sample_around,
    step_seed,
)
from limit_tf.model_base import ClassifierWrapper

PREDICTORS = methods.PREDICTORS


def predicted_gradient(probs: tf.Tensor, predictor_probs: tf.Tensor) -> tf.Tensor:
    """``g_pred = s(a) - s(q(x))``: the mean of q's gradient distribution (Sec. 3.3).

    Args:
      probs: the classifier's softmax ``s(a)``, already stopped (B, K).
      predictor_probs: the q-network's softmax ``s(q(x))`` (B, K).
    """
    return probs - predictor_probs


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
    sigma_q / sqrt(2))``, whose standard deviation is ``sigma_q``; ``ce``
    samples like ``gaussian``. Fresh noise per example, per logit and per step.
    """
    return sample_around(g_pred, "laplace" if predictor == "laplace" else "gaussian", sigma_q, seed)


@keras.saving.register_keras_serializable(package="limit_tf")
class LimitModel(ClassifierWrapper):
    """A classifier trained by LIMIT, with its gradient-predictor network q.

    ``predict``, ``evaluate`` and ``__call__`` use the classifier only; q is
    used in training (and for detecting mislabeled examples). Train it like
    any Keras model::

        clf = limit_tf.models.build_model("mnist_cnn", 10, (28, 28, 1))
        q = limit_tf.models.build_predictor("mnist_cnn", 10, (28, 28, 1))
        model = limit_tf.LimitModel(clf, q, predictor="laplace", beta=10.0)
        model.compile(keras.optimizers.Adam(1e-3))
        model.fit(train_ds, validation_data=val_ds, epochs=30)

    Args:
      classifier: any Keras model mapping inputs to logits (functional,
        sequential or subclassed).
      predictor_network: the q-network, mapping the same inputs to K logits
        (any architecture; the paper's reference q adds a batch norm to the
        classifier's).
      predictor: ``"gaussian"`` (LIMIT_G, MSE fit), ``"laplace"`` (LIMIT_L,
        MAE fit) or ``"ce"`` (q fitted with cross-entropy).
      beta: weight of the norm penalty ``beta ||g_pred||^2`` (>= 0).
      sample: the "+S" variants: the classifier receives a sample around
        ``g_pred`` instead of ``g_pred`` itself.
      sigma_q: the sample's standard deviation (> 0 when ``sample``).
      warmup_steps: training steps at the start during which only q trains
        (the paper's warm-up, in steps: ``warmup epochs * steps per epoch``).
        The classifier's weights do not move and its optimizer does not
        count these steps; it runs in training mode, so its batch-norm
        statistics follow the data, as in the authors' code. The schedule is
        inside ``train_step`` (a step counter), so ``fit``, the distributed
        loop and a resumed run all apply it alike.
      init_predictor_from: a trained classifier (a ``keras.Model`` or the
        path of a ``.keras`` / ``.weights.h5`` file) whose weights q starts
        from: the paper's "+init" (see :meth:`initialize_predictor`).
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
        warmup_steps: int = 0,
        init_predictor_from=None,
        seed: int = 0,
        input_shape=None,
        **kwargs,
    ):
        _validate_options(predictor, beta, sample, sigma_q, warmup_steps)
        if classifier is predictor_network:
            raise ValueError("classifier and predictor_network are the same object: LIMIT needs two networks.")
        super().__init__(classifier, **kwargs)
        self.predictor_network = predictor_network
        self.predictor = predictor
        self.sample = bool(sample)
        self.warmup_steps = int(warmup_steps)
        self.seed = int(seed)
        # Variables, not Python floats: a traced step would freeze a float.
        self._beta = keras.Variable(float(beta), trainable=False, dtype="float32", name="beta")
        self._sigma_q = keras.Variable(float(sigma_q), trainable=False, dtype="float32", name="sigma_q")
        self.q_loss_tracker = keras.metrics.Mean(name="q_loss")
        self.q_fit_tracker = keras.metrics.Mean(name="q_fit")
        self.q_penalty_tracker = keras.metrics.Mean(name="q_penalty")
        self.q_accuracy_tracker = keras.metrics.Mean(name="q_accuracy")
        self._build_networks(input_shape)
        if init_predictor_from is not None:
            self.initialize_predictor(init_predictor_from)

    @property
    def beta(self) -> float:
        return float(self._beta.numpy())

    @beta.setter
    def beta(self, value: float):
        _validate_options(self.predictor, value, self.sample, self.sigma_q, self.warmup_steps)
        self._beta.assign(float(value))

    @property
    def sigma_q(self) -> float:
        return float(self._sigma_q.numpy())

    @sigma_q.setter
    def sigma_q(self, value: float):
        _validate_options(self.predictor, self.beta, self.sample, value, self.warmup_steps)
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

    # ------------------------------------------------------------------
    # Training.

    def train_step(self, data):
        x, y = data[0], data[1]
        global_batch = global_batch_size(x)
        with tf.GradientTape() as classifier_tape:
            logits = self.classifier(x, training=True)
            clf_reg = self.regularization(self.classifier)
        with tf.GradientTape() as predictor_tape:
            predictor_logits = self.float32(self.predictor_network(x, training=True))
            probs = tf.stop_gradient(tf.nn.softmax(self.float32(logits)))
            y_one_hot = one_hot_labels(y, logits.shape[-1])
            g_pred = predicted_gradient(probs, tf.nn.softmax(predictor_logits))
            g_ce = cross_entropy_gradient(probs, y_one_hot)
            fit = predictor_fit_loss(self.predictor, g_pred, g_ce, y_one_hot, predictor_logits)
            penalty = gradient_norm_penalty(g_pred, self._beta)
            q_loss = tf.reduce_sum(fit + penalty) / global_batch
            q_reg = self.regularization(self.predictor_network)
            if q_reg is not None:
                q_loss += q_reg
        q_grads = self.loss_gradients(
            predictor_tape, q_loss, self.predictor_network.trainable_variables, self.predictor_optimizer
        )
        clf_grads = self._classifier_gradients(classifier_tape, logits, g_pred, global_batch, clf_reg)
        self.apply_gradients(clf_grads, q_grads, classifier_on=self._past_warmup())
        self._track(logits, predictor_logits, y_one_hot, fit, penalty)
        return self.results()

    def _past_warmup(self):
        """None without warm-up, else whether this step trains the classifier (a boolean tensor).

        q's optimizer counts every training step (the shared one too).
        """
        if not self.warmup_steps:
            return None
        steps = (self.optimizer if self._shared_optimizer else self.predictor_optimizer).iterations
        return steps >= self.warmup_steps

    def _classifier_gradients(self, tape, logits, g_pred, global_batch, regularization):
        """Back-propagates the predicted gradient from the logits (Sec. 3.3).

        ``g`` is ``g_pred`` or, with sampling, a draw around it; it is divided
        by the global batch as a batch-mean loss would be. No label enters.
        """
        g = g_pred
        if self.sample:
            g = sample_gradient(
                g_pred, self.predictor, self._sigma_q, step_seed(self.seed, self.predictor_optimizer.iterations)
            )
        return self.backprop(
            tape, self.classifier, logits, tf.stop_gradient(g) / global_batch, self.optimizer, regularization
        )

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

    def initialize_predictor(self, source) -> dict[str, list[str]]:
        """Copies a trained classifier's weights into q: the paper's "+init".

        Every layer of q whose name (and weight shapes) a layer of the
        source shares gets that layer's weights, batch-norm statistics
        included; the others keep their initialization, and the log says
        which. When the two networks are the same architecture, everything
        is copied (position by position if the layer names differ).

        Args:
          source: a ``keras.Model``, or the path of a ``.keras`` model or a
            ``.weights.h5`` file of a network with the classifier's (or q's)
            architecture.

        Returns:
          ``{"copied": [...], "left": [...]}``: q's layer names.
        """
        source = self._load_source(source)
        target = self.predictor_network
        if [w.shape for w in source.weights] == [w.shape for w in target.weights]:
            target.set_weights(source.get_weights())
            copied, left = [layer.name for layer in target.layers if layer.weights], []
        else:
            by_name = {layer.name: layer for layer in source.layers if layer.weights}
            copied, left = [], []
            for layer in (layer for layer in target.layers if layer.weights):
                match = by_name.get(layer.name)
                if match is not None and [w.shape for w in match.weights] == [w.shape for w in layer.weights]:
                    layer.set_weights(match.get_weights())
                    copied.append(layer.name)
                else:
                    left.append(layer.name)
            if not copied:
                raise ValueError(
                    "init_predictor_from: the source model shares no layer (by name and weight shapes) with the "
                    "predictor network; nothing could be copied."
                )
        logging.info(
            "q-network initialized from a trained classifier: %d layers copied%s.",
            len(copied),
            f", left at initialization: {', '.join(left)}" if left else "",
        )
        return {"copied": copied, "left": left}

    def _load_source(self, source) -> keras.Model:
        if isinstance(source, keras.Model):
            return source.classifier if isinstance(source, ClassifierWrapper) else source
        path = str(source)
        if path.endswith(".keras"):
            loaded = keras.models.load_model(path, compile=False)
            return loaded.classifier if isinstance(loaded, ClassifierWrapper) else loaded
        if not path.endswith(".weights.h5"):
            raise ValueError(
                f"init_predictor_from={path!r}: a keras.Model, a .keras file or a .weights.h5 file is required."
            )
        errors = []
        for template in (self.classifier, self.predictor_network):
            clone = keras.models.clone_model(template)
            try:
                clone.load_weights(path)
                return clone
            except ValueError as e:
                errors.append(str(e).splitlines()[0])
        raise ValueError(
            f"init_predictor_from={path!r} fits neither the classifier's nor q's architecture ({errors[0]})."
        )

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config.pop("warmup_epochs", None)  # models saved by 0.2 (warm-up does not matter once trained)
        return super().from_config(config, custom_objects)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "predictor": self.predictor,
                "beta": self.beta,
                "sample": self.sample,
                "sigma_q": self.sigma_q,
                "warmup_steps": self.warmup_steps,
                "seed": self.seed,
            }
        )
        return config


def _validate_options(predictor, beta, sample, sigma_q, warmup_steps):
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor={predictor!r} is not allowed; allowed: {', '.join(PREDICTORS)}.")
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta={beta!r} is not allowed: it must be a finite number >= 0.")
    if not np.isfinite(sigma_q) or sigma_q < 0:
        raise ValueError(f"sigma_q={sigma_q!r} is not allowed: it must be a finite number >= 0.")
    if sample and sigma_q <= 0:
        raise ValueError(f"sigma_q={sigma_q!r} is not allowed with sample=True: it must be > 0.")
    if int(warmup_steps) != warmup_steps or warmup_steps < 0:
        raise ValueError(f"warmup_steps={warmup_steps!r} is not allowed: it must be an integer >= 0.")
