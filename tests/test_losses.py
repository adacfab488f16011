import keras
import numpy as np
import pytest
import tensorflow as tf

from limit_tf import losses, noise

LOGITS = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [-1.0, 3.0, 0.2], [1.0, -2.0, 0.5]], np.float32)
LABELS = np.array([0, 2, 1, 1])


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


P = _softmax(LOGITS.astype(np.float64))
Y = np.eye(3)[LABELS]
# Probabilities of exactly 1 and 0 in float32.
EXTREME_LOGITS = np.array([[200.0, -200.0, -200.0], [-200.0, 200.0, -200.0], [200.0, -200.0, -200.0]], np.float32)
EXTREME_LABELS = np.array([0, 0, 2])


def _value_and_grad(loss, logits, labels):
    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = loss(labels, logits)
    return float(value), tape.gradient(value, logits).numpy()


@pytest.mark.parametrize(
    "loss,expected",
    [
        (losses.MeanAbsoluteError(), np.abs(Y - P).sum(axis=1).mean()),
        (losses.MeanSquaredError(), ((Y - P) ** 2).sum(axis=1).mean()),
        (losses.GeneralizedCrossEntropy(0.7), ((1 - (P * Y).sum(axis=1) ** 0.7) / 0.7).mean()),
        (losses.GeneralizedCrossEntropy(1.0), (1 - (P * Y).sum(axis=1)).mean()),
        # SCE: alpha * -log s_y + beta * -sum_c s_c log y_c with log 0 = -4, i.e. 4 (1 - s_y).
        (
            losses.SymmetricCrossEntropy(0.1, 1.0),
            (0.1 * -np.log((P * Y).sum(axis=1)) + 1.0 * 4 * (1 - (P * Y).sum(axis=1))).mean(),
        ),
        (losses.SymmetricCrossEntropy(0.0, 0.5), (0.5 * -np.sum(P * np.log(np.clip(Y, np.exp(-4), 1)), axis=1)).mean()),
    ],
    ids=["mae", "mse", "gce0.7", "gce1", "sce", "sce_rce_only"],
)
def test_losses_against_hand_computed_values(loss, expected):
    value, _ = _value_and_grad(loss, LOGITS, LABELS)
    assert value == pytest.approx(expected, rel=1e-5)


def test_gce_agrees_with_keras_builtin():
    for q in (0.3, 0.7, 0.99):
        ours = losses.GeneralizedCrossEntropy(q)(LABELS, LOGITS)
        builtin = keras.losses.CategoricalGeneralizedCrossEntropy(q=q)(LABELS, tf.nn.softmax(LOGITS))
        assert float(ours) == pytest.approx(float(builtin), rel=1e-5)


def test_sce_refuses_negative_weights_and_round_trips_its_config():
    with pytest.raises(ValueError, match="SCE beta=-1 is not allowed"):
        losses.SymmetricCrossEntropy(0.1, -1)
    loss = losses.SymmetricCrossEntropy(0.01, 2.0)
    again = losses.SymmetricCrossEntropy.from_config(loss.get_config())
    assert (again.alpha, again.beta) == (0.01, 2.0)


def test_forward_correction_value_and_identity_case():
    t = noise.uniform_matrix(3, 0.3)
    value, _ = _value_and_grad(losses.ForwardCorrectedCrossentropy(t), LOGITS, LABELS)
    assert value == pytest.approx(-np.log((P @ t)[np.arange(4), LABELS]).mean(), rel=1e-5)
    identity, _ = _value_and_grad(losses.ForwardCorrectedCrossentropy(np.eye(3)), LOGITS, LABELS)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS)
    assert identity == pytest.approx(float(ce), rel=1e-5)


def test_dmi_value():
    value, _ = _value_and_grad(losses.DMILoss(), LOGITS, LABELS)
    assert value == pytest.approx(-np.log(abs(np.linalg.det(Y.T @ P)) + 1e-3), rel=1e-4)


def test_abs_det_gradient_matches_finite_differences_and_is_finite_when_singular():
    rng = np.random.default_rng(0)
    m = tf.constant(rng.normal(size=(4, 4)))
    with tf.GradientTape() as tape:
        tape.watch(m)
        value = losses.abs_det(m)
    grad = tape.gradient(value, m).numpy()
    det = np.linalg.det(m.numpy())
    np.testing.assert_allclose(float(value), abs(det), rtol=1e-9)
    np.testing.assert_allclose(grad, np.sign(det) * det * np.linalg.inv(m.numpy()).T, rtol=1e-6)
    singular = np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 3.0]])
    with tf.GradientTape() as tape:
        s = tf.constant(singular)
        tape.watch(s)
        value = losses.abs_det(s)
    grad = tape.gradient(value, s).numpy()
    assert float(value) == pytest.approx(0.0, abs=1e-9) and np.all(np.isfinite(grad))
    # The adjugate: the derivative along a direction that makes M nonsingular.
    eps = 1e-6
    direction = np.zeros((3, 3))
    direction[1, 1] = 1.0
    numeric = (abs(np.linalg.det(singular + eps * direction)) - 0) / eps
    assert float(np.sum(grad * direction)) == pytest.approx(numeric, rel=1e-4)


@pytest.mark.parametrize(
    "loss",
    [
        losses.MeanAbsoluteError(),
        losses.MeanSquaredError(),
        losses.GeneralizedCrossEntropy(0.7),
        losses.SymmetricCrossEntropy(0.1, 1.0),
        losses.ForwardCorrectedCrossentropy(np.eye(3)),
        losses.ForwardCorrectedCrossentropy(noise.next_class_matrix(3, 0.2)),
        losses.DMILoss(),
    ],
    ids=["mae", "mse", "gce", "sce", "fw_identity", "fw", "dmi"],
)
def test_probabilities_of_exactly_zero_or_one_stay_finite(loss):
    assert np.all(tf.nn.softmax(EXTREME_LOGITS).numpy() % 1 == 0)  # really 0 and 1
    value, grad = _value_and_grad(loss, EXTREME_LOGITS, EXTREME_LABELS)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.mark.parametrize(
    "loss", [losses.DMILoss(), losses.ForwardCorrectedCrossentropy(noise.uniform_matrix(3, 0.2))], ids=["dmi", "fw"]
)
def test_batch_with_a_missing_class_is_sane(loss):
    labels = np.array([0, 0, 1, 1])  # class 2 absent: Y^T P is singular
    value, grad = _value_and_grad(loss, LOGITS, labels)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_transition_matrix_estimate_recovers_known_matrix():
    rng = np.random.default_rng(0)
    k, per_class = 4, 2000
    t = noise.validate_transition_matrix(
        [[0.7, 0.1, 0.1, 0.1], [0.2, 0.6, 0.2, 0.0], [0.0, 0.3, 0.7, 0.0], [0.1, 0.1, 0.1, 0.7]]
    )
    # A model that knows the clean posterior: anchor points (clean posterior = e_i)
    # predict row T[i]; other examples predict mixtures of rows.
    clean_posteriors = np.concatenate(
        [np.eye(k)[np.full(per_class // 4, i)] for i in range(k)] + [rng.dirichlet(np.ones(k) * 0.5, size=per_class)]
    )
    probs = clean_posteriors @ t
    estimate = losses.estimate_transition_matrix(probs, percentile=97)
    np.testing.assert_allclose(estimate, t, atol=0.05)
    np.testing.assert_allclose(estimate.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: losses.ForwardCorrectedCrossentropy(np.eye(3)[:2]), r"shape \(2, 3\)"),
        (lambda: losses.ForwardCorrectedCrossentropy([[0.5, 0.2], [0.0, 1.0]]), "row 0 sums to 0.7"),
        (lambda: losses.GeneralizedCrossEntropy(0.0), "GCE q=0.0"),
        (lambda: losses.estimate_transition_matrix(np.ones(5)), r"shape \(5,\)"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_fw_matrix_of_wrong_size_for_model():
    with pytest.raises(ValueError, match="FW transition matrix is 4x4 but the model outputs 3 logits"):
        losses.ForwardCorrectedCrossentropy(np.eye(4))(LABELS, LOGITS)
