import keras
import numpy as np
import pytest
import tensorflow as tf

from limit_tf import models
from limit_tf.soft_reg import SoftRegularizationModel, soft_penalty

K = 4
SHAPE = (6,)


def test_soft_penalty_against_hand_computation(rng):
    z = rng.normal(size=(3, 5)).astype(np.float32)
    probs, r = (rng.dirichlet(np.ones(K), size=3).astype(np.float32) for _ in range(2))
    y = np.eye(K, dtype=np.float32)[[0, 1, 3]]
    got = soft_penalty(z, probs, r, y, 0.1, 2.0).numpy()
    expected = (z**2).sum(1) * (0.1 * ((y - r) ** 2).sum(1) + 2.0 * ((probs - r) ** 2).sum(1))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_with_zero_weights_it_is_plain_cross_entropy(rng):
    x, y = rng.normal(size=(64, *SHAPE)).astype(np.float32), rng.integers(0, K, 64)
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


def test_the_update_follows_eq_11_for_both_networks(rng):
    """The step equals SGD on CE + the penalty, differentiated through the classifier and q alike."""
    x, y = rng.normal(size=(32, *SHAPE)).astype(np.float32), rng.integers(0, K, 32)
    clf = models.build_model("mlp", K, SHAPE, last_bias=False)
    q = models.build_model("mlp", K, SHAPE)
    model = SoftRegularizationModel(clf, q, soft_lambda=0.1, beta=2.0)
    model.compile(keras.optimizers.SGD(0.1))
    features = keras.Model(clf.inputs, clf.layers[-1].input)
    variables = clf.trainable_variables + q.trainable_variables
    with tf.GradientTape() as tape:
        z, logits, r = features(x, training=True), clf(x, training=True), tf.nn.softmax(q(x, training=True))
        onehot = tf.one_hot(y, K)
        loss = tf.reduce_mean(
            tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
            + soft_penalty(z, tf.nn.softmax(logits), r, onehot, 0.1, 2.0)
        )
    expected = [np.asarray(v) - 0.1 * g.numpy() for v, g in zip(variables, tape.gradient(loss, variables), strict=True)]
    logs = model.train_on_batch(x, y, return_dict=True)
    for v, e in zip(variables, expected, strict=True):
        np.testing.assert_allclose(np.asarray(v), e, atol=1e-6)
    assert logs["penalty"] > 0


@pytest.mark.parametrize(
    "make,match",
    [
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
