"""The paper's information bounds (Sec. 2, Theorem 2.1 / Remarks 1-3; Proposition 3.1).

Theorem 2.1 with Remark 1: a training algorithm whose weights hold
``I = I(w; y | x)`` of label information makes, on a training set of ``n``
examples with ``k`` classes, an expected training error rate ``r`` with::

    r >= (H(y | x) - I / n - H(r)) / log(k - 1)

The bound ``r0`` is the smallest ``r`` in ``[0, (k-1)/k]`` satisfying it. For
uniform noise ``p``, ``H(y | x) = H(p) + p log(k - 1)`` and ``r0 = p`` at
``I = 0`` (Remark 3). For ``k = 2`` the inequality reads ``H(r) >= H(y | x) -
I / n`` (Remark 2). Both sides are monotone in ``r`` on that interval, so
``r0`` is found by bracketed root finding (Brent), not a grid.

Proposition 3.1: if ``g = mu + eps`` with ``eps ~ N(0, sigma^2 I_d)`` and
``E ||mu||^2 <= L^2``, then ``I(g; y | x, g_<t) <= d/2 log(1 + L^2 / (d sigma^2))``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

UNITS = {"bits": 2.0, "nats": math.e}


def _log(x: float, unit: str) -> float:
    return math.log(x) / math.log(UNITS[unit])


def _check_unit(unit: str) -> None:
    if unit not in UNITS:
        raise ValueError(f"unit={unit!r} is not allowed; allowed: {', '.join(UNITS)}.")


def binary_entropy(r: float, unit: str = "bits") -> float:
    """``H(r) = -r log r - (1 - r) log(1 - r)`` (0 at r = 0 and r = 1)."""
    _check_unit(unit)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"r={r!r} is not a probability: it must be in [0, 1].")
    return sum(-q * _log(q, unit) for q in (r, 1.0 - r) if q > 0)


def uniform_noise_label_entropy(noise_rate: float, num_classes: int, unit: str = "bits") -> float:
    """``H(y | x) = H(p) + p log(k - 1)`` for uniform noise to a different class (Remark 3)."""
    _check_classes(num_classes)
    if not 0.0 <= noise_rate <= (num_classes - 1) / num_classes:
        raise ValueError(
            f"noise_rate={noise_rate!r} is not allowed: it must be in [0, (k-1)/k] = [0, {(num_classes - 1) / num_classes:g}]."
        )
    return binary_entropy(noise_rate, unit) + noise_rate * _log(num_classes - 1, unit)


def _check_classes(num_classes: int) -> None:
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} is not allowed: it must be an integer >= 2.")


def fano_lower_bound(
    info_per_example: float,
    *,
    num_classes: int,
    label_entropy: float | None = None,
    noise_rate: float | None = None,
    unit: str = "bits",
) -> float:
    """The smallest training error rate ``r0`` that Theorem 2.1 allows.

    Args:
      info_per_example: ``I(w; y | x) / n``, label information in the weights
        per training example (>= 0), in ``unit``.
      num_classes: ``k`` >= 2.
      label_entropy: ``H(y | x)`` per example in ``unit`` (in ``[0, log k]``).
      noise_rate: instead of ``label_entropy``: uniform noise ``p`` (a wrong
        label, uniformly among the other ``k - 1``), so ``H(y | x) = H(p) + p log(k-1)``.
      unit: ``"bits"`` or ``"nats"``.

    Returns:
      ``r0`` in ``[0, (k-1)/k]``; 0 when the information covers all of ``H(y | x)``.
    """
    _check_unit(unit)
    _check_classes(num_classes)
    if (label_entropy is None) == (noise_rate is None):
        raise ValueError("give exactly one of label_entropy= and noise_rate=.")
    if not (math.isfinite(info_per_example) and info_per_example >= 0):
        raise ValueError(f"info_per_example={info_per_example!r} is not allowed: it must be a finite number >= 0.")
    k = int(num_classes)
    if label_entropy is None:
        label_entropy = uniform_noise_label_entropy(noise_rate, k, unit)
    max_entropy = _log(k, unit)
    if not (0.0 <= label_entropy <= max_entropy + 1e-12):
        raise ValueError(
            f"label_entropy={label_entropy!r} is not allowed: it must be in [0, log k] = [0, {max_entropy:.6g}] {unit}."
        )
    target = label_entropy - info_per_example
    if target <= 0:
        return 0.0
    log_k_minus_1 = _log(k - 1, unit)  # 0 for k = 2: Remark 2
    r_max = (k - 1) / k

    def slack(r: float) -> float:  # increasing on [0, (k-1)/k]; >= 0 where the bound holds
        return r * log_k_minus_1 + binary_entropy(r, unit) - target

    if slack(r_max) <= 0:  # only at label_entropy = log k and no information
        return r_max
    return float(optimize.brentq(slack, 0.0, r_max, xtol=1e-12, rtol=1e-12))


def gradient_information_bound(d: int, L: float, sigma: float, unit: str = "nats") -> float:  # noqa: N803 - the paper's L
    """Proposition 3.1: ``d/2 log(1 + L^2 / (d sigma^2))``.

    Args:
      d: dimension of the gradient (>= 1).
      L: bound on ``sqrt(E ||mu||^2)`` (>= 0).
      sigma: standard deviation of the Gaussian (or Laplace) noise (> 0).
      unit: ``"nats"`` or ``"bits"``.
    """
    _check_unit(unit)
    if int(d) != d or d < 1:
        raise ValueError(f"d={d!r} is not allowed: it must be an integer >= 1.")
    if not (math.isfinite(L) and L >= 0):
        raise ValueError(f"L={L!r} is not allowed: it must be a finite number >= 0.")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma={sigma!r} is not allowed: it must be a finite number > 0.")
    return d / 2.0 * math.log1p(L**2 / (d * sigma**2)) / math.log(UNITS[unit])


def figure2(*, num_classes: int = 10, noise_rates=(0.2, 0.4, 0.6, 0.8), max_info: float = 3.0, unit: str = "bits"):
    """The paper's Figure 2: ``r0`` against ``I(w; y | x)`` per example for several ``p``.

    Returns:
      A ``matplotlib.figure.Figure`` (one line per noise rate, labelled
      ``p = ...``); the pyplot backend is left alone.
    """
    from matplotlib.figure import Figure

    info = np.linspace(0.0, max_info, 301)
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    for p in noise_rates:
        ax.plot(
            info,
            [fano_lower_bound(i, num_classes=num_classes, noise_rate=p, unit=unit) for i in info],
            label=f"p = {p:g}",
        )
    ax.set(
        xlabel=f"I(w; y | x) / n ({unit} per example)",
        ylabel="r0 (lower bound on the training error rate)",
        ylim=(0, 1),
        title=f"Theorem 2.1, k = {num_classes}, uniform noise",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_figure2(path, **kwargs):
    """Writes :func:`figure2` to ``path`` (PNG); returns the path."""
    figure2(**kwargs).savefig(path, dpi=120)
    return path
