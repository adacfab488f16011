"""The methods' builders: from a config to a compiled ``keras.Model``.

Each method of the method table (:data:`limit_tf.methods.METHODS`, which
says what a method *is*) names its builder here (``MethodSpec.builder``). A builder takes a :class:`MethodContext` and returns
a compiled model whose ``evaluate`` reports ``accuracy`` and whose
``predict`` returns the classifier's logits. Shared by the runner, the
tuner, detection and the benchmarks.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from limit_tf import data as data_lib
from limit_tf import inference, losses, methods, models, workdir
from limit_tf.config import ConfigError, ExperimentConfig
from limit_tf.gradient_noise import GradientNoiseModel
from limit_tf.limit import LimitModel
from limit_tf.model_base import ClassifierWrapper
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
      steps_per_epoch: training steps per epoch (LIMIT's warm-up is
        ``warmup_epochs`` of them).
      input_mean, input_std: the pipeline's standardization (a ``keras:``
        body undoes it to feed its own preprocessing).
    """

    config: ExperimentConfig
    num_classes: int
    input_shape: tuple[int, ...]
    init_weights: str | None = None
    train_inputs: object = None
    steps_per_epoch: int | None = None
    input_mean: tuple[float, ...] = (0.0,)
    input_std: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        # Settings left at auto take the data's recipe (LIMIT's predictor and beta, the schedule, the epochs).
        object.__setattr__(self, "config", self.config.for_data(self.input_shape))

    @property
    def architecture(self) -> str:
        """The classifier's network: ``--architecture``, or the data's default (images: by their shape)."""
        return self.config.network_for(self.input_shape)

    @property
    def synchronized_bn(self) -> bool:
        # Under a strategy, replicas normalize with the global batch's moments,
        # as one device does (tests/test_distribute.py).
        return self.config.strategy != "default"

    @property
    def backbone_options(self) -> dict:
        """A ``keras:`` body's options (the pipeline's standardization, ``--weights``, ``--freeze_backbone``)."""
        if not methods.backbone_of(self.architecture):
            return {}
        weights = {"none": None}.get(self.config.weights, self.config.weights)
        return {
            "mean": self.input_mean,
            "std": self.input_std,
            "weights": weights,
            "freeze": self.config.freeze_backbone,
        }

    def network(self, name: str = "classifier", *, last_bias: bool = True) -> keras.Model:
        """The classifier's architecture, freshly initialized (a ``keras:`` body: from ``--weights``)."""
        return models.build_model(
            self.architecture,
            self.num_classes,
            self.input_shape,
            last_bias=last_bias,
            synchronized_bn=self.synchronized_bn,
            name=name,
            **self.backbone_options,
        )

    def predictor_network(self) -> keras.Model:
        """The q-network of ``--q_architecture`` (the classifier's ``keras:`` body starts from the same weights)."""
        return models.build_predictor(
            self.config.q_architecture,
            self.architecture,
            self.num_classes,
            self.input_shape,
            synchronized_bn=self.synchronized_bn,
            **self.backbone_options,
        )

    def optimizer(self) -> keras.optimizers.Optimizer:
        if self.config.optimizer == "sgd":
            return keras.optimizers.SGD(self.learning_rate(), momentum=0.9, nesterov=True)
        # PyTorch's Adam epsilon (1e-8), as in the paper's reference code; Keras' default is 1e-7.
        return keras.optimizers.Adam(self.learning_rate(), epsilon=1e-8)

    def learning_rate(self):
        """``--learning_rate``, or with ``--lr_schedule=cosine`` its cosine decay to 0 over the run's steps."""
        c = self.config
        if c.lr_schedule == "constant":
            return c.learning_rate
        if not self.steps_per_epoch:
            raise ValueError("--lr_schedule=cosine needs the number of training steps per epoch.")
        return keras.optimizers.schedules.CosineDecay(c.learning_rate, decay_steps=c.epochs * self.steps_per_epoch)

    def compile(self, model: keras.Model, loss=None) -> keras.Model:
        """Compiles a plain classifier with ``loss``, or a custom-step model without one."""
        if loss is None:
            model.compile(self.optimizer(), jit_compile=self.config.jit_compile)
        else:
            model.compile(
                optimizer=self.optimizer(),
                loss=loss,
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                jit_compile=self.config.jit_compile,
            )
        return model

    def from_ce(self) -> keras.Model:
        """A classifier holding the trained CE model's weights (``--init_from``)."""
        if self.init_weights is None:
            raise ValueError(f"method {self.config.method!r} starts from a trained CE model: give --init_from.")
        model = self.network()
        model.load_weights(self.init_weights)
        return model


def build_ce(ctx: MethodContext) -> keras.Model:
    return ctx.compile(ctx.network(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def build_mae(ctx: MethodContext) -> keras.Model:
    return ctx.compile(ctx.network(), losses.MeanAbsoluteError())


def build_mse(ctx: MethodContext) -> keras.Model:
    return ctx.compile(ctx.network(), losses.MeanSquaredError())


def build_gce(ctx: MethodContext) -> keras.Model:
    return ctx.compile(ctx.network(), losses.GeneralizedCrossEntropy(ctx.config.gce_q))


def build_sce(ctx: MethodContext) -> keras.Model:
    return ctx.compile(ctx.network(), losses.SymmetricCrossEntropy(ctx.config.sce_alpha, ctx.config.sce_beta))


def build_fw(ctx: MethodContext) -> keras.Model:
    """T estimated from the CE model's training predictions, then fine-tuned from it."""
    model = ctx.from_ce()
    if ctx.train_inputs is None:
        raise ValueError("method 'fw' needs the training inputs to estimate its transition matrix.")
    probs = tf.nn.softmax(model.predict(ctx.train_inputs, verbose=0)).numpy()
    matrix = losses.estimate_transition_matrix(probs)
    logging.info("FW: estimated transition matrix (diagonal %s)", np.round(np.diag(matrix), 3).tolist())
    return ctx.compile(model, losses.ForwardCorrectedCrossentropy(matrix))


def build_dmi(ctx: MethodContext) -> keras.Model:
    return ctx.compile(ctx.from_ce(), losses.DMILoss())


def build_ce_gn(ctx: MethodContext) -> keras.Model:
    c = ctx.config
    return ctx.compile(GradientNoiseModel(ctx.network(), distribution="gaussian", noise_std=c.noise_std, seed=c.seed))


def build_ce_ln(ctx: MethodContext) -> keras.Model:
    c = ctx.config
    return ctx.compile(GradientNoiseModel(ctx.network(), distribution="laplace", noise_std=c.noise_std, seed=c.seed))


def build_soft_reg(ctx: MethodContext) -> keras.Model:
    c = ctx.config
    model = SoftRegularizationModel(
        ctx.network(last_bias=False), ctx.predictor_network(), soft_lambda=c.soft_lambda, beta=c.beta
    )
    return ctx.compile(model)


def build_limit(ctx: MethodContext) -> keras.Model:
    c = ctx.config
    if c.warmup_epochs and not ctx.steps_per_epoch:
        raise ValueError(
            "--warmup_epochs needs the number of training steps per epoch (MethodContext.steps_per_epoch)."
        )
    model = LimitModel(
        ctx.network(),
        ctx.predictor_network(),
        predictor=c.predictor,
        beta=c.beta,
        sample=c.sample,
        sigma_q=c.sigma_q,
        warmup_steps=c.warmup_epochs * (ctx.steps_per_epoch or 0),
        init_predictor_from=ctx.init_weights,
        seed=c.seed,
    )
    return ctx.compile(model)


def build_method(ctx: MethodContext) -> keras.Model:
    """Builds and compiles the model of ``ctx.config.method`` with the builder its spec names."""
    return builder_of(ctx.config.method)(ctx)


def builder_of(method: str) -> Callable[[MethodContext], keras.Model]:
    """The function that builds ``method`` (its spec's ``builder``, ``"module:function"``)."""
    module, _, function = methods.get(method).builder.partition(":")
    return getattr(importlib.import_module(module), function)


def classifier_of(model: keras.Model) -> keras.Model:
    """The network that makes predictions (the wrapped classifier, else the model)."""
    return model.classifier if isinstance(model, ClassifierWrapper) else model


def predictor_of(model: keras.Model) -> keras.Model | None:
    """The q-network of a model that has one (LIMIT, soft regularization), else None."""
    return model.predictor_network if isinstance(model, ClassifierWrapper) else None


def build_for_data(config: ExperimentConfig, dataset, strategy) -> keras.Model:
    """Seeds (and, with ``deterministic``, fixes op order), then builds the method under the strategy,
    with the settings left at auto filled in for this data (:meth:`ExperimentConfig.for_data`)."""
    config = config.for_data(dataset.input_shape, len(dataset.train))
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    init = str(Path(config.init_from) / workdir.BEST_WEIGHTS) if config.init_from else None
    ctx = MethodContext(
        config=config,
        num_classes=dataset.num_classes,
        input_shape=dataset.input_shape,
        init_weights=init,
        train_inputs=data_lib.to_tf_dataset(
            dataset, "train", batch_size=inference.evaluation_settings(dataset.input_shape)[1], inputs_only=True
        ),
        steps_per_epoch=data_lib.steps_per_epoch(dataset, config.batch_size),
        input_mean=tuple(dataset.mean),
        input_std=tuple(dataset.std),
    )
    with strategy.scope():
        try:
            return build_method(ctx)
        except ValueError as e:  # e.g. --init_from weights that do not fit
            if "output size would be zero or negative" in str(e) or "negative dimension" in str(e).lower():
                size = "x".join(str(d) for d in dataset.input_shape[:-1])
                raise ConfigError(
                    f"the inputs are {size} images, too small for --architecture={ctx.architecture}: "
                    "resize them with --image_size=28, or use --architecture=mlp."
                ) from None
            raise ConfigError(str(e).splitlines()[0]) from None
