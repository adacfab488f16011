"""Label-noise models: transition matrices and label corruption.

Convention, used everywhere in this package::

    T[i, j] = P(noisy label = j | clean label = i)

so every row of ``T`` is a probability distribution and sums to 1. A clean
label ``i`` is replaced by a label drawn from row ``i``; an example is
*corrupted* when the drawn label differs from the clean one. The expected
noise rate for a clean-label prior ``pi`` is ``sum_i pi_i (1 - T[i, i])``.

Named noise models (see ``../shared/DESIGN.md`` section 4):

- ``uniform``: with probability ``rate`` the label becomes a uniformly random
  *different* class (the paper's "uniform" noise; ``rate`` is the expected
  fraction of wrong labels).
- ``symmetric``: with probability ``rate`` the label is redrawn uniformly
  from *all* classes, so it may keep its value (expected wrong fraction
  ``rate * (K - 1) / K``). Papers mix the two up; here they are separate.
- ``pair``: the paper's CIFAR-10 pair noise (after Xu et al., 2019): with
  probability ``rate`` truck -> automobile, bird -> airplane,
  deer -> horse, cat -> dog. Other classes are untouched.
- ``asymmetric``: Patrini et al. (2017)'s class-dependent maps: on MNIST
  2 -> 7, 3 -> 8, 5 <-> 6, 7 -> 1; on CIFAR-10 truck -> automobile,
  bird -> airplane, deer -> horse, cat <-> dog.
- ``next_class``: pair flips ``i -> (i + 1) mod K`` with probability ``rate``.
- any user matrix, checked by :func:`validate_transition_matrix`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

# CIFAR-10 class indices: airplane 0, automobile 1, bird 2, cat 3, deer 4,
# dog 5, frog 6, horse 7, ship 8, truck 9.
CIFAR10_PAIR_FLIPS: Mapping[int, int] = {9: 1, 2: 0, 4: 7, 3: 5}
CIFAR10_PATRINI_FLIPS: Mapping[int, int] = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
MNIST_PATRINI_FLIPS: Mapping[int, int] = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}

_ROW_SUM_TOLERANCE = 1e-6


def _check_rate(rate: float, *, upper: float = 1.0) -> float:
    rate = float(rate)
    if not (0.0 <= rate < upper) or np.isnan(rate):
        raise ValueError(f"noise rate {rate!r} is outside the allowed range [0, {upper:g}).")
    return rate


def _check_num_classes(num_classes: int) -> int:
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} is not allowed: it must be an integer >= 2.")
    return int(num_classes)


def validate_transition_matrix(matrix, num_classes: int | None = None) -> np.ndarray:
    """Checks that ``matrix`` is a label-noise transition matrix.

    Args:
      matrix: array-like of shape (K, K) with ``T[i, j] = P(noisy=j | clean=i)``.
      num_classes: if given, the required K.

    Returns:
      The matrix as a float64 numpy array.

    Raises:
      ValueError: the matrix is not square, has the wrong size, has negative
        or non-finite entries, or a row that does not sum to 1.
    """
    t = np.asarray(matrix, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 2:
        raise ValueError(f"transition matrix has shape {t.shape}: a square (K, K) matrix with K >= 2 is required.")
    if num_classes is not None and t.shape[0] != num_classes:
        raise ValueError(
            f"transition matrix has shape {t.shape}: ({num_classes}, {num_classes}) is required "
            f"for {num_classes} classes."
        )
    if not np.all(np.isfinite(t)):
        raise ValueError("transition matrix has NaN or infinite entries: all entries must be in [0, 1].")
    if np.any(t < 0) or np.any(t > 1):
        bad = np.argwhere((t < 0) | (t > 1))[0]
        raise ValueError(f"transition matrix entry T[{bad[0]}, {bad[1]}] = {t[bad[0], bad[1]]:g} is not in [0, 1].")
    sums = t.sum(axis=1)
    bad_rows = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE)
    if bad_rows.size:
        row = int(bad_rows[0])
        raise ValueError(
            f"transition matrix row {row} sums to {sums[row]:.6g}: every row must sum to 1 "
            "(T[i, j] = P(noisy = j | clean = i))."
        )
    return t


def uniform_matrix(num_classes: int, rate: float) -> np.ndarray:
    """The paper's uniform noise: a wrong label, uniformly among the others.

    ``T = (1 - rate) I + rate / (K - 1) (1 - I)``; ``rate`` is the expected
    fraction of corrupted labels, in ``[0, 1)``.
    """
    k = _check_num_classes(num_classes)
    rate = _check_rate(rate)
    t = np.full((k, k), rate / (k - 1))
    np.fill_diagonal(t, 1.0 - rate)
    return t


def symmetric_matrix(num_classes: int, rate: float) -> np.ndarray:
    """Symmetric noise: with probability ``rate`` redraw from all K classes.

    ``T = (1 - rate) I + rate / K``. The redrawn label may equal the clean
    one, so the expected corrupted fraction is ``rate (K - 1) / K``.
    """
    k = _check_num_classes(num_classes)
    rate = _check_rate(rate)
    t = np.full((k, k), rate / k)
    t[np.diag_indices(k)] += 1.0 - rate
    return t


def flip_matrix(num_classes: int, rate: float, flips: Mapping[int, int]) -> np.ndarray:
    """Class-dependent flips: clean ``i`` becomes ``flips[i]`` with prob. ``rate``.

    Classes absent from ``flips`` are never corrupted.
    """
    k = _check_num_classes(num_classes)
    rate = _check_rate(rate)
    t = np.eye(k)
    for src, dst in flips.items():
        if not (0 <= src < k and 0 <= dst < k) or src == dst:
            raise ValueError(f"flip {src} -> {dst} is not allowed for {k} classes.")
        t[src, src] = 1.0 - rate
        t[src, dst] = rate
    return t


def pair_matrix(num_classes: int, rate: float) -> np.ndarray:
    """The paper's CIFAR-10 pair noise (truck->automobile, bird->airplane,
    deer->horse, cat->dog), defined for 10 classes only."""
    if num_classes != 10:
        raise ValueError(
            f"noise 'pair' is defined for CIFAR-10's 10 classes, not num_classes={num_classes}; "
            "use 'next_class' for other datasets."
        )
    return flip_matrix(10, rate, CIFAR10_PAIR_FLIPS)


def next_class_matrix(num_classes: int, rate: float) -> np.ndarray:
    """Pair flips to the next class: ``i -> (i + 1) mod K`` with prob. ``rate``."""
    k = _check_num_classes(num_classes)
    return flip_matrix(k, rate, {i: (i + 1) % k for i in range(k)})


def asymmetric_matrix(num_classes: int, rate: float, dataset: str = "mnist") -> np.ndarray:
    """Patrini et al. (2017)'s asymmetric noise for MNIST-like or CIFAR-10 data.

    Args:
      num_classes: must be 10.
      rate: flip probability for the classes in the map, in ``[0, 1)``.
      dataset: ``"mnist"`` (also used for Fashion-MNIST) or ``"cifar10"``.
    """
    maps = {"mnist": MNIST_PATRINI_FLIPS, "fashion_mnist": MNIST_PATRINI_FLIPS, "cifar10": CIFAR10_PATRINI_FLIPS}
    if dataset not in maps:
        raise ValueError(f"asymmetric noise has no map for dataset {dataset!r}; allowed: {sorted(maps)}.")
    if num_classes != 10:
        raise ValueError(f"asymmetric noise is defined for 10 classes, not num_classes={num_classes}.")
    return flip_matrix(10, rate, maps[dataset])


def no_noise_matrix(num_classes: int, rate: float = 0.0) -> np.ndarray:
    """The identity: no label is changed (``rate`` must be 0)."""
    if rate:
        raise ValueError(f"noise 'none' takes no rate, got noise rate {rate!r}; use 0.")
    return np.eye(_check_num_classes(num_classes))


# Name -> builder(num_classes, rate, dataset). The runner's --noise flag
# chooses from these keys.
NOISE_MODELS: Mapping[str, Callable[[int, float, str], np.ndarray]] = {
    "none": lambda k, rate, dataset: no_noise_matrix(k, rate),
    "uniform": lambda k, rate, dataset: uniform_matrix(k, rate),
    "symmetric": lambda k, rate, dataset: symmetric_matrix(k, rate),
    "pair": lambda k, rate, dataset: pair_matrix(k, rate),
    "asymmetric": lambda k, rate, dataset: asymmetric_matrix(k, rate, dataset),
    "next_class": lambda k, rate, dataset: next_class_matrix(k, rate),
}


def transition_matrix(name: str, num_classes: int, rate: float, dataset: str = "mnist") -> np.ndarray:
    """Builds a named noise model's transition matrix.

    Args:
      name: one of :data:`NOISE_MODELS`.
      num_classes: K.
      rate: the noise rate in ``[0, 1)``.
      dataset: which class map ``asymmetric`` uses.

    Returns:
      The validated (K, K) matrix.
    """
    if name not in NOISE_MODELS:
        raise ValueError(f"unknown noise model {name!r}; allowed: {', '.join(NOISE_MODELS)}.")
    return validate_transition_matrix(NOISE_MODELS[name](num_classes, rate, dataset), num_classes)


def expected_noise_rate(matrix, class_prior=None) -> float:
    """Expected fraction of corrupted labels, ``sum_i pi_i (1 - T[i, i])``.

    Args:
      matrix: a transition matrix.
      class_prior: clean-label distribution (uniform if omitted).
    """
    t = validate_transition_matrix(matrix)
    prior = np.full(t.shape[0], 1.0 / t.shape[0]) if class_prior is None else np.asarray(class_prior, float)
    return float(np.sum(prior * (1.0 - np.diag(t))))


@dataclasses.dataclass(frozen=True)
class NoisyLabels:
    """Result of :func:`corrupt`.

    Attributes:
      labels: the noisy (observed) labels, int64, shape (N,).
      mask: bool, shape (N,): True where the noisy label differs from the clean one.
      realized_rate: ``mask.mean()``, the fraction of labels actually corrupted.
    """

    labels: np.ndarray
    mask: np.ndarray
    realized_rate: float


def corrupt(labels, matrix, seed: int | np.random.Generator) -> NoisyLabels:
    """Draws noisy labels: clean label ``i`` becomes ``j`` with prob. ``T[i, j]``.

    Deterministic for a given integer seed (or generator state); uses its own
    ``numpy.random.Generator`` and never touches global random state.

    Args:
      labels: clean integer labels in ``[0, K)``, shape (N,).
      matrix: (K, K) transition matrix, ``T[i, j] = P(noisy=j | clean=i)``.
      seed: an integer seed or a ``numpy.random.Generator``.

    Returns:
      :class:`NoisyLabels` with the noisy labels, the corruption mask and the
      realized noise rate.
    """
    t = validate_transition_matrix(matrix)
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels have shape {y.shape}: a 1-D array of integer class ids is required.")
    if y.size and (y.min() < 0 or y.max() >= t.shape[0]):
        raise ValueError(f"labels span [{y.min()}, {y.max()}]: they must lie in [0, {t.shape[0]}) for this matrix.")
    y = y.astype(np.int64)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    cdf = np.cumsum(t, axis=1)
    cdf[:, -1] = 1.0  # guard against rounding: the last bin always closes the row
    u = rng.random(y.shape[0])
    noisy = (u[:, None] >= cdf[y]).sum(axis=1).astype(np.int64)
    mask = noisy != y
    rate = float(mask.mean()) if mask.size else 0.0
    return NoisyLabels(labels=noisy, mask=mask, realized_rate=rate)
