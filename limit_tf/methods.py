"""The method table: one explicit mapping from a method's name to its builder.

Shared by the experiment runner and the tuner. A builder takes a
:class:`MethodContext` and returns a compiled ``keras.Model`` whose
``evaluate`` reports ``accuracy`` and whose ``predict`` returns logits.
Adding a method is one function and one entry in :data:`METHODS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from limit_tf import losses, models
from limit_tf.config import ExperimentConfig
from limit_tf.gradient_noise import GradientNoiseModel
from limit_tf.limit import LimitModel
from limit_tf.soft_reg import SoftRegularizationModel


@dataclasses.dataclass(frozen=True)
class MethodContext:
    """What a builder needs besides the config.

    Attributes:
      config: the experiment config (method hyperparameters, lr, seed, ...).
      num_classes: K.
      input_shape: input shape without the batch dimension.
      init_weights: path of a trained CE classifier's weights (``--init_from``):
        LIMIT's "+init" copies it into q; FW and DMI start from it.
      train_inputs: a ``tf.data`` dataset of normalized training inputs (FW
        estimates its transition matrix from a CE model's predictions on them).
    """

    config: ExperimentConfig
    num_classes: int
    input_shape: tuple[int, ...]
    init_weights: str | None = None
    train_inputs: object = None

    def network(self, name: str, *, last_bias: bool = True) -> keras.Model:
        return models.build_model(
            self.config.resolved_architecture,
            self.num_classes,
            self.input_shape,
            last_bias=last_bias,
            # Under a strategy, replicas normalize with the global batch's
            # moments, as one device does (tests/test_distribute.py).
            synchronized_bn=self.config.strategy != "default",
            name=name,
        )

    def optimizer(self, learning_rate: float | None = None) -> keras.optimizers.Optimizer:
        # PyTorch's Adam epsilon (1e-8), as in the paper's reference code; Keras' default is 1e-7.
        return keras.optimizers.Adam(learning_rate or self.config.learning_rate, epsilon=1e-8)


def accuracy_metric():
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def compile_with_loss(model: keras.Model, ctx: MethodContext, loss) -> keras.Model:
    model.compile(optimizer=ctx.optimizer(), loss=loss, metrics=[accuracy_metric()], jit_compile=ctx.config.jit_compile)
    return model


def build_ce(ctx: MethodContext) -> keras.Model:
    """Cross-entropy on the observed labels."""
    return compile_with_loss(
        ctx.network("classifier"), ctx, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )


def build_limit(ctx: MethodContext) -> keras.Model:
    """LIMIT (Sec. 3.3-3.4): classifier + q-network of the same architecture."""
    c = ctx.config
    model = LimitModel(
        ctx.network("classifier"),
        ctx.network("predictor_network"),
        predictor=c.predictor,
        beta=c.beta,
        sample=c.sample,
        sigma_q=c.sigma_q,
        warmup_epochs=c.warmup_epochs,
        init_predictor_from=ctx.init_weights,
        seed=c.seed,
    )
    model.compile(ctx.optimizer(), jit_compile=c.jit_compile)
    return model


def build_mae(ctx: MethodContext) -> keras.Model:
    """MAE between the one-hot label and the softmax."""
    return compile_with_loss(ctx.network("classifier"), ctx, losses.MeanAbsoluteError())


def build_mse(ctx: MethodContext) -> keras.Model:
    """Squared error between the one-hot label and the softmax."""
    return compile_with_loss(ctx.network("classifier"), ctx, losses.MeanSquaredError())


def build_gce(ctx: MethodContext) -> keras.Model:
    """Generalized cross-entropy with ``--gce_q``."""
    return compile_with_loss(ctx.network("classifier"), ctx, losses.GeneralizedCrossEntropy(ctx.config.gce_q))


def _from_ce(ctx: MethodContext) -> keras.Model:
    """A classifier holding the trained CE model's weights (``--init_from``)."""
    if ctx.init_weights is None:
        raise ValueError(f"method {ctx.config.method!r} starts from a trained CE model: give --init_from.")
    model = ctx.network("classifier")
    model.load_weights(ctx.init_weights)
    return model


def build_fw(ctx: MethodContext) -> keras.Model:
    """Forward correction: T estimated from the CE model's training predictions, then fine-tuned from it."""
    model = _from_ce(ctx)
    if ctx.train_inputs is None:
        raise ValueError("method 'fw' needs the training inputs to estimate its transition matrix.")
    probs = tf.nn.softmax(model.predict(ctx.train_inputs, verbose=0)).numpy()
    matrix = losses.estimate_transition_matrix(probs)
    logging.info("FW: estimated transition matrix (diagonal %s)", np.round(np.diag(matrix), 3).tolist())
    return compile_with_loss(model, ctx, losses.ForwardCorrectedCrossentropy(matrix))


def build_dmi(ctx: MethodContext) -> keras.Model:
    """DMI, fine-tuned from the CE model (the paper tunes its lr in {1e-3, ..., 1e-6})."""
    return compile_with_loss(_from_ce(ctx), ctx, losses.DMILoss())


def _gradient_noise(ctx: MethodContext, distribution: str) -> keras.Model:
    model = GradientNoiseModel(
        ctx.network("classifier"), distribution=distribution, noise_std=ctx.config.noise_std, seed=ctx.config.seed
    )
    model.compile(ctx.optimizer(), jit_compile=ctx.config.jit_compile)
    return model


def build_ce_gn(ctx: MethodContext) -> keras.Model:
    """CE + Gaussian noise (std ``--noise_std`` per example) on the logit gradient."""
    return _gradient_noise(ctx, "gaussian")


def build_ce_ln(ctx: MethodContext) -> keras.Model:
    """CE + Laplace noise (std ``--noise_std`` per example) on the logit gradient."""
    return _gradient_noise(ctx, "laplace")


def build_soft_reg(ctx: MethodContext) -> keras.Model:
    """Soft regularization, eq. (11), with ``--soft_lambda`` and ``--beta``."""
    model = SoftRegularizationModel(
        ctx.network("classifier", last_bias=False),
        ctx.network("predictor_network"),
        soft_lambda=ctx.config.soft_lambda,
        beta=ctx.config.beta,
    )
    model.compile(ctx.optimizer(), jit_compile=ctx.config.jit_compile)
    return model


METHODS: dict[str, Callable[[MethodContext], keras.Model]] = {
    "ce": build_ce,
    "mae": build_mae,
    "mse": build_mse,
    "gce": build_gce,
    "fw": build_fw,
    "dmi": build_dmi,
    "ce_gn": build_ce_gn,
    "ce_ln": build_ce_ln,
    "soft_reg": build_soft_reg,
    "limit": build_limit,
}


def build_method(ctx: MethodContext) -> keras.Model:
    """Builds and compiles the model of ``ctx.config.method``."""
    name = ctx.config.method
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}.")
    return METHODS[name](ctx)


def classifier_of(model: keras.Model) -> keras.Model:
    """The network that makes predictions (LIMIT's classifier, else the model)."""
    return getattr(model, "classifier", model)
