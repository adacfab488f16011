import keras
import numpy as np
import pytest
import tensorflow as tf

from limit_tf import inference, models


def _randomize_batch_norms(network, rng):
    """Statistics and affine weights far from their initial 0/1, so that a wrong fold shows."""
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for variable, draw in (
                (layer.moving_mean, lambda s: rng.normal(0.0, 0.5, s)),
                (layer.moving_variance, lambda s: rng.uniform(0.2, 3.0, s)),
                (layer.gamma, lambda s: rng.uniform(0.5, 1.5, s)),
                (layer.beta, lambda s: rng.normal(0.0, 0.5, s)),
            ):
                if variable is not None:
                    variable.assign(draw(variable.shape).astype(np.float32))


def _same_function(network, folded, x):
    folded.sync()
    expected = network(x, training=False).numpy()
    got = folded(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(
    "name,shape,options,norms",
    [
        ("mnist_cnn", (28, 28, 1), {}, 4),
        ("mnist_cnn", (28, 28, 1), {"hidden_bn": True}, 5),  # the reference q: a dense layer's batch norm too
        ("resnet34", (16, 16, 3), {}, 36),  # bias-free convolutions, shortcuts
        ("mlp", (28, 28, 1), {}, 0),
    ],
)
def test_every_batch_norm_of_the_architectures_folds_and_the_function_is_the_same(name, shape, options, norms, rng):
    network = models.build_model(name, 10, shape, **options)
    _randomize_batch_norms(network, rng)
    folded = inference.FoldedInference(network)
    assert folded.folded == norms
    assert (folded.model is network) == (norms == 0)
    if norms:
        kinds = {type(layer).__name__ for layer in folded.model.layers}
        assert not any("BatchNormalization" in kind for kind in kinds)
    _same_function(network, folded, rng.normal(size=(6, *shape)).astype(np.float32))


def test_sync_follows_the_networks_weights(rng):
    network = models.build_model("mnist_cnn", 10, (28, 28, 1))
    folded = inference.FoldedInference(network)
    x = rng.normal(size=(4, 28, 28, 1)).astype(np.float32)
    _same_function(network, folded, x)
    # Training moves every kind of weight: kernels, biases, batch-norm statistics, the unfolded dense layers.
    _randomize_batch_norms(network, rng)
    for layer in ("conv2", "fc1", "logits"):
        kernel = network.get_layer(layer).kernel
        kernel.assign(kernel + 0.1)
    before = network(x, training=False).numpy()
    assert not np.allclose(folded(x).numpy(), before, atol=1e-4)  # stale until synced
    _same_function(network, folded, x)


def test_only_pairs_that_are_one_layer_fold(rng):
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    a_bn = keras.layers.BatchNormalization(name="a_bn")(a)
    skip = keras.layers.Add(name="skip")([a, a_bn])  # a's output feeds something else too
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="b")(skip)
    b_bn = keras.layers.BatchNormalization(name="b_bn")(b)  # after an activation
    c = keras.layers.Conv2D(8, 1, name="c")(b_bn)
    c_bn = keras.layers.BatchNormalization(axis=1, name="c_bn")(c)  # normalizes rows, not channels
    d = keras.layers.Conv2D(5, 1, use_bias=False, name="d")(c_bn)
    d_bn = keras.layers.BatchNormalization(center=False, scale=False, name="d_bn")(d)  # folds
    e = keras.layers.Dense(3, name="e")(keras.layers.GlobalAveragePooling2D()(d_bn))
    e_bn = keras.layers.BatchNormalization(name="e_bn")(e)  # folds: the model's output
    network = keras.Model(inputs, e_bn)
    _randomize_batch_norms(network, rng)
    assert [(layer.name, bn.name) for layer, bn in inference.foldable_pairs(network)] == [("d", "d_bn"), ("e", "e_bn")]
    folded = inference.FoldedInference(network)
    assert folded.folded == 2
    _same_function(network, folded, rng.normal(size=(3, 8, 8, 3)).astype(np.float32))


def test_networks_it_does_not_clone_run_as_they_are(rng):
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(2, 3)
            self.bn = keras.layers.BatchNormalization()

        def call(self, x, training=False):
            return self.bn(self.conv(x), training=training)

    subclassed = Subclassed()
    subclassed(np.zeros((1, 5, 5, 1), np.float32))
    folded = inference.FoldedInference(subclassed)
    assert folded.folded == 0 and folded.model is subclassed
    folded.sync()  # a no-op

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        network = models.build_model("mnist_cnn", 10, (28, 28, 1))
    # Its variables are mirrored: folding would copy them into one device's variables, so it is left alone.
    assert inference.FoldedInference(network).model is network


def test_a_network_that_cannot_be_cloned_runs_unfolded_with_a_warning(rng, caplog):
    class Apply(keras.layers.Layer):  # a function argument: Keras cannot write its config
        def __init__(self, fn, **kwargs):
            super().__init__(**kwargs)
            self.fn = fn

        def call(self, x):
            return self.fn(x)

    inputs = keras.Input((5, 5, 1))
    outputs = keras.layers.BatchNormalization()(keras.layers.Conv2D(2, 3)(Apply(lambda x: 2.0 * x)(inputs)))
    network = keras.Model(inputs, outputs)
    _randomize_batch_norms(network, rng)
    with caplog.at_level("WARNING"):
        folded = inference.FoldedInference(network)
    assert folded.folded == 0 and folded.model is network
    assert any("Batch norm not folded for inference (NotImplementedError" in r.getMessage() for r in caplog.records)
    _same_function(network, folded, rng.normal(size=(4, 5, 5, 1)).astype(np.float32))
