"""Benchmark helpers whose correctness a figure depends on."""

import importlib.util

import numpy as np

from limit_tf import data
from tests.conftest import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_authors_draw_is_the_authors_split_subset_and_noise(mnist_dir):
    # Golden values: the authors' `split` and `corrupt_labels` (v0.1, modules/data_utils.py) run for seed 0
    # on the same MNIST files gave these indices and label sums; the draw must reproduce them exactly.
    reference_curve = _load("reference_curve")
    cell = data.load_noisy_dataset(
        "mnist", data_dir=mnist_dir, num_train_examples=10_000, noise="uniform", noise_rate=0.8, seed=5
    )
    drawn = reference_curve.authors_draw(cell, 0, str(mnist_dir))
    assert drawn.train.source_indices[:5].tolist() == [26017, 26992, 10284, 30612, 46343]
    assert drawn.validation.source_indices[:3].tolist() == [54228, 39139, 51630]
    assert drawn.train.labels[:10].tolist() == [2, 2, 9, 9, 5, 1, 0, 7, 6, 8]
    assert int(drawn.train.labels.sum()) == 44884 and int(drawn.validation.labels.sum()) == 54397
    assert (len(drawn.train), len(drawn.validation), len(drawn.test)) == (10_000, 12_000, 10_000)
    assert not set(drawn.train.source_indices) & set(drawn.validation.source_indices)
    # Images and clean labels follow the indices; only the labels are noisy (about 80%, never the true class's share).
    full = data.load_noisy_dataset("mnist", data_dir=mnist_dir, noise="none")
    where = {int(i): k for k, i in enumerate(full.train.source_indices)}
    for i in range(0, 10_000, 997):
        k = where.get(int(drawn.train.source_indices[i]))
        if k is not None:  # in the full set's training part
            np.testing.assert_array_equal(drawn.train.x[i], full.train.x[k])
            assert drawn.train.clean_labels[i] == full.train.clean_labels[k]
    assert 0.78 < drawn.train.noise_mask.mean() < 0.82
    np.testing.assert_array_equal(drawn.test.labels, cell.test.labels)
