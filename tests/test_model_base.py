"""The plumbing every custom-step model shares: optimizers, regularizers, labels, mixed precision."""

import keras
import numpy as np
import pytest

from limit_tf import LimitModel
from limit_tf.gradient_noise import GradientNoiseModel
from limit_tf.soft_reg import SoftRegularizationModel

K, D, B = 4, 8, 32


def _net(regularize=False, last_bias=True):
    reg = keras.regularizers.L2(0.05) if regularize else None
    inputs = keras.Input((D,))
    x = keras.layers.Dense(16, activation="relu", kernel_regularizer=reg, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(K, use_bias=last_bias, kernel_regularizer=reg, name="logits")(x))


FACTORIES = {
    "limit": lambda reg: LimitModel(_net(reg), _net(reg), predictor="laplace", beta=1.0),
    "limit_sampled": lambda reg: LimitModel(_net(reg), _net(reg), predictor="gaussian", sample=True, sigma_q=0.1),
    "gradient_noise": lambda reg: GradientNoiseModel(_net(reg), distribution="laplace", noise_std=0.1),
    "soft_reg": lambda reg: SoftRegularizationModel(_net(reg, last_bias=False), _net(reg), soft_lambda=0.1, beta=1.0),
}


def _data(rng):
    return rng.normal(size=(B, D)).astype(np.float32), rng.integers(0, K, B)


def _step(model, x, y, lr=0.1):
    before = [np.asarray(w, np.float64) for w in model.trainable_weights]
    model.train_on_batch(x, y)
    return [np.asarray(w, np.float64) - b for w, b in zip(model.trainable_weights, before, strict=True)]


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_regularization_losses_join_every_update(kind, rng):
    """SGD(1): the update with an L2(0.05) regularizer is the one without it minus 2 * 0.05 * w on each kernel."""
    x, y = _data(rng)
    plain, regularized = FACTORIES[kind](False), FACTORIES[kind](True)
    regularized.set_weights(plain.get_weights())
    for m in (plain, regularized):
        m.compile(keras.optimizers.SGD(1.0))
    kernels = [i for i, w in enumerate(regularized.trainable_weights) if "kernel" in w.path]
    weights = [np.asarray(w, np.float64) for w in regularized.trainable_weights]
    d_plain, d_reg = _step(plain, x, y), _step(regularized, x, y)
    assert kernels
    for i, (a, b) in enumerate(zip(d_plain, d_reg, strict=True)):
        expected = a - 2 * 0.05 * weights[i] if i in kernels else a
        np.testing.assert_allclose(b, expected, atol=2e-6, err_msg=regularized.trainable_weights[i].path)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_one_hot_and_integer_labels_give_the_same_update(kind, rng):
    x, y = _data(rng)
    a, b = FACTORIES[kind](False), FACTORIES[kind](False)
    b.set_weights(a.get_weights())
    for m in (a, b):
        m.compile(keras.optimizers.Adam(1e-2))
    logs_a = a.train_on_batch(x, y, return_dict=True)
    logs_b = b.train_on_batch(x, np.eye(K, dtype=np.float32)[y], return_dict=True)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert logs_a == pytest.approx(logs_b)
    assert a.evaluate(x, y, verbose=0) == pytest.approx(b.evaluate(x, np.eye(K)[y], verbose=0))


def test_compile_builds_both_optimizers_up_front():
    model = FACTORIES["limit"](False)
    model.compile(keras.optimizers.Adam(1e-3, epsilon=1e-8))
    assert model.optimizer.built and model.predictor_optimizer.built
    assert model.predictor_optimizer is not model.optimizer
    assert model.predictor_optimizer.get_config() == model.optimizer.get_config()
    shared = FACTORIES["soft_reg"](False)
    shared.compile("adam", "shared")
    assert shared.predictor_optimizer is shared.optimizer
    single = FACTORIES["gradient_noise"](False)
    single.compile("sgd")
    assert single.optimizer.built and single.predictor_optimizer is None


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_mixed_precision_updates_match_float32(kind, policy, rng):
    """One SGD step under a mixed policy moves the weights as in float32 (within the half types' precision).

    Under mixed_float16 the optimizers are LossScaleOptimizers, which divide
    every gradient by the loss scale (32768 at first): an injected gradient
    that skipped the scaling would move the weights 32768 times too little.
    """
    x, y = _data(rng)
    reference = FACTORIES[kind](False)
    reference.compile(keras.optimizers.SGD(0.5))
    keras.mixed_precision.set_global_policy(policy)
    mixed = FACTORIES[kind](False)
    mixed.set_weights(reference.get_weights())
    mixed.compile(keras.optimizers.SGD(0.5))
    scaled = policy == "mixed_float16"
    assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer) == scaled
    if mixed.predictor_network is not None:
        assert isinstance(mixed.predictor_optimizer, keras.optimizers.LossScaleOptimizer) == scaled
    d_mixed, d_ref = _step(mixed, x, y), _step(reference, x, y)
    tolerance = 0.05 if scaled else 0.1  # bfloat16 keeps 8 bits of mantissa, float16 11
    for a, b, w in zip(d_mixed, d_ref, mixed.trainable_weights, strict=True):
        assert np.linalg.norm(a - b) <= tolerance * np.linalg.norm(b) + 1e-6, w.path
    logs = mixed.evaluate(x, y, verbose=0, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_structural_errors():
    with pytest.raises(ValueError, match="does not take metrics="):
        FACTORIES["gradient_noise"](False).compile("adam", metrics=["accuracy"])
    with pytest.raises(ValueError, match="same number of logits"):
        SoftRegularizationModel(_net(last_bias=False), keras.Sequential([keras.Input((D,)), keras.layers.Dense(K + 1)]))
