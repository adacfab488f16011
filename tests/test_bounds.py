import math

import numpy as np
import pytest

from limit_tf import bounds


@pytest.mark.parametrize("p,k", [(p, k) for k in (3, 10, 100) for p in (0.0, 0.1, 0.5, 0.8, 0.89) if p <= (k - 1) / k])
def test_no_information_bound_equals_uniform_noise_rate(p, k):
    assert bounds.fano_lower_bound(0.0, num_classes=k, noise_rate=p) == pytest.approx(p, abs=1e-9)


def test_paper_example_one_bit_per_example():
    # Sec. 2.1: MNIST, 80% uniform noise, 1 bit of label noise per example -> at least 40.5% errors.
    assert bounds.fano_lower_bound(1.0, num_classes=10, noise_rate=0.8) == pytest.approx(0.405, abs=5e-4)


def test_bound_decreases_as_information_grows_and_reaches_zero():
    values = [bounds.fano_lower_bound(i, num_classes=10, noise_rate=0.8) for i in np.linspace(0, 3, 31)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False) if a > 0)
    h = bounds.uniform_noise_label_entropy(0.8, 10)
    assert bounds.fano_lower_bound(h, num_classes=10, noise_rate=0.8) == 0.0
    assert bounds.fano_lower_bound(h + 5.0, num_classes=10, noise_rate=0.8) == 0.0  # beyond H(y|x)


def test_bound_satisfies_the_inequality_with_equality():
    k, info = 10, 0.7
    h = bounds.uniform_noise_label_entropy(0.6, k)
    r0 = bounds.fano_lower_bound(info, num_classes=k, label_entropy=h)
    assert r0 * math.log2(k - 1) == pytest.approx(h - info - bounds.binary_entropy(r0), abs=1e-9)


def test_binary_case_remark_2():
    # k = 2: H(r) >= H(p) - I/n, so r0 = H^{-1}(H(p) - I/n) on [0, 1/2].
    assert bounds.fano_lower_bound(0.0, num_classes=2, noise_rate=0.3) == pytest.approx(0.3, abs=1e-9)
    r0 = bounds.fano_lower_bound(0.2, num_classes=2, noise_rate=0.3)
    assert bounds.binary_entropy(r0) == pytest.approx(bounds.binary_entropy(0.3) - 0.2, abs=1e-9)


def test_units_and_edge_cases():
    nats = bounds.fano_lower_bound(math.log(2), num_classes=10, noise_rate=0.8, unit="nats")
    assert nats == pytest.approx(bounds.fano_lower_bound(1.0, num_classes=10, noise_rate=0.8), abs=1e-9)
    assert bounds.fano_lower_bound(0.0, num_classes=10, noise_rate=0.0) == 0.0
    assert bounds.fano_lower_bound(0.0, num_classes=10, label_entropy=math.log2(10)) == pytest.approx(0.9)
    assert bounds.binary_entropy(0.0) == 0.0 and bounds.binary_entropy(0.5) == 1.0


def test_gradient_information_bound():
    assert bounds.gradient_information_bound(10, 1.0, 0.1) == pytest.approx(5 * math.log(1 + 1.0 / (10 * 0.01)))
    assert bounds.gradient_information_bound(10, 0.0, 0.1) == 0.0
    bits = bounds.gradient_information_bound(4, 2.0, 0.5, unit="bits")
    assert bits == pytest.approx(2 * math.log2(1 + 4 / (4 * 0.25)))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: bounds.fano_lower_bound(-1.0, num_classes=10, noise_rate=0.5), "info_per_example=-1.0"),
        (lambda: bounds.fano_lower_bound(0.0, num_classes=1, noise_rate=0.5), "num_classes=1"),
        (lambda: bounds.fano_lower_bound(0.0, num_classes=10, noise_rate=0.95), "noise_rate=0.95"),
        (lambda: bounds.fano_lower_bound(0.0, num_classes=10), "exactly one of"),
        (lambda: bounds.fano_lower_bound(0.0, num_classes=10, label_entropy=5.0), "label_entropy=5.0"),
        (lambda: bounds.fano_lower_bound(0.0, num_classes=10, noise_rate=0.5, unit="dits"), "unit='dits'"),
        (lambda: bounds.gradient_information_bound(0, 1.0, 1.0), "d=0"),
        (lambda: bounds.gradient_information_bound(3, 1.0, 0.0), "sigma=0.0"),
        (lambda: bounds.gradient_information_bound(3, -1.0, 1.0), "L=-1.0"),
    ],
)
def test_invalid_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_figure_2_plots_the_bound_per_noise_rate(tmp_path):
    fig = bounds.figure2(noise_rates=(0.2, 0.8), max_info=3.0)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["p = 0.2", "p = 0.8"]
    for line, p in zip(lines, (0.2, 0.8), strict=True):
        info, r0 = line.get_data()
        assert r0[0] == pytest.approx(p, abs=1e-6)  # no information: r0 = p
        assert r0[150] == pytest.approx(bounds.fano_lower_bound(info[150], num_classes=10, noise_rate=p), abs=1e-9)
        assert all(np.diff(r0) <= 1e-12)  # more information, lower bound
    path = bounds.plot_figure2(tmp_path / "figure2.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
