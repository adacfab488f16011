import keras
import numpy as np
import pytest

from limit_tf import models
from limit_tf.gradient_noise import GradientNoiseModel

K = 4


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


def test_the_noise_is_fresh_each_step_and_reproducible(rng):
    x, y = rng.normal(size=(32, 6)).astype(np.float32), rng.integers(0, K, 32)

    def run(seed):
        keras.utils.set_random_seed(0)
        model = GradientNoiseModel(models.build_model("mlp", K, (6,)), noise_std=0.3, seed=seed)
        model.compile(keras.optimizers.SGD(0.5))
        deltas = []
        for _ in range(2):
            before = np.asarray(model.classifier.weights[-1]).copy()
            model.train_on_batch(x, y)
            deltas.append(np.asarray(model.classifier.weights[-1]) - before)
        return deltas

    first, again, other = run(1), run(1), run(2)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.allclose(first[0], other[0])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(noise_std=-0.1), "noise_std=-0.1"),
        (dict(noise_std=0.0), "noise_std=0.0"),
        (dict(distribution="cauchy"), "distribution='cauchy'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientNoiseModel(models.build_model("mlp", K, (6,)), **kwargs)
