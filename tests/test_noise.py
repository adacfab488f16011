import numpy as np
import pytest

from limit_tf import noise


@pytest.mark.parametrize("name", ["uniform", "symmetric", "next_class"])
@pytest.mark.parametrize("k", [2, 3, 10, 100])
def test_rows_sum_to_one(name, k):
    t = noise.transition_matrix(name, k, 0.37)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-12)
    assert t.min() >= 0


@pytest.mark.parametrize(
    "name,dataset", [("pair", "cifar10"), ("asymmetric", "mnist"), ("asymmetric", "cifar10"), ("none", "mnist")]
)
def test_named_ten_class_models_flip_the_papers_classes(name, dataset):
    rate = 0.0 if name == "none" else 0.45
    t = noise.transition_matrix(name, 10, rate, dataset)
    flips = {
        "pair": noise.CIFAR10_PAIR_FLIPS,
        "asymmetric": noise.MNIST_PATRINI_FLIPS if dataset == "mnist" else noise.CIFAR10_PATRINI_FLIPS,
        "none": {},
    }[name]
    expected = np.eye(10)
    for source, target in flips.items():
        expected[source, source], expected[source, target] = 1 - rate, rate
    np.testing.assert_allclose(t, expected)
    if name == "pair":
        assert t[9, 1] == pytest.approx(0.45) and t[3, 5] == pytest.approx(0.45)  # truck->automobile, cat->dog


def test_uniform_never_keeps_label_on_corruption_and_symmetric_may():
    u = noise.uniform_matrix(4, 0.6)
    assert u[0, 0] == pytest.approx(0.4)
    assert u[0, 1] == pytest.approx(0.2)
    s = noise.symmetric_matrix(4, 0.6)
    assert s[0, 0] == pytest.approx(0.4 + 0.15)
    assert noise.expected_noise_rate(s) == pytest.approx(0.6 * 3 / 4)


@pytest.mark.parametrize(
    "name,k,rate", [("uniform", 10, 0.8), ("uniform", 10, 0.5), ("symmetric", 10, 0.4), ("next_class", 5, 0.3)]
)
def test_realized_rate_matches_target(name, k, rate):
    n = 100_000
    clean = np.random.default_rng(1).integers(0, k, n)
    t = noise.transition_matrix(name, k, rate)
    result = noise.corrupt(clean, t, seed=7)
    target = noise.expected_noise_rate(t)
    std_err = np.sqrt(target * (1 - target) / n)
    assert abs(result.realized_rate - target) < 4 * std_err
    assert result.realized_rate == pytest.approx(result.mask.mean())
    np.testing.assert_array_equal(result.mask, result.labels != clean)


def test_corrupted_labels_follow_the_matrix_rows():
    k, n = 4, 200_000
    t = noise.validate_transition_matrix([[0.7, 0.1, 0.2, 0.0], [0.0, 1.0, 0.0, 0.0], [0.25] * 4, [0.0, 0.0, 0.5, 0.5]])
    clean = np.repeat(np.arange(k), n // k)
    noisy = noise.corrupt(clean, t, seed=3).labels
    for i in range(k):
        freq = np.bincount(noisy[clean == i], minlength=k) / (n // k)
        np.testing.assert_allclose(freq, t[i], atol=0.01)


def test_same_seed_same_labels_and_different_seed_different_labels():
    clean = np.random.default_rng(0).integers(0, 10, 5000)
    t = noise.uniform_matrix(10, 0.5)
    a, b, c = (noise.corrupt(clean, t, seed=s) for s in (11, 11, 12))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_corrupt_does_not_touch_global_numpy_state():
    np.random.seed(5)
    before = np.random.random()
    np.random.seed(5)
    noise.corrupt(np.arange(10) % 10, noise.uniform_matrix(10, 0.5), seed=1)
    assert np.random.random() == before


def test_pair_noise_touches_only_its_classes():
    clean = np.random.default_rng(0).integers(0, 10, 50_000)
    result = noise.corrupt(clean, noise.pair_matrix(10, 0.4), seed=0)
    flipped_from = set(np.unique(clean[result.mask]).tolist())
    assert flipped_from == {9, 2, 4, 3}  # truck, bird, deer, cat
    pairs = set(zip(clean[result.mask].tolist(), result.labels[result.mask].tolist(), strict=True))
    assert pairs == {(9, 1), (2, 0), (4, 7), (3, 5)}


def test_patrini_mnist_map():
    t = noise.asymmetric_matrix(10, 0.3, "mnist")
    for src, dst in {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}.items():
        assert t[src, dst] == pytest.approx(0.3)
    assert t[0, 0] == 1.0 and t[1, 1] == 1.0


def test_next_class_wraps_around():
    t = noise.next_class_matrix(3, 0.2)
    assert t[2, 0] == pytest.approx(0.2)


@pytest.mark.parametrize(
    "matrix,match",
    [
        ([[0.5, 0.4], [0.0, 1.0]], "row 0 sums to 0.9"),
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], r"shape \(2, 3\)"),
        ([[1.5, -0.5], [0.0, 1.0]], r"T\[0, 0\] = 1.5"),
        ([[np.nan, 1.0], [0.0, 1.0]], "NaN"),
    ],
)
def test_bad_matrices_are_rejected(matrix, match):
    with pytest.raises(ValueError, match=match):
        noise.validate_transition_matrix(matrix)


def test_matrix_size_must_match_classes():
    with pytest.raises(ValueError, match=r"\(3, 3\) is required"):
        noise.validate_transition_matrix(np.eye(2), num_classes=3)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_rate_outside_range(rate):
    with pytest.raises(ValueError, match="outside the allowed range"):
        noise.uniform_matrix(10, rate)


def test_unknown_noise_name():
    with pytest.raises(ValueError, match="unknown noise model 'gaussian'"):
        noise.transition_matrix("gaussian", 10, 0.1)


def test_pair_noise_needs_ten_classes():
    with pytest.raises(ValueError, match="num_classes=100"):
        noise.transition_matrix("pair", 100, 0.2)


def test_labels_outside_matrix_range():
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        noise.corrupt(np.array([0, 1, 3]), np.eye(3), seed=0)
