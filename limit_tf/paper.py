"""Numbers reported in the paper, keyed by the paper's own row labels.

Harutyunyan et al. (ICML 2020), supplementary Tables 4 and 5: test accuracy
(%) on MNIST with uniform label noise, mean +- std over 5 seeds (Table 1 of
the main text shows the means). Rows are the paper's method labels; the
method table (:mod:`limit_tf.methods`) says which of our variants each label
corresponds to. Nothing here depends on TensorFlow.
"""

from __future__ import annotations

# Row labels in the order of the paper's tables.
MNIST_ROWS = (
    "CE",
    "CE + GN",
    "CE + LN",
    "MAE",
    "FW",
    "DMI",
    "Soft reg. (11)",
    "LIMIT_G + S",
    "LIMIT_L + S",
    "LIMIT_G - S",
    "LIMIT_L - S",
)

# (p, n) -> one "mean+-std" per row of MNIST_ROWS.
_MNIST_UNIFORM_TEXT = {
    (
        0.0,
        1000,
    ): "94.3+-0.5,89.5+-0.8,90.0+-0.5,94.6+-0.5,93.6+-0.6,94.5+-0.5,95.7+-0.2,95.6+-0.3,94.8+-0.3,95.7+-0.2,95.0+-0.2",
    (
        0.0,
        10000,
    ): "98.4+-0.2,95.4+-0.5,95.3+-0.6,98.3+-0.2,98.4+-0.1,98.5+-0.1,98.4+-0.1,98.6+-0.1,98.6+-0.2,98.7+-0.1,98.7+-0.1",
    (
        0.0,
        48000,
    ): "99.2+-0.0,97.1+-0.5,96.7+-0.7,99.1+-0.1,99.2+-0.1,99.2+-0.0,99.2+-0.0,99.3+-0.0,99.3+-0.0,99.3+-0.1,99.3+-0.1",
    (
        0.5,
        1000,
    ): "71.8+-4.3,70.5+-3.5,66.8+-1.3,75.6+-5.0,64.3+-9.1,79.8+-2.9,76.4+-2.4,82.8+-4.6,88.7+-3.8,83.3+-2.3,88.2+-2.9",
    (
        0.5,
        10000,
    ): "93.1+-0.6,92.3+-0.7,92.0+-1.5,95.7+-0.5,91.6+-2.0,95.7+-0.3,95.7+-0.0,97.0+-0.1,97.6+-0.1,97.1+-0.2,97.7+-0.1",
    (
        0.5,
        48000,
    ): "97.2+-0.2,97.4+-0.5,97.6+-0.1,98.1+-0.1,97.3+-0.3,98.3+-0.1,98.2+-0.1,98.7+-0.1,98.9+-0.0,98.6+-0.1,99.0+-0.1",
    (
        0.8,
        1000,
    ): "27.0+-3.8,25.9+-4.6,30.2+-4.8,25.1+-3.3,19.0+-4.1,30.3+-5.1,28.8+-2.2,35.9+-6.3,35.6+-3.2,37.1+-5.4,35.9+-4.3",
    (
        0.8,
        10000,
    ): "69.9+-2.6,51.9+-10.5,53.1+-6.4,74.6+-2.7,61.2+-5.0,79.0+-1.5,67.0+-1.9,80.6+-2.8,93.3+-0.3,82.0+-1.5,93.9+-0.8",
    (
        0.8,
        48000,
    ): "87.2+-1.0,85.3+-8.3,74.5+-19.1,93.2+-1.1,89.1+-2.1,88.8+-0.9,89.3+-0.6,93.4+-0.5,97.6+-0.3,94.7+-0.6,97.7+-0.2",
    (
        0.89,
        1000,
    ): "10.3+-1.6,10.4+-4.5,11.9+-3.9,10.9+-1.4,8.7+-2.8,10.5+-1.2,10.3+-1.6,10.0+-1.0,10.1+-0.7,9.9+-1.0,11.1+-0.7",
    (
        0.89,
        10000,
    ): "13.4+-3.3,10.2+-3.3,8.8+-5.4,12.1+-3.9,11.4+-1.4,14.1+-5.1,10.5+-0.8,14.3+-5.4,12.5+-2.1,12.6+-0.3,11.8+-1.0",
    (
        0.89,
        48000,
    ): "13.2+-1.8,11.1+-0.4,14.1+-4.3,17.6+-8.1,12.3+-1.8,12.5+-1.5,12.7+-2.6,13.1+-4.3,28.3+-8.1,16.0+-5.9,28.6+-4.0",
}


def _parse(text: str) -> dict[str, tuple[float, float]]:
    pairs = [tuple(float(v) for v in cell.split("+-")) for cell in text.split(",")]
    return dict(zip(MNIST_ROWS, pairs, strict=True))


# (p, n) -> {row label: (mean, std)}.
MNIST_UNIFORM: dict[tuple[float, int], dict[str, tuple[float, float]]] = {
    cell: _parse(text) for cell, text in _MNIST_UNIFORM_TEXT.items()
}


def mnist_uniform(label: str | None, noise_rate: float, n: int) -> tuple[float, float] | None:
    """The paper's (mean, std) test accuracy in % for a row label and cell, if it reports one."""
    if label is None:
        return None
    return MNIST_UNIFORM.get((round(float(noise_rate), 2), int(n)), {}).get(label)


def reported(dataset: str, noise: str, noise_rate: float, n: int, label: str | None) -> tuple[float, float] | None:
    """The paper's value for a setting: MNIST with uniform noise (or none) only."""
    if dataset != "mnist" or noise not in ("uniform", "none"):
        return None
    return mnist_uniform(label, noise_rate, n)
