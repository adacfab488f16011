"""Training under MirroredStrategy on two logical CPU devices equals one device.

The pattern of Keras' own ``distribute_test.py``: the same steps on one device
and on two replicas (each taking half of the global batch), then compare the
weights. Batch norm uses synchronized statistics under the strategy (the
builders' ``synchronized_bn=True``), so the replicas normalize with the
global batch's moments, as one device does; per-replica statistics are
measured separately.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from limit_tf import LimitModel, distribute, losses, models

K = 5
GLOBAL_BATCH = 32


def _strategy():
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest.py must split the CPU into two logical devices"
    return distribute.get_strategy("mirrored", ("/cpu:0", "/cpu:1"))


def _net(synchronized_bn):
    inputs = keras.Input((12, 12, 1))
    # No bias before batch norm: its gradient is zero up to rounding, which Adam
    # would blow up into full-size steps that differ between runs.
    x = keras.layers.Conv2D(4, 3, strides=2, use_bias=False)(inputs)
    # The package's batch norm: fused on one device, Keras' synchronized path under the
    # strategy; both keep PyTorch's (unbiased) running variance, so the weights compared
    # below include equal running statistics.
    x = models.FusedBatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=synchronized_bn)(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.Dense(K)(keras.layers.Flatten()(x)))


def _build(method, synchronized_bn, weights=None):
    if method == "ce":
        model = _net(synchronized_bn)
        model.compile(
            keras.optimizers.Adam(1e-2),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    elif method == "mae":
        model = _net(synchronized_bn)
        model.compile(keras.optimizers.Adam(1e-2), losses.MeanAbsoluteError(), metrics=["accuracy"])
    else:
        model = LimitModel(_net(synchronized_bn), _net(synchronized_bn), predictor=method, beta=3.0)
        model.compile(keras.optimizers.Adam(1e-2))
    if weights is not None:
        model.set_weights(weights)
    return model


def _data(rng, steps=4):
    x = rng.normal(size=(GLOBAL_BATCH * steps, 12, 12, 1)).astype(np.float32)
    y = rng.integers(0, K, GLOBAL_BATCH * steps)
    return x, y


@pytest.mark.parametrize("method", ["gaussian", "laplace", "ce", "mae"])
def test_two_replicas_take_the_same_steps_as_one_device(method, rng):
    x, y = _data(rng)
    single = _build(method, synchronized_bn=False)
    initial = single.get_weights()
    single_history = single.fit(x, y, batch_size=GLOBAL_BATCH, epochs=2, shuffle=False, verbose=0).history
    with _strategy().scope():
        mirrored = _build(method, synchronized_bn=True, weights=initial)
    mirrored_history = mirrored.fit(x, y, batch_size=GLOBAL_BATCH, epochs=2, shuffle=False, verbose=0).history
    for a, b in zip(single.get_weights(), mirrored.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Logged metrics are global values, not one replica's.
    for key in single_history:
        np.testing.assert_allclose(single_history[key], mirrored_history[key], rtol=1e-4, atol=1e-5)


def test_unsynchronized_batch_norm_differs_per_replica(rng):
    """Without synchronized statistics each replica normalizes with its half-batch:
    the difference is real (and bounded here), which is why the builders sync it."""
    x, y = _data(rng, steps=1)
    single = _build("laplace", synchronized_bn=False)
    initial = single.get_weights()
    single.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    with _strategy().scope():
        local_bn = _build("laplace", synchronized_bn=False, weights=initial)
    local_bn.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    diff = max(np.abs(a - b).max() for a, b in zip(single.get_weights(), local_bn.get_weights(), strict=True))
    assert 1e-5 < diff < 0.1


def test_strategies_are_reused_within_a_process():
    assert _strategy() is distribute.get_strategy("mirrored", ("/cpu:0", "/cpu:1"))


def test_runner_under_mirrored_strategy_equals_one_device(tmp_path, fake_data):
    """The paper CNN (fused batch norm on one device, synchronized under the strategy) through the runner."""
    from limit_tf import train
    from tests.conftest import tiny_config

    runs = {}
    for strategy, devices in (("default", ()), ("mirrored", ("/cpu:0", "/cpu:1"))):
        config = tiny_config(
            tmp_path / strategy,
            fake_data,
            architecture="mnist_cnn",
            method="limit",
            predictor="laplace",
            beta=1.0,
            num_train_examples=128,
            learning_rate=1e-4,
            strategy=strategy,
            devices=devices,
        )
        runs[strategy] = (train.run_experiment(config), keras.models.load_model(tmp_path / strategy / "best.keras"))
    (single, single_model), (mirrored, mirrored_model) = runs["default"], runs["mirrored"]
    for key in ("best_epoch", "epochs_run", "test_accuracy", "best_val_accuracy"):
        assert single[key] == pytest.approx(mirrored[key], abs=1e-6), key
    compared = 0
    for a, b in zip(single_model.weights, mirrored_model.weights, strict=True):
        if "moving_variance" in a.path or "gamma" in a.path or "kernel" in a.path:
            # Biases before a batch norm have a zero true gradient: Adam turns their rounding noise
            # into lr-sized steps, which the running means follow. Everything else must agree.
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-5, err_msg=a.path)
            compared += 1
    assert compared >= 20


def test_paper_cnn_builds_with_synchronized_bn():
    model = models.build_model("mnist_cnn", 10, (28, 28, 1), synchronized_bn=True)
    assert all(layer.synchronized for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))


def test_a_device_that_does_not_exist_is_refused_not_replaced_by_the_cpu():
    from limit_tf.config import ConfigError

    with pytest.raises(
        ConfigError, match=r"--devices=/gpu:0,/cpu:0: /gpu:0 does not exist on this machine; available: CPU:0"
    ):
        distribute.check_devices(("/gpu:0", "/cpu:0"))
    distribute.check_devices(("/cpu:0", "/device:CPU:1", "CPU:1"))
