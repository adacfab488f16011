import keras
import numpy as np
import pytest
import tensorflow as tf

from limit_tf import methods, models
from limit_tf.config import ExperimentConfig
from limit_tf.gradient_noise import GradientNoiseModel
from limit_tf.soft_reg import SoftRegularizationModel, soft_penalty

K = 4
SHAPE = (6,)


@pytest.fixture
def tiny(rng):
    x = rng.normal(size=(64, *SHAPE)).astype(np.float32)
    y = rng.integers(0, K, 64)
    return x, y


@pytest.fixture
def ce_weights(tmp_path, tiny):
    ctx = _ctx("ce")
    model = methods.build_method(ctx)
    model.fit(*tiny, batch_size=32, epochs=1, verbose=0)
    path = tmp_path / "best.weights.h5"
    model.save_weights(path)
    return str(path)


def _ctx(method, init_weights=None, train_inputs=None, **config):
    settings = {"workdir": "unused", "method": method, "architecture": "mlp", "noise_std": 0.1, "beta": 1.0, **config}
    return methods.MethodContext(
        ExperimentConfig(**settings), K, SHAPE, init_weights=init_weights, train_inputs=train_inputs
    )


def test_table_has_every_method_of_the_runner():
    from limit_tf.config import METHOD_NAMES

    assert set(methods.METHODS) == set(METHOD_NAMES)


@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_a_few_fit_steps_per_method(method, tiny, ce_weights, tmp_path):
    x, y = tiny
    train_inputs = tf.data.Dataset.from_tensor_slices(x).batch(32)
    ctx = _ctx(method, init_weights=ce_weights, train_inputs=train_inputs, predictor="laplace")
    model = methods.build_method(ctx)
    history = model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0)
    assert np.all(np.isfinite(history.history["loss"])) and "val_accuracy" in history.history
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert 0.0 <= logs["accuracy"] <= 1.0
    assert methods.classifier_of(model).predict(x[:2], verbose=0).shape == (2, K)
    path = tmp_path / f"{method}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_fw_and_dmi_start_from_the_ce_model(tiny, ce_weights):
    reference = models.build_model("mlp", K, SHAPE)
    reference.load_weights(ce_weights)
    train_inputs = tf.data.Dataset.from_tensor_slices(tiny[0]).batch(32)
    for method in ("fw", "dmi"):
        model = methods.build_method(_ctx(method, init_weights=ce_weights, train_inputs=train_inputs))
        for a, b in zip(model.weights, reference.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_unknown_method_and_missing_init():
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        methods.build_method(methods.MethodContext(ExperimentConfig(workdir="x").replace(method="sgd"), K, SHAPE))
    with pytest.raises(ValueError, match="starts from a trained CE model"):
        methods.build_method(_ctx("dmi"))


@pytest.mark.parametrize("distribution", ["gaussian", "laplace"])
def test_gradient_noise_has_the_stated_per_example_std(distribution):
    n, std = 300, 0.2
    inputs = keras.Input((n,))
    clf = keras.Model(inputs, keras.layers.Dense(K, use_bias=False)(inputs))
    model = GradientNoiseModel(clf, distribution=distribution, noise_std=std)
    model.compile(keras.optimizers.SGD(1.0))
    x = np.eye(n, dtype=np.float32)  # dW = -g / n exactly (see test_limit)
    y = np.arange(n) % K
    w = np.asarray(clf.weights[0], np.float64)
    p = np.exp(x @ w) / np.exp(x @ w).sum(axis=1, keepdims=True)
    model.train_on_batch(x, y)
    g = -n * (np.asarray(clf.weights[0], np.float64) - w)
    eps = (g - (p - np.eye(K)[y])).ravel()
    assert eps.std() == pytest.approx(std, rel=0.06) and abs(eps.mean()) < 0.03


def test_soft_penalty_against_hand_computation(rng):
    z = rng.normal(size=(3, 5)).astype(np.float32)
    probs, r = (rng.dirichlet(np.ones(K), size=3).astype(np.float32) for _ in range(2))
    y = np.eye(K, dtype=np.float32)[[0, 1, 3]]
    got = soft_penalty(z, probs, r, y, 0.1, 2.0).numpy()
    expected = (z**2).sum(1) * (0.1 * ((y - r) ** 2).sum(1) + 2.0 * ((probs - r) ** 2).sum(1))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_soft_reg_with_zero_weights_is_plain_cross_entropy(tiny):
    x, y = tiny
    clf = models.build_model("mlp", K, SHAPE, last_bias=False)
    reference = models.build_model("mlp", K, SHAPE, last_bias=False)
    reference.set_weights(clf.get_weights())
    model = SoftRegularizationModel(clf, models.build_model("mlp", K, SHAPE), soft_lambda=0.0, beta=0.0)
    model.compile(keras.optimizers.SGD(0.1))
    reference.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.train_on_batch(x, y)
    reference.train_on_batch(x, y)
    for a, b in zip(clf.weights, reference.weights, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: GradientNoiseModel(models.build_model("mlp", K, SHAPE), noise_std=-0.1), "noise_std=-0.1"),
        (
            lambda: GradientNoiseModel(models.build_model("mlp", K, SHAPE), distribution="cauchy"),
            "distribution='cauchy'",
        ),
        (
            lambda: SoftRegularizationModel(
                models.build_model("mlp", K, SHAPE, last_bias=False),
                models.build_model("mlp", K, SHAPE),
                soft_lambda=-1.0,
            ),
            "soft_lambda=-1.0",
        ),
        (
            lambda: SoftRegularizationModel(models.build_model("mlp", K, SHAPE), models.build_model("mlp", K, SHAPE)),
            "bias-free Dense",
        ),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
