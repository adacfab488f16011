"""Every method of the table builds, trains, evaluates, saves and loads."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from limit_tf import builders, methods, models
from limit_tf.config import ExperimentConfig

K = 4
SHAPE = (6,)


@pytest.fixture
def tiny(rng):
    x = rng.normal(size=(64, *SHAPE)).astype(np.float32)
    y = rng.integers(0, K, 64)
    return x, y


@pytest.fixture
def ce_weights(tmp_path, tiny):
    model = builders.build_method(_ctx("ce"))
    model.fit(*tiny, batch_size=32, epochs=1, verbose=0)
    path = tmp_path / "best.weights.h5"
    model.save_weights(path)
    return str(path)


def _ctx(method, init_weights=None, train_inputs=None, **config):
    settings = {"workdir": "unused", "method": method, "architecture": "mlp", "beta": 1.0, **config}
    return builders.MethodContext(
        ExperimentConfig(**settings), K, SHAPE, init_weights=init_weights, train_inputs=train_inputs
    )


@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_each_method_fits_evaluates_saves_and_loads(method, tiny, ce_weights, tmp_path):
    x, y = tiny
    train_inputs = tf.data.Dataset.from_tensor_slices(x).batch(32)
    model = builders.build_method(_ctx(method, init_weights=ce_weights, train_inputs=train_inputs, predictor="laplace"))
    history = model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    logits = builders.classifier_of(model).predict(x, verbose=0)
    assert logits.shape == (64, K)
    accuracy = model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(np.mean(np.argmax(logits, axis=1) == y), abs=1e-6)
    assert (builders.predictor_of(model) is not None) == methods.get(method).predictor_network
    path = tmp_path / f"{method}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_fw_and_dmi_start_from_the_ce_model(tiny, ce_weights):
    reference = models.build_model("mlp", K, SHAPE)
    reference.load_weights(ce_weights)
    train_inputs = tf.data.Dataset.from_tensor_slices(tiny[0]).batch(32)
    for method in ("fw", "dmi"):
        model = builders.build_method(_ctx(method, init_weights=ce_weights, train_inputs=train_inputs))
        for a, b in zip(model.weights, reference.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_limit_gets_the_q_architecture_of_its_config():
    def q_layers(q_architecture):
        ctx = builders.MethodContext(
            ExperimentConfig(workdir="x", method="limit", q_architecture=q_architecture), 10, (28, 28, 1)
        )
        return [layer.name for layer in builders.build_method(ctx).predictor_network.layers]

    assert "fc1_bn" in q_layers("reference") and "fc1_bn" not in q_layers("same")
    assert "fc4" in q_layers("mlp")


def test_unknown_method_and_missing_init():
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        builders.build_method(builders.MethodContext(ExperimentConfig(workdir="x").replace(method="sgd"), K, SHAPE))
    with pytest.raises(ValueError, match="starts from a trained CE model"):
        builders.build_method(_ctx("dmi"))
