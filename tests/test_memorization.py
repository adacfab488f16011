"""The paper's Figure 1 claim on real MNIST (slow: about 3 minutes on 2 cores).

With 80% uniform noise, cross-entropy fits the corrupted labels (its training
accuracy on the noisy labels climbs far above the 20% of correct labels),
while LIMIT's classifier, which never sees the labels, stays near 20% and does
not fit the corrupted examples. Margins measured on this machine: after 10
epochs CE reaches ~0.69 on the noisy labels, LIMIT_L (beta = 10) ~0.19.
"""

import pytest

from limit_tf import train, workdir
from limit_tf.config import ExperimentConfig


@pytest.mark.slow
def test_limit_does_not_memorize_noise_but_ce_does(tmp_path, mnist_dir):
    base = ExperimentConfig(
        workdir="",
        data_dir=str(mnist_dir),
        noise="uniform",
        noise_rate=0.8,
        num_train_examples=10_000,
        epochs=10,
        patience=10,
    )
    final = {}
    for name, settings in {
        "ce": dict(method="ce"),
        "limit": dict(method="limit", predictor="laplace", beta=10.0),
    }.items():
        results = train.run_experiment(base.replace(workdir=str(tmp_path / name), **settings))
        final[name] = (workdir.RunDir(tmp_path / name).metrics()[-1], results)
    ce, limit = final["ce"][0], final["limit"][0]
    clean_fraction = 1 - final["ce"][1]["realized_noise_rate"]
    assert ce["train_acc_observed"] > clean_fraction + 0.25  # CE memorizes the noise
    assert ce["train_acc_corrupted_subset"] > 0.3
    assert limit["train_acc_observed"] < clean_fraction + 0.08  # LIMIT stays near the clean fraction
    assert limit["train_acc_corrupted_subset"] < 0.1
    assert final["limit"][1]["test_accuracy"] > final["ce"][1]["test_accuracy"] + 0.1
