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

from limit_tf import models
from limit_tf.config import ExperimentConfig
from limit_tf.limit import LimitModel


@dataclasses.dataclass(frozen=True)
class MethodContext:
    """What a builder needs besides the config.

    Attributes:
      config: the experiment config (method hyperparameters, lr, seed, ...).
      num_classes: K.
      input_shape: input shape without the batch dimension.
      init_weights: path of a trained CE classifier's weights (``--init_from``):
        LIMIT's "+init" copies it into q; FW and DMI start from it.
      train_x: normalized training inputs (FW estimates its matrix from them).
    """

    config: ExperimentConfig
    num_classes: int
    input_shape: tuple[int, ...]
    init_weights: str | None = None
    train_x: np.ndarray | None = None

    def network(self, name: str, *, last_bias: bool = True) -> keras.Model:
        return models.build_model(
            self.config.resolved_architecture, self.num_classes, self.input_shape, last_bias=last_bias, name=name
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


METHODS: dict[str, Callable[[MethodContext], keras.Model]] = {
    "ce": build_ce,
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
