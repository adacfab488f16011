import numpy as np
import pytest

from limit_tf import models


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize(
    "name,k,shape,trainable",
    [
        # The paper's MNIST CNN (Table 3), counted by hand:
        # conv 544 + 16,416 + 18,496 + 147,712, BN 2*(32+32+64+256), fc 32,896 + 1,290.
        ("mnist_cnn", 10, (28, 28, 1), 218_122),
        ("mlp", 10, (28, 28, 1), 784 * 512 + 512 + 3 * (512 * 512 + 512) + 512 * 10 + 10),
        # Pre-activation ResNet-20 (16/32/64), counted by hand: stem 432; stage 1 3 x (2 x 2,304 + 2 x 32);
        # stage 2 14,432 + 2 x 18,560; stage 3 57,536 + 2 x 73,984; final BN 128; logits 650.
        ("resnet20", 10, (32, 32, 3), 272_282),
        # The CIFAR ResNet-34 of the paper's reference code / kuangliu's (PyTorch counts).
        ("resnet34", 10, (32, 32, 3), 21_282_122),
        # torchvision's ResNet-50.
        ("resnet50", 1000, (224, 224, 3), 25_557_032),
    ],
)
def test_parameter_counts(name, k, shape, trainable):
    assert _trainable(models.build_model(name, k, shape)) == trainable


@pytest.mark.parametrize(
    "name,shape",
    [
        ("mnist_cnn", (28, 28, 1)),
        ("mlp", (28, 28, 1)),
        ("mlp", (7,)),
        ("resnet20", (8, 8, 3)),
        ("resnet20", (96, 96, 3)),  # a stride-2 stem above 64 pixels
        ("resnet20", (32, 32, 1)),
        ("resnet34", (16, 16, 3)),
        ("resnet50", (64, 64, 3)),
    ],
)
def test_forward_pass(name, shape, rng):
    model = models.build_model(name, 7, shape)
    out = model(rng.normal(size=(2, *shape)).astype(np.float32), training=False)
    assert out.shape == (2, 7)
    assert np.all(np.isfinite(np.asarray(out)))


def test_mnist_cnn_feature_map_sizes():
    model = models.mnist_cnn(10)
    shapes = {
        layer.name: layer.output.shape[1:]
        for layer in model.layers
        if layer.name.startswith("conv") and "pad" not in layer.name
    }
    assert shapes == {"conv1": (14, 14, 32), "conv2": (7, 7, 32), "conv3": (3, 3, 64), "conv4": (1, 1, 256)}


def test_pytorch_style_initialization_and_batch_norm():
    model = models.mnist_cnn(10)
    fc = model.get_layer("logits")
    bound = 1 / np.sqrt(128)
    kernel, bias = (np.asarray(w) for w in fc.weights)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.8 * bound
    assert np.abs(bias).max() <= bound and np.any(bias != 0)  # biases are not zero as in Keras
    bn = model.get_layer("bn1")
    assert bn.momentum == pytest.approx(0.9) and bn.epsilon == pytest.approx(1e-5)


def test_two_builds_share_structure_but_not_weights():
    a, b = models.build_model("mnist_cnn", 10, (28, 28, 1)), models.build_model("mnist_cnn", 10, (28, 28, 1))
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]
    assert not np.allclose(a.weights[0], b.weights[0])


def test_bias_free_last_layer():
    model = models.build_model("mnist_cnn", 10, (28, 28, 1), last_bias=False)
    assert len(model.get_layer("logits").weights) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'"):
        models.build_model("vgg16", 10, (32, 32, 3))
    with pytest.raises(ValueError, match="num_classes=1"):
        models.build_model("mlp", 1, (4,))


def test_fused_batch_norm_equals_keras_batch_norm(rng):
    """Same output, input/weight gradients and running mean as Keras' layer;
    running variance from the unbiased batch variance (PyTorch's rule)."""
    import keras
    import tensorflow as tf

    x = tf.constant(rng.normal(2.0, 3.0, size=(8, 5, 5, 6)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(8, 5, 5, 6)).astype(np.float32))
    settings = dict(momentum=0.9, epsilon=1e-5)
    fused, plain = models.FusedBatchNormalization(**settings), keras.layers.BatchNormalization(**settings)
    for layer in (fused, plain):
        layer.build(x.shape)
    plain.set_weights(fused.get_weights())
    fused.gamma.assign(rng.uniform(0.5, 2.0, 6).astype(np.float32))
    plain.gamma.assign(fused.gamma.numpy())
    results = []
    for layer in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        grads = tape.gradient(y, [x, layer.gamma, layer.beta], output_gradients=upstream)
        results.append((y.numpy(), [g.numpy() for g in grads]))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), atol=1e-6)
    n = 8 * 5 * 5
    batch_var = np.var(x.numpy().reshape(-1, 6), axis=0)
    np.testing.assert_allclose(fused.moving_variance.numpy(), 0.9 + 0.1 * batch_var * n / (n - 1), rtol=1e-5)
    np.testing.assert_allclose(plain.moving_variance.numpy(), 0.9 + 0.1 * batch_var, rtol=1e-5)
    # Inference and the frozen (training=False) path are Keras' own.
    np.testing.assert_allclose(
        fused(x, training=False).numpy(),
        (x.numpy() - fused.moving_mean.numpy()) / np.sqrt(fused.moving_variance.numpy() + 1e-5) * fused.gamma.numpy(),
        atol=1e-4,
    )


def test_builders_use_the_fused_layer():
    import keras

    layers = models.build_model("mnist_cnn", 10, (28, 28, 1)).layers
    bns = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 4 and all(isinstance(layer, models.FusedBatchNormalization) for layer in bns)


@pytest.mark.parametrize("shape", [(16, 7), (8, 5, 5, 6)], ids=["dense", "conv"])
def test_every_training_path_keeps_the_unbiased_running_variance(shape, rng):
    """The fused path (4-D) and Keras' path (2-D, and synchronized under a strategy) update alike."""
    import tensorflow as tf

    x = tf.constant(rng.normal(1.0, 2.0, size=shape).astype(np.float32))
    for synchronized in (False, True):
        layer = models.FusedBatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=synchronized)
        layer.build(x.shape)
        y = layer(x, training=True).numpy()
        values = x.numpy().reshape(-1, shape[-1])
        n = values.shape[0]
        np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * values.mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            layer.moving_variance.numpy(), 0.9 + 0.1 * values.var(axis=0) * n / (n - 1), rtol=1e-5
        )
        normalized = (values - values.mean(axis=0)) / np.sqrt(values.var(axis=0) + 1e-5)  # the biased batch variance
        np.testing.assert_allclose(y.reshape(-1, shape[-1]), normalized, atol=1e-4)


def test_architecture_names_agree_with_the_tensorflow_free_copy():
    from limit_tf import methods

    assert tuple(models.ARCHITECTURES) == methods.ARCHITECTURES
    assert methods.Q_ARCHITECTURE.choices == models.Q_CHOICES


def test_reference_q_network_has_one_batch_norm_more_on_mnist():
    clf = models.build_model("mnist_cnn", 10, (28, 28, 1))
    q = models.build_predictor("reference", "mnist_cnn", 10, (28, 28, 1))
    same = models.build_predictor("same", "mnist_cnn", 10, (28, 28, 1))
    names = lambda m: [layer.name for layer in m.layers]  # noqa: E731
    assert names(same) == names(clf)
    assert set(names(q)) - set(names(clf)) == {"fc1_bn", "fc1_relu"}
    assert _trainable(q) == _trainable(clf) + 2 * 128
    other = models.build_predictor("mlp", "mnist_cnn", 10, (28, 28, 1))
    assert names(other) == names(models.build_model("mlp", 10, (28, 28, 1)))
    assert (
        models.build_predictor("reference", "resnet34", 10, (32, 32, 3)).count_params()
        == models.build_model("resnet34", 10, (32, 32, 3)).count_params()
    )
    with pytest.raises(ValueError, match="unknown q architecture 'vgg'"):
        models.build_predictor("vgg", "mnist_cnn", 10, (28, 28, 1))


def test_whole_input_convolution_equals_keras_convolution(rng):
    """The matrix-product path (kernel as large as its input) gives Keras' outputs and gradients."""
    import keras
    import tensorflow as tf

    x = tf.constant(rng.normal(size=(5, 3, 3, 4)).astype(np.float32))
    ours, plain = models.Conv2D(6, 3), keras.layers.Conv2D(6, 3)
    for layer in (ours, plain):
        layer.build(x.shape)
    plain.set_weights(ours.get_weights())
    results = []
    for layer in (ours, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y**2)
        results.append((y.numpy(), [g.numpy() for g in tape.gradient(loss, [x, *layer.weights])]))
    assert results[0][0].shape == (5, 1, 1, 6)
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert ours._whole_input(x) and not ours._whole_input(tf.zeros((1, 5, 5, 4)))
    cnn = models.build_model("mnist_cnn", 10, (28, 28, 1))
    assert isinstance(cnn.get_layer("conv4"), models.Conv2D) and cnn.get_layer("conv4").kernel.shape == (3, 3, 64, 256)
