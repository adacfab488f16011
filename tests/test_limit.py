"""Tests of LimitModel against the paper's equations, computed independently."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from limit_tf import LimitModel, models
from limit_tf import limit as limit_lib

K = 5


def _linear(input_dim, k=K, use_bias=True, name=None):
    inputs = keras.Input((input_dim,))
    return keras.Model(inputs, keras.layers.Dense(k, use_bias=use_bias)(inputs), name=name)


def _cnn():
    """A small conv + batch-norm network: cheap to trace, same kinds of layers as the paper's."""
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 4, strides=4)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.Dense(K)(keras.layers.Flatten()(x)))


def _pair(factory, **kwargs):
    """Two LimitModels with identical initial weights."""
    a = LimitModel(factory(), factory(), **kwargs)
    b = LimitModel(factory(), factory(), **kwargs)
    b.set_weights(a.get_weights())
    return a, b


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _images(rng, n=32):
    return rng.normal(size=(n, 28, 28, 1)).astype(np.float32)


@pytest.mark.parametrize("predictor", ["gaussian", "laplace", "ce"])
@pytest.mark.parametrize("sample", [False, True])
def test_classifier_update_does_not_depend_on_labels(predictor, sample, rng):
    a, b = _pair(_cnn, predictor=predictor, beta=3.0, sample=sample, sigma_q=0.1)
    for m in (a, b):
        m.compile(keras.optimizers.Adam(1e-2))
    x = _images(rng)
    y1 = rng.integers(0, K, 32)
    y2 = (y1 + 1 + rng.integers(0, K - 1, 32)) % K  # every label different
    a.train_on_batch(x, y1)
    b.train_on_batch(x, y2)
    for wa, wb in zip(a.classifier.weights, b.classifier.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))
    q_diff = max(
        np.abs(np.asarray(wa) - np.asarray(wb)).max()
        for wa, wb in zip(a.predictor_network.trainable_weights, b.predictor_network.trainable_weights, strict=True)
    )
    assert q_diff > 1e-4  # q does see the labels


def _hand_q_gradient(x, y_one_hot, p, w, bias, predictor, beta):
    """d/dW, d/db of mean_i [fit_i + beta ||p_i - r_i||^2] for a linear q, by hand."""
    r = _softmax(x @ w + bias)
    d_r = -2.0 * (y_one_hot - r) if predictor == "gaussian" else -np.sign(y_one_hot - r)
    d_r = d_r - 2.0 * beta * (p - r)
    # Softmax Jacobian: dr_c/dz_j = r_c (delta_cj - r_j).
    d_z = r * (d_r - np.sum(d_r * r, axis=1, keepdims=True))
    n = x.shape[0]
    return x.T @ d_z / n, d_z.sum(axis=0) / n


@pytest.mark.parametrize("predictor", ["gaussian", "laplace"])
@pytest.mark.parametrize("beta", [0.0, 2.5])
def test_q_update_equals_hand_computed_gradient(predictor, beta, rng):
    d, n = 6, 40
    model = LimitModel(_linear(d), _linear(d), predictor=predictor, beta=beta)
    model.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(1.0))
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, K, n)
    wc, bc = (np.asarray(v, np.float64) for v in model.classifier.weights)
    wq, bq = (np.asarray(v, np.float64) for v in model.predictor_network.weights)
    p = _softmax(x @ wc + bc)
    grad_w, grad_b = _hand_q_gradient(x.astype(np.float64), np.eye(K)[y], p, wq, bq, predictor, beta)
    model.train_on_batch(x, y)
    new_w, new_b = (np.asarray(v) for v in model.predictor_network.weights)
    np.testing.assert_allclose(wq - new_w, grad_w, atol=2e-6)
    np.testing.assert_allclose(bq - new_b, grad_b, atol=2e-6)


def test_ce_predictor_fits_q_with_cross_entropy(rng):
    d, n = 4, 30
    model = LimitModel(_linear(d), _linear(d), predictor="ce", beta=0.0)
    model.compile(keras.optimizers.SGD(0.0), keras.optimizers.SGD(1.0))
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, K, n)
    wq, bq = (np.asarray(v, np.float64) for v in model.predictor_network.weights)
    r = _softmax(x @ wq + bq)
    model.train_on_batch(x, y)
    np.testing.assert_allclose(
        wq - np.asarray(model.predictor_network.weights[0]), x.T @ (r - np.eye(K)[y]) / n, atol=2e-6
    )


def test_classifier_update_equals_cross_entropy_against_q_soft_target(rng):
    model = LimitModel(_cnn(), _cnn(), predictor="gaussian", beta=1.0)
    model.compile(keras.optimizers.SGD(0.1))
    reference = _cnn()
    reference.set_weights(model.classifier.get_weights())
    x = _images(rng)
    y = rng.integers(0, K, 32)
    # The soft target, computed before the step from q in training mode (as train_step does).
    target = tf.stop_gradient(tf.nn.softmax(model.predictor_network(x, training=True)))
    with tf.GradientTape() as tape:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)(target, reference(x, training=True))
    grads = tape.gradient(loss, reference.trainable_variables)
    keras.optimizers.SGD(0.1).apply(grads, reference.trainable_variables)
    model.train_on_batch(x, y)
    for w_model, w_ref in zip(model.classifier.weights, reference.weights, strict=True):
        np.testing.assert_allclose(np.asarray(w_model), np.asarray(w_ref), atol=1e-6)


def _injected_gradients(model, x, steps):
    """Recovers the gradient w.r.t. the logits that the classifier received.

    With a bias-free linear classifier on x = I (one example per input
    unit) and SGD(lr=1), the update is dW = -g / B, so g = -B dW exactly.
    """
    n = x.shape[0]
    out = []
    for _ in range(steps):
        w_before = np.asarray(model.classifier.weights[0], np.float64)
        p = _softmax(x @ w_before)
        r = _softmax(np.asarray(model.predictor_network(x, training=True), np.float64))
        model.train_on_batch(x, np.zeros(n, np.int64))
        g = -n * (np.asarray(model.classifier.weights[0], np.float64) - w_before)
        out.append((g, p - r))
    return out


def test_without_sampling_the_injected_gradient_is_g_pred():
    n = 64
    model = LimitModel(_linear(n, use_bias=False), _linear(n), predictor="laplace", beta=1.0)
    model.compile(keras.optimizers.SGD(1.0), keras.optimizers.SGD(0.1))
    ((g, g_pred),) = _injected_gradients(model, np.eye(n, dtype=np.float32), 1)
    np.testing.assert_allclose(g, g_pred, atol=1e-5)


@pytest.mark.parametrize("predictor,excess_kurtosis", [("gaussian", 0.0), ("laplace", 3.0)])
def test_sampled_gradient_has_sigma_q_std_and_fresh_noise(predictor, excess_kurtosis):
    n, sigma = 400, 0.3
    model = LimitModel(_linear(n, use_bias=False), _linear(n), predictor=predictor, sample=True, sigma_q=sigma)
    model.compile(keras.optimizers.SGD(1.0), keras.optimizers.SGD(0.01))
    (g1, mu1), (g2, mu2) = _injected_gradients(model, np.eye(n, dtype=np.float32), 2)
    noise1, noise2 = (g1 - mu1).ravel(), (g2 - mu2).ravel()
    assert noise1.mean() == pytest.approx(0.0, abs=0.02)
    assert noise1.std() == pytest.approx(sigma, rel=0.05)  # 4000 draws: s.e. of the std ~1.1-2%
    assert stats.kurtosis(noise1) == pytest.approx(excess_kurtosis, abs=0.8)
    assert abs(np.corrcoef(noise1, noise2)[0, 1]) < 0.1  # fresh noise at the next step


@pytest.mark.parametrize("predictor", ["gaussian", "laplace"])
def test_sample_gradient_helper_statistics(predictor):
    mu = tf.zeros((20_000, 10))
    draws = limit_lib.sample_gradient(mu, predictor, tf.constant(0.1), tf.constant([1, 2])).numpy().ravel()
    assert draws.std() == pytest.approx(0.1, rel=0.02)
    again = limit_lib.sample_gradient(mu, predictor, tf.constant(0.1), tf.constant([1, 3])).numpy().ravel()
    assert not np.allclose(draws, again)


def test_warmup_freezes_classifier_then_releases_it(rng):
    model = LimitModel(_cnn(), _cnn(), predictor="laplace", beta=1.0, warmup_steps=6)
    model.compile(keras.optimizers.Adam(1e-2))
    x, y = _images(rng, 48), rng.integers(0, K, 48)
    clf_before = [np.asarray(w).copy() for w in model.classifier.trainable_weights]
    q_before = [np.asarray(w).copy() for w in model.predictor_network.trainable_weights]
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # 6 steps: the warm-up
    for before, after in zip(clf_before, model.classifier.trainable_weights, strict=True):
        np.testing.assert_array_equal(before, np.asarray(after))
    assert int(model.optimizer.iterations) == 0 and int(model.predictor_optimizer.iterations) == 6
    assert any(
        not np.allclose(b, np.asarray(a))
        for b, a in zip(q_before, model.predictor_network.trainable_weights, strict=True)
    )
    model.fit(x, y, batch_size=16, epochs=3, initial_epoch=2, verbose=0)
    assert int(model.optimizer.iterations) == 3
    assert any(
        not np.allclose(b, np.asarray(a)) for b, a in zip(clf_before, model.classifier.trainable_weights, strict=True)
    )


def test_the_first_step_after_warmup_is_adams_first_step(rng):
    """The warm-up leaves the classifier's optimizer as new: its first real step is Adam's first."""
    x, y = _images(rng, 16), rng.integers(0, K, 16)
    warm = LimitModel(_cnn(), _cnn(), predictor="gaussian", beta=1.0, warmup_steps=2)
    warm.compile(keras.optimizers.Adam(1e-2))
    warm.fit(x, y, batch_size=16, epochs=2, verbose=0)  # two frozen steps
    fresh = LimitModel(_cnn(), _cnn(), predictor="gaussian", beta=1.0)
    fresh.compile(keras.optimizers.Adam(1e-2))
    fresh.set_weights(warm.get_weights())  # the same networks, batch-norm statistics and q included
    before = [np.asarray(w).copy() for w in warm.classifier.trainable_weights]
    for model in (warm, fresh):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for b, w, f in zip(before, warm.classifier.trainable_weights, fresh.classifier.trainable_weights, strict=True):
        np.testing.assert_allclose(np.asarray(w) - b, np.asarray(f) - b, rtol=1e-4, atol=1e-7)


def test_init_copies_all_weights_of_source_into_q(rng, tmp_path):
    source = _cnn()
    source.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    source.fit(_images(rng, 32), rng.integers(0, K, 32), epochs=1, verbose=0)  # moves BN statistics too
    model = LimitModel(_cnn(), _cnn(), init_predictor_from=source)
    for w_q, w_src in zip(model.predictor_network.weights, source.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(w_q), np.asarray(w_src))
    assert not np.allclose(np.asarray(model.classifier.weights[0]), np.asarray(source.weights[0]))
    source.save_weights(tmp_path / "ce.weights.h5")
    from_file = LimitModel(_cnn(), _cnn(), init_predictor_from=tmp_path / "ce.weights.h5")
    np.testing.assert_array_equal(np.asarray(from_file.predictor_network.weights[-1]), np.asarray(source.weights[-1]))
    with pytest.raises(ValueError, match="shares no layer"):
        LimitModel(_cnn(), _cnn(), init_predictor_from=models.build_model("mlp", K, (28, 28, 1)))


def test_init_into_the_reference_q_copies_the_shared_layers_and_says_which_it_left(rng, tmp_path):
    shape = (28, 28, 1)
    source = models.build_model("mnist_cnn", K, shape)
    source.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    source.fit(_images(rng, 32), rng.integers(0, K, 32), epochs=1, verbose=0)
    source.save_weights(tmp_path / "ce.weights.h5")
    q = models.build_predictor("reference", "mnist_cnn", K, shape)
    model = LimitModel(models.build_model("mnist_cnn", K, shape), q)
    report = model.initialize_predictor(tmp_path / "ce.weights.h5")
    assert report["left"] == ["fc1_bn"]
    assert set(report["copied"]) == {layer.name for layer in source.layers if layer.weights}
    for name in report["copied"]:
        for a, b in zip(q.get_layer(name).weights, source.get_layer(name).weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


VARIANTS = [
    dict(predictor="gaussian"),
    dict(predictor="laplace", beta=10.0),
    dict(predictor="ce", beta=0.3),
    dict(predictor="gaussian", sample=True, sigma_q=0.03),
    dict(predictor="laplace", sample=True, sigma_q=0.1, warmup_steps=3),
]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_fit_evaluate_save_load_each_variant(options, rng, tmp_path):
    x, y = _images(rng, 40), rng.integers(0, K, 40)
    model = LimitModel(_cnn(), _cnn(), **options)
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0)
    assert {"loss", "accuracy", "q_loss", "q_fit", "q_penalty", "q_accuracy", "val_loss", "val_accuracy"} <= set(
        history.history
    )
    assert all(np.isfinite(v).all() for v in history.history.values())
    path = tmp_path / "limit.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, LimitModel) and loaded.predictor == model.predictor and loaded.beta == model.beta
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True)
    )


def test_metrics_report_each_term_as_computed_by_hand(rng):
    d, n, beta = 6, 40, 2.0
    model = LimitModel(_linear(d), _linear(d), predictor="laplace", beta=beta)
    model.compile(keras.optimizers.SGD(0.1))
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, K, n)
    wc, bc = (np.asarray(v, np.float64) for v in model.classifier.weights)
    wq, bq = (np.asarray(v, np.float64) for v in model.predictor_network.weights)
    a, p, r = x @ wc + bc, _softmax(x @ wc + bc), _softmax(x @ wq + bq)
    fit = np.abs(np.eye(K)[y] - r).sum(axis=1)
    penalty = beta * ((p - r) ** 2).sum(axis=1)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["q_fit"] == pytest.approx(fit.mean(), rel=1e-5)
    assert logs["q_penalty"] == pytest.approx(penalty.mean(), rel=1e-5)
    assert logs["q_loss"] == pytest.approx((fit + penalty).mean(), rel=1e-5)
    assert logs["loss"] == pytest.approx(-np.log(p[np.arange(n), y]).mean(), rel=1e-5)
    assert logs["accuracy"] == pytest.approx(np.mean(a.argmax(axis=1) == y))
    assert logs["q_accuracy"] == pytest.approx(np.mean(r.argmax(axis=1) == y))


def test_shared_optimizer_takes_one_step_over_both_networks(rng):
    model = LimitModel(_cnn(), _cnn(), predictor="laplace", beta=1.0)
    optimizer = keras.optimizers.Adam(1e-3)
    model.compile(optimizer, "shared")
    assert model.predictor_optimizer is model.optimizer
    separate = LimitModel(_cnn(), _cnn(), predictor="laplace", beta=1.0)
    separate.set_weights(model.get_weights())
    separate.compile(keras.optimizers.Adam(1e-3))
    x, y = _images(rng, 16), rng.integers(0, K, 16)
    model.train_on_batch(x, y)
    separate.train_on_batch(x, y)
    assert int(optimizer.iterations.numpy()) == 1
    # Adam is per-parameter: one optimizer over both networks equals one per network.
    for a, b in zip(model.get_weights(), separate.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_beta_is_a_variable_that_takes_effect_between_fits(rng):
    x, y = _images(rng, 16), rng.integers(0, K, 16)
    model = LimitModel(_cnn(), _cnn(), predictor="gaussian", beta=0.0)
    model.compile(keras.optimizers.Adam(1e-3))
    assert model.train_on_batch(x, y, return_dict=True)["q_penalty"] == 0.0
    model.beta = 5.0
    assert model.train_on_batch(x, y, return_dict=True)["q_penalty"] > 0.0


def test_jit_compiled_step_equals_the_plain_one(rng):
    x, y = _images(rng, 32), rng.integers(0, K, 32)
    # Without "+S": XLA's stateless RNG draws other (equally distributed) numbers.
    a, b = _pair(_cnn, predictor="laplace", beta=1.0)
    initial = a.get_weights()
    # SGD, not Adam: Adam turns the rounding differences of near-zero gradients into lr-sized steps.
    a.compile(keras.optimizers.SGD(0.1), jit_compile=True)
    b.compile(keras.optimizers.SGD(0.1), jit_compile=False)
    a.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    b.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    moved = max(float(np.abs(wa - wb0).max()) for wa, wb0 in zip(a.get_weights(), initial, strict=True))
    assert moved > 1e-3  # the steps did something
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, atol=1e-5)


class SubclassedNet(keras.Model):
    def __init__(self, k=K, **kwargs):
        super().__init__(**kwargs)
        self.flatten = keras.layers.Flatten()
        self.hidden = keras.layers.Dense(16, activation="relu")
        self.out = keras.layers.Dense(k)

    def call(self, x):
        return self.out(self.hidden(self.flatten(x)))


@pytest.mark.parametrize(
    "factory",
    [
        lambda: keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(K)]),
        lambda: SubclassedNet(),
        lambda: models.build_model("mlp", K, (28, 28, 1)),
    ],
    ids=["sequential", "subclassed", "functional"],
)
def test_accepts_any_user_classifier(factory, rng):
    model = LimitModel(factory(), factory(), predictor="laplace", beta=1.0, input_shape=(28, 28, 1))
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(_images(rng, 32), rng.integers(0, K, 32), batch_size=16, epochs=1, verbose=0)
    assert model.predict(_images(rng, 3), verbose=0).shape == (3, K)


def test_keras_callbacks(rng, tmp_path):
    x, y = _images(rng, 32), rng.integers(0, K, 32)
    model = LimitModel(_cnn(), _cnn(), predictor="laplace", beta=1.0)
    model.compile(keras.optimizers.Adam(1e-3))
    callbacks = [
        keras.callbacks.EarlyStopping("val_accuracy", patience=1, mode="max", restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(
            tmp_path / "best.weights.h5",
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
        ),
        keras.callbacks.TensorBoard(tmp_path / "tb"),
        keras.callbacks.BackupAndRestore(tmp_path / "backup"),
    ]
    model.fit(x, y, batch_size=16, epochs=3, validation_data=(x, y), callbacks=callbacks, verbose=0)
    assert (tmp_path / "best.weights.h5").is_file()
    assert any((tmp_path / "tb").rglob("events.out.tfevents*"))


def test_backup_and_restore_resumes_identically(rng, tmp_path):
    x, y = _images(rng, 48), rng.integers(0, K, 48)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    def run(callbacks):
        keras.utils.set_random_seed(7)
        model = LimitModel(_cnn(), _cnn(), predictor="laplace", beta=1.0, sample=True, sigma_q=0.1)
        model.compile(keras.optimizers.Adam(1e-3))
        model.fit(x, y, batch_size=16, epochs=4, shuffle=False, callbacks=callbacks, verbose=0)
        return model

    reference = run([])
    backup = keras.callbacks.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(KeyboardInterrupt):
        run([backup, Interrupt()])
    resumed = run([keras.callbacks.BackupAndRestore(tmp_path / "backup")])
    for a, b in zip(reference.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(predictor="student"), "predictor='student' is not allowed"),
        (dict(beta=-1.0), "beta=-1.0 is not allowed"),
        (dict(beta=float("nan")), "beta=nan"),
        (dict(sigma_q=-0.1), "sigma_q=-0.1 is not allowed"),
        (dict(sample=True, sigma_q=0.0), "with sample=True: it must be > 0"),
        (dict(warmup_steps=-2), "warmup_steps=-2"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LimitModel(_linear(3), _linear(3), **kwargs)


def test_structural_errors():
    net = _linear(3)
    with pytest.raises(ValueError, match="same object"):
        LimitModel(net, net)
    with pytest.raises(ValueError, match="same number of logits"):
        LimitModel(_linear(3, k=4), _linear(3, k=5))
    model = LimitModel(_linear(3), _linear(3))
    with pytest.raises(ValueError, match="does not take loss="):
        model.compile("adam", loss="mse")
    with pytest.raises(ValueError, match="beta=-3"):
        model.beta = -3
    unbuilt = LimitModel(SubclassedNet(), SubclassedNet())
    with pytest.raises(ValueError, match="pass input_shape="):
        unbuilt.compile("adam")


def test_paper_cnn_one_step_and_label_invariance(rng):
    paper_cnn = lambda: models.build_model("mnist_cnn", K, (28, 28, 1))  # noqa: E731
    a, b = _pair(paper_cnn, predictor="laplace", beta=10.0)
    for m in (a, b):
        m.compile(keras.optimizers.Adam(1e-3))
    x, y = _images(rng, 16), rng.integers(0, K, 16)
    a.train_on_batch(x, y)
    b.train_on_batch(x, (y + 1) % K)
    for wa, wb in zip(a.classifier.weights, b.classifier.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))
